/**
 * The error family as an application ships it: bundled and minified (class names renamed). The
 * type guards and `name` must not depend on the classes' own names. No server needed.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

import { build } from "esbuild";

type Sdk = typeof import("../src/index.js");

const here = dirname(fileURLToPath(import.meta.url));
/** frontend_client/ (this file runs from .test-build/test/). */
const root = resolve(here, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "sdk-minified-"));

after(() => rmSync(dir, { recursive: true, force: true }));

async function minifiedSdk(): Promise<Sdk> {
  const result = await build({
    entryPoints: [join(root, "src", "index.ts")],
    bundle: true,
    format: "esm",
    platform: "neutral",
    minify: true,
    external: ["pusher-js"],
    write: false,
    logLevel: "silent",
  });
  const file = join(dir, "sdk.min.mjs");
  writeFileSync(file, result.outputFiles[0]?.text ?? "");
  return (await import(pathToFileURL(file).href)) as Sdk;
}

test("a minified bundle keeps the error names and the type guards", async () => {
  const sdk = await minifiedSdk();
  const realtime = new sdk.RealtimeError("refused", { status: 403 });
  assert.equal(realtime.name, "RealtimeError");
  assert.ok(sdk.isRealtimeError(realtime), "isRealtimeError() on a RealtimeError");
  assert.ok(sdk.isConversationClientError(realtime));
  const errors = [{ code: "invalid", message: "Bad.", field: "content" }];
  const validation = new sdk.ValidationError({ status: 400, errors, method: "POST", url: "x" });
  assert.equal(validation.name, "ValidationError");
  assert.ok(!sdk.isRealtimeError(validation));
  assert.equal(new sdk.NetworkError("http://x/").name, "NetworkError");
  assert.match(String(new sdk.RateLimitedError({ status: 429, errors, method: "GET", url: "x" })), /^RateLimitedError: Bad\.$/);
  assert.equal(new sdk.ConversationClientError("m", { code: "c" }).name, "ConversationClientError");
});
