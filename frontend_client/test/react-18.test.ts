/**
 * The React binding tests again with React 18: `react-bindings.test.ts` (compiled) bundled by
 * esbuild with `react` and `react-dom` resolved to React 18.3 and React DOM 18.3 (the
 * `test/react18/` fixture package; the SDK's own devDependencies are React 19), then run as a test
 * file of its own against the same demo server.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

import { demoServer } from "./helpers/server.js";

/** The build this file runs from (.test-build/, or a private one beside it), and frontend_client/. */
const built = join(dirname(fileURLToPath(import.meta.url)), "..");
const client = join(built, "..");
const react18 = join(client, "test", "react18", "node_modules");

test("the React binding tests pass with React 18", async (t) => {
  const version = JSON.parse(readFileSync(join(react18, "react", "package.json"), "utf8")).version as string;
  assert.match(version, /^18\./);
  // At the depth of the compiled tests (.test-build/test/), so that paths found from the file's
  // own place (the repository root, the demo server's manage.py) are the same.
  // The compiled test of this build, not another build's (a private build folder runs its own).
  const outfile = join(built, "react18", "test", "react-bindings.test.js");
  await build({
    entryPoints: [join(built, "test", "react-bindings.test.js")],
    outfile,
    bundle: true,
    format: "esm",
    platform: "node",
    target: ["node20"],
    logLevel: "warning",
    // Every import of React, the bindings' and React DOM's own, gets React 18.
    alias: { react: join(react18, "react"), "react-dom": join(react18, "react-dom") },
    // Bundled CommonJS (React) calls require() for nothing but its own files; Node's builtins stay imports.
    banner: { js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);' },
    external: ["happy-dom"],
  });
  const server = await demoServer();
  try {
    const run = spawnSync(process.execPath, ["--test", outfile], {
      cwd: client,
      // Without NODE_TEST_CONTEXT, which tells a child of a test file not to run tests.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== "NODE_TEST_CONTEXT")), DJANGO_AI_TEST_SERVER: server.origin },
      encoding: "utf8",
      timeout: 300_000,
    });
    const output = `${run.stdout}\n${run.stderr}`;
    t.diagnostic(output.split("\n").filter((line) => /^# (tests|pass|fail)/.test(line)).join("; "));
    assert.equal(run.status, 0, output.slice(-6000));
    assert.match(output, /React 18\.\d+\.\d+ bindings/, "the bundle rendered with React 18");
    assert.doesNotMatch(output, /^# tests 0$/m);
  } finally {
    await server.stop();
  }
});
