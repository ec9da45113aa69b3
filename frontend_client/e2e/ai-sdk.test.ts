/**
 * The AI SDK's useChat (@ai-sdk/react, the real package: tests/ai_sdk_client/) in Chromium against
 * the demo server's AI SDK endpoint: a streamed reply, a stop that cancels the turn, a reload
 * mid-reply that resumes it. The page is tests/ai_sdk_client/page.jsx, bundled here with esbuild
 * and served at the demo server's origin by Playwright (so its cookies are the API's: the session,
 * the CSRF token); everything else it loads or calls is the real server.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { build } from "esbuild";
import { chromium, type Browser, type Page } from "playwright-core";

import { demoServer, repoRoot, type DemoServer } from "../test/helpers/server.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CLIENT = join(repoRoot, "tests", "ai_sdk_client");
const PAGE_PATH = "/ai-sdk-test-page/";

let server: DemoServer;
let browser: Browser;
let page: Page;

const words = (n: number) => Array.from({ length: n }, (_, k) => `w${k} `).join("");

async function bundle(): Promise<string> {
  assert.ok(
    existsSync(join(CLIENT, "node_modules", "@ai-sdk", "react")),
    `The AI SDK packages are missing in ${CLIENT}: npm ci there (scripts/test-js.sh and ./dev do).`,
  );
  const result = await build({
    entryPoints: [join(CLIENT, "page.jsx")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"production"' },
    minify: true,
    write: false,
    logLevel: "warning",
  });
  return result.outputFiles[0]!.text;
}

async function serve(p: Page, script: string): Promise<void> {
  const html = `<!doctype html><meta charset="utf-8"><title>useChat</title><body><div id="root"></div><script type="module" src="${PAGE_PATH}page.js"></script>`;
  await p.route(`${server.origin}${PAGE_PATH}**`, async (route) => {
    const url = new URL(route.request().url());
    if (url.pathname.endsWith("/page.js")) {
      await route.fulfill({ body: script, contentType: "text/javascript; charset=utf-8" });
    } else {
      await route.fulfill({ body: html, contentType: "text/html; charset=utf-8" });
    }
  });
}

async function open(p: Page, query = ""): Promise<string> {
  await p.goto(`${server.origin}${PAGE_PATH}${query}`);
  await p.waitForSelector("main[data-status='ready']");
  return (await p.getAttribute("body", "data-conversation")) as string;
}

async function send(p: Page, text: string): Promise<void> {
  await p.fill("#input", text);
  await p.click("#send");
}

function lastAssistant(p: Page): Promise<string> {
  return p.locator("li[data-role='assistant']").last().innerText();
}

/** The conversation's rows, read through the bridge as the page's visitor. */
async function rows(p: Page, conversation: string): Promise<Array<Record<string, unknown>>> {
  return p.evaluate(async (id) => {
    const response = await fetch("/api/conversations/models/message/query/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filter: { session: id }, order_by: ["timestamp"] }),
    });
    const body = await response.json();
    return body.data.map((pk: string) => body.included.message[pk]);
  }, conversation);
}

async function waitForRow(p: Page, conversation: string, type: string, status: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const row = (await rows(p, conversation)).filter((r) => r.message_type === type).at(-1);
    if (row && row.processing_status === status) return row;
    assert.ok(Date.now() < deadline, `the ${type} message never became ${status} (${JSON.stringify(row)})`);
    await p.waitForTimeout(100);
  }
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}: install Debian's chromium or set CHROMIUM_PATH.`);
  const script = await bundle();
  server = await demoServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext();
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await serve(page, script);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe("useChat against the AI SDK endpoint", () => {
  test("a reply streams in", async () => {
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    const conversation = await open(page);
    await send(page, "slow 30");
    await page.waitForSelector("main[data-status='streaming']");
    const lengths = new Set<number>();
    while ((await page.getAttribute("main", "data-status")) === "streaming") {
      lengths.add((await page.locator("li[data-role='assistant']").last().innerText().catch(() => "")).length);
      await page.waitForTimeout(30);
    }
    await page.waitForSelector("main[data-status='ready']");
    assert.ok(lengths.size >= 3, `saw only ${JSON.stringify([...lengths])} while streaming`);
    assert.equal((await lastAssistant(page)).trim(), words(30).trim());
    assert.equal(await page.locator("li[data-role='user']").last().innerText(), "slow 30");
    const agent = await waitForRow(page, conversation, "agent", "completed");
    assert.equal(agent.content, words(30));
    assert.equal(await page.getAttribute("li[data-role='assistant']", "data-id"), agent.id);
    assert.deepEqual(errors, []);
  });

  test("stop ends the reply on the page and cancels the turn", async () => {
    const conversation = await open(page);
    await send(page, "slow 500");
    await page.waitForFunction(() => (document.querySelector("li[data-role='assistant']")?.textContent ?? "").includes("w3 "));
    await page.click("#stop");
    await page.waitForSelector("main[data-status='ready']");
    const shown = await lastAssistant(page);
    await waitForRow(page, conversation, "user", "cancelled");
    const agent = await waitForRow(page, conversation, "agent", "cancelled");
    assert.ok((agent.content as string).startsWith(shown.trim()), "the row holds what the page showed");
    assert.ok((agent.content as string).split(" ").length < 500, "the turn stopped early");
  });

  test("a reload mid-reply resumes it", async () => {
    const conversation = await open(page);
    await send(page, "slow 120");
    await page.waitForFunction(() => (document.querySelector("li[data-role='assistant']")?.textContent ?? "").includes("w5 "));
    await page.reload();
    // The page opens the conversation again (?c=<id>): its rows, then the resumed stream.
    await page.waitForSelector("li[data-role='user']");
    assert.equal(await page.getAttribute("body", "data-conversation"), conversation);
    await page.waitForFunction(
      (expected) => (document.querySelector("li[data-role='assistant']")?.textContent ?? "").trim() === expected,
      words(120).trim(),
    );
    await page.waitForSelector("main[data-status='ready']");
    assert.equal(await page.locator("li[data-role='assistant']").count(), 1, "one reply, not a second copy");
    const agent = await waitForRow(page, conversation, "agent", "completed");
    assert.equal(agent.content, words(120));
  });
});
