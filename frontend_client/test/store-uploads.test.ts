/**
 * Files sent through the conversation store, against the real demo server: upload progress,
 * extraction followed live, the text used in the answer, a refused file, a progress callback that
 * throws.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { isApiError, isPayloadTooLarge, isUnsupportedFileType, UnsupportedFileTypeError } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { capturingConsoleErrors, finished, lastAgent, replied } from "./helpers/store.js";

const demo = useDemoServer();
const { client, start } = demo;

describe("uploads", () => {
  test("send() with a file: upload progress, extraction, and the text used in the answer", async () => {
    const c = client();
    const conversation = await start(c, "files");
    const progress: number[] = [];
    const file = new File(["Invoice 4711\nTotal due: 120 EUR\nPayable within 30 days\n"], "invoice.txt", { type: "text/plain" });
    await conversation.send("What is the total due?", { files: [file], onUploadProgress: (u) => progress.push(u.loaded) });
    assert.equal(progress.at(-1), file.size);

    const finishedState = await conversation.waitFor(finished, { timeout: 30_000 });
    const upload = finishedState.uploads[0];
    assert.equal(upload?.status, "uploaded");
    // Extraction runs in the background: the file row's "done" arrives by its own model_change,
    // which may come after the reply's.
    const fileId = upload?.file?.id as string;
    const state = await conversation.waitFor((s) => s.files[fileId]?.extraction_status === "done", { timeout: 30_000 });
    const row = state.files[fileId];
    assert.equal(row?.filename, "invoice.txt");
    assert.equal(row?.extraction_status, "done");
    const user = state.messages.find((m) => m.message_type === "user");
    assert.deepEqual(user?.files, [row?.id]);
    assert.equal(user?.attachments[0]?.filename, "invoice.txt");
    const reply = lastAgent(state)?.content ?? "";
    assert.match(reply, /invoice\.txt: \d+ words/);
    assert.match(reply, /• Total due: 120 EUR/);
  });

  test("a refused file keeps the typed message, with the server's reason", async () => {
    const c = client();
    const conversation = await start(c, "files");
    // An executable is refused whatever its name says.
    const elf = new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, ...new Array(120).fill(0)]);
    const file = new File([elf], "photo.png", { type: "image/png" });
    await assert.rejects(conversation.send("Look at this", { files: [file] }), (error: unknown) => {
      assert.ok(isUnsupportedFileType(error), String(error));
      assert.ok(error instanceof UnsupportedFileTypeError && isApiError(error));
      assert.equal(error.status, 415);
      assert.equal(error.code, "unsupported_file_type");
      assert.equal(error.field, "file");
      assert.match(error.message, /^Files of type \S+ are not accepted here\.$/);
      assert.doesNotMatch(error.message, /image\/png/, "decided from the bytes, not the name or header");
      return true;
    });
    const state = conversation.getState();
    const local = state.messages.find((m) => m.local);
    assert.equal(local?.content, "Look at this");
    assert.equal(local?.sendError?.code, "unsupported_file_type");
    assert.equal(state.uploads[0]?.status, "failed");
    assert.equal(state.error?.code, "unsupported_file_type");
    assert.equal(state.busy, false);
    assert.ok(!isPayloadTooLarge(state.error));
    assert.ok(isUnsupportedFileType(state.uploads[0]?.error));
    // Nothing reached the server.
    assert.equal(await c.messages.filter({ session: conversation.sessionId }).count(), 0);
    conversation.discard(local?.id as string);
    assert.equal(conversation.getState().messages.length, 0);
  });

  test("an onUploadProgress callback that throws does not fail the send", async () => {
    await capturingConsoleErrors(async (reported) => {
      const conversation = await start(client(), "echo");
      const file = new File(["notes\n"], "notes.txt", { type: "text/plain" });
      let calls = 0;
      const sent = await conversation.send("with notes", {
        files: [file],
        onUploadProgress: () => {
          calls += 1;
          throw new Error("progress bar bug");
        },
      });
      assert.equal(sent.files.length, 1);
      assert.ok(calls >= 2, "called for the start and the end");
      const state = await conversation.waitFor(replied, { timeout: 15_000 });
      assert.equal(state.uploads[0]?.status, "uploaded");
      assert.equal(state.error, null);
      assert.ok(reported.some((args) => args.some((a) => a instanceof Error && a.message === "progress bar bug")));
    });
  });
});
