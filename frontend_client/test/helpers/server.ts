/**
 * The demo backend for the SDK and browser tests: `manage.py runserver` on a free port of
 * 127.0.0.1 with a fresh SQLite database in a temporary folder, under the test settings
 * (`tests.settings`: the demo's plus the `shop` app of tests/shop, project models with an integer
 * and a named string pk, and the test-only agents of tests/sdk_agents.py such as "stream-test";
 * `./dev demo` never has them).
 *
 * scripts/test-js.sh starts one for the whole run and passes its URL in DJANGO_AI_TEST_SERVER;
 * a test file run on its own starts (and stops) its own.
 */

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export interface DemoServer {
  /** e.g. http://127.0.0.1:41234 */
  origin: string;
  /** e.g. http://127.0.0.1:41234/api/conversations/ */
  api: string;
  stop(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (frontend_client/.test-build/test/helpers -> ../../../..). */
export const repoRoot = resolve(here, "..", "..", "..", "..");

export function python(): string {
  if (process.env.PYTHON) return process.env.PYTHON;
  const venv = join(repoRoot, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

async function waitUntilUp(origin: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`The demo server exited (${child.exitCode}):\n${log()}`);
    try {
      const response = await fetch(`${origin}/api/conversations/realtime/config/`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`The demo server did not answer within 60 s:\n${log()}`);
}

/** Start a demo server; `env` adds environment variables (e.g. Pusher settings). */
export async function startDemoServer(env: Record<string, string> = {}): Promise<DemoServer> {
  const dir = mkdtempSync(join(tmpdir(), "django-ai-sdk-"));
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    DJANGO_SETTINGS_MODULE: "tests.settings",
    DJANGO_AI_VAR_DIR: dir,
    DJANGO_DEBUG: "1",
    PYTHONUNBUFFERED: "1",
    ...env,
    // Every test of the run is a new anonymous visitor from 127.0.0.1: the per-address bounds
    // (anonymous writes, 300/min by default, and the conversations new visitors start, counted
    // per address until they have an id, 30/min; the Python suite covers both) would throttle
    // the suite itself; so would the cap on anonymous visitors' open event streams per address
    // (100), with streams of finished tests not yet noticed as closed. The per-visitor rates and
    // stream cap stay as configured.
    DJANGO_AI_SETTINGS_JSON: JSON.stringify({
      ANONYMOUS_ADDRESS_THROTTLE_RATE: "100000/min",
      SESSION_START_THROTTLE_RATE: "100000/min",
      SSE_MAX_ANONYMOUS_STREAMS_PER_ADDRESS: null,
      ...(JSON.parse(env.DJANGO_AI_SETTINGS_JSON ?? "{}") as Record<string, unknown>),
    }),
  };
  // A temporary SQLite database, whatever the surrounding run uses.
  delete childEnv.DATABASE_URL;
  execFileSync(python(), ["manage.py", "migrate", "--noinput", "-v", "0"], { cwd: repoRoot, env: childEnv, stdio: "inherit" });
  // The demo login (demo / demo), as ./dev demo creates it.
  execFileSync(python(), ["manage.py", "demo_setup"], { cwd: repoRoot, env: childEnv, stdio: "ignore" });
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const child = spawn(python(), ["manage.py", "runserver", `127.0.0.1:${port}`, "--noreload"], {
    cwd: repoRoot,
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
    if (process.env.DJANGO_AI_TEST_SERVER_LOG) process.stderr.write(chunk);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  try {
    await waitUntilUp(origin, child, () => output);
  } catch (error) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    origin,
    api: `${origin}/api/conversations/`,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The shared server of scripts/test-js.sh, or a new one for this file. */
export async function demoServer(): Promise<DemoServer> {
  const shared = process.env.DJANGO_AI_TEST_SERVER;
  if (shared) {
    const origin = shared.replace(/\/$/, "");
    return { origin, api: `${origin}/api/conversations/`, stop: async () => undefined };
  }
  return startDemoServer();
}

/** A fetch that keeps cookies, as a browser does for one origin. */
export interface CookieFetch {
  fetch: (input: string, init?: RequestInit) => Promise<Response>;
  /** The cookies it holds, by name (delete one to act as a browser without it). */
  jar: Map<string, string>;
}

export function cookieFetch(): CookieFetch {
  const jar = new Map<string, string>();
  const jarFetch = async (input: string, init: RequestInit = {}): Promise<Response> => {
    const headers = new Headers(init.headers);
    if (jar.size) headers.set("Cookie", [...jar].map(([name, value]) => `${name}=${value}`).join("; "));
    const response = await fetch(input, { ...init, headers, redirect: "manual" });
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(";", 1)[0] ?? "";
      const at = pair.indexOf("=");
      if (at > 0) jar.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
    return response;
  };
  return { fetch: jarFetch, jar };
}

/** Sign in through the admin's login form (the demo login demo / demo); the session cookie is in the jar. */
export async function signIn(origin: string, username = "demo", password = "demo"): Promise<CookieFetch> {
  const browser = cookieFetch();
  const form = await (await browser.fetch(`${origin}/admin/login/`)).text();
  const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(form)?.[1];
  if (!token) throw new Error("The admin login page has no CSRF token.");
  const response = await browser.fetch(`${origin}/admin/login/`, {
    method: "POST",
    body: new URLSearchParams({ username, password, csrfmiddlewaretoken: token, next: "/admin/" }),
    headers: { "Content-Type": "application/x-www-form-urlencoded", Referer: `${origin}/admin/login/` },
  });
  if (response.status !== 302 || !browser.jar.has("sessionid")) {
    throw new Error(`Signing in as ${username} failed (${response.status}).`);
  }
  return browser;
}
