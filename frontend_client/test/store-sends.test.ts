/**
 * Sending from the conversation store, against the real demo server: what is refused before
 * anything is sent, the order of quick sends, cancel() while a message is still being sent, a
 * send whose answer was lost, and retry(). Only the network is changed (a `fetch` that holds or
 * loses some requests).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { isApiError, isNetworkError, isUsageError, type FetchLike } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { gate, heldFetch, isMessageCreate, isUpload, lastAgent, outcome, replied } from "./helpers/store.js";

const demo = useDemoServer();
const { client, start, keep } = demo;

describe("sending", () => {
  test("an empty message is refused before anything is sent", async () => {
    const c = client();
    const conversation = await start(c, "echo");
    // A check of the client, not an answer of the server: a UsageError, never an ApiError.
    await assert.rejects(conversation.send("   "), (error: unknown) => isUsageError(error) && error.field === "content" && !isApiError(error));
    assert.equal(conversation.getState().messages.length, 0);
  });

  test("quick sends reach the server in the order they were typed, attachments or not", async () => {
    const held = gate();
    const c = client({ fetch: heldFetch(isUpload, held) });
    const conversation = await start(c, "echo");
    const file = new File(["first attachment\n"], "first.txt", { type: "text/plain" });
    const first = conversation.send("first", { files: [file] });
    const second = conversation.send("second");
    // The second message has nothing to upload; let it go ahead if the store lets it.
    await outcome(second, 1500);
    held.open();
    await Promise.all([first, second]);
    const rows = await c.messages.filter({ session: conversation.sessionId, message_type: "user" }).orderBy("timestamp").fetch();
    assert.deepEqual(rows.map((r) => r.content), ["first", "second"]);
    const state = await conversation.waitFor((s) => !s.busy && s.messages.filter((m) => m.message_type === "agent").length === 2, {
      timeout: 20_000,
    });
    assert.deepEqual(
      state.messages.filter((m) => m.message_type === "user").map((m) => m.content),
      ["first", "second"],
    );
  });

  test("cancel() while a file is uploading stops the message: nothing reaches the agent", async () => {
    const held = gate();
    const c = client({ fetch: heldFetch(isUpload, held) });
    const conversation = await start(c, "files");
    const file = new File(["Invoice 4711\nTotal due: 120 EUR\n"], "invoice.txt", { type: "text/plain" });
    const sending = conversation.send("What is the total?", { files: [file] });
    sending.catch(() => undefined);
    await conversation.waitFor((s) => s.busy && s.uploads.some((u) => u.status === "uploading"), { timeout: 10_000 });
    const cancelling = conversation.cancel();
    held.open();
    await cancelling;
    const sent = await outcome(sending, 15_000);
    assert.notEqual(sent, "pending");
    const rows = await c.messages.filter({ session: conversation.sessionId }).fetch();
    const live = rows.filter((r) => r.message_type === "user" && r.processing_status !== "cancelled");
    assert.deepEqual(live.map((r) => [r.content, r.processing_status]), [], "a user message still runs after cancel()");
    assert.ok(sent !== "pending" && "error" in sent, "send() reports that it was stopped");
    const state = await conversation.waitFor((s) => !s.busy, { timeout: 10_000 });
    const local = state.messages.find((m) => m.local);
    assert.equal(local?.content, "What is the total?", "the typed text is kept");
    assert.equal(local?.sendError?.code, "aborted");
  });

  test("cancel() while the message is being created cancels it once the server has it", async () => {
    const held = gate();
    const c = client({ fetch: heldFetch(isMessageCreate, held) });
    const conversation = await start(c, "writer");
    const sending = conversation.send("a dragon");
    sending.catch(() => undefined);
    await conversation.waitFor((s) => s.phase === "sending", { timeout: 10_000 });
    const cancelling = conversation.cancel();
    held.open();
    const [result, sent] = await Promise.all([cancelling, sending]);
    assert.equal(result.status, "cancelling");
    assert.deepEqual(result.cancelled, [sent.id]);
    const state = await conversation.waitFor((s) => !s.busy && s.messages.some((m) => m.id === sent.id && m.processing_status === "cancelled"), {
      timeout: 15_000,
    });
    assert.ok(!state.messages.some((m) => m.message_type === "agent" && m.processing_status === "completed"));
  });

  test("a send whose answer was lost after the server stored it does not leave a duplicate", async () => {
    // The create reaches the server; its answer is lost (the connection drops). The realtime
    // events are held until the store has seen the failure, so the echo arrives after it.
    const events = gate();
    let failCreate = true;
    const lossy: FetchLike = async (input, init) => {
      if (isMessageCreate(input, init) && failCreate) {
        failCreate = false;
        await fetch(input, init);
        setTimeout(events.open, 50);
        throw new TypeError("fetch failed: connection reset");
      }
      const response = await fetch(input, init);
      if (!input.includes("realtime/events/") || !response.body) return response;
      const reader = response.body.getReader();
      let holding = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) return controller.close();
          if (!failCreate && !holding) holding = true;
          if (holding) await events.wait();
          controller.enqueue(value);
        },
        cancel: () => reader.cancel(),
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const c = client({ fetch: lossy });
    const conversation = await start(c, "echo");
    await assert.rejects(conversation.send("only once"), (error: unknown) => isNetworkError(error));
    const failed = conversation.getState().messages.find((m) => m.local);
    assert.equal(failed?.sendError?.code, "network_error", "shown as failed first");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    assert.deepEqual(
      state.messages.map((m) => [m.message_type, m.message_type === "user" ? m.content : "", m.local]),
      [
        ["user", "only once", false],
        ["agent", "", false],
      ],
    );
    assert.equal(await c.messages.filter({ session: conversation.sessionId, message_type: "user" }).count(), 1);
  });
});

describe("retry", () => {
  test("retry() of a message the server stored but whose answer was lost stores nothing twice", async () => {
    // No realtime: the store cannot learn from an echo that the message was stored; only the
    // bridge's idempotent create (same X-Operation-Id) keeps the retry from storing it twice.
    const operationIds: string[] = [];
    let failCreate = true;
    const lossy: FetchLike = async (input, init) => {
      if (isMessageCreate(input, init)) {
        operationIds.push(new Headers(init?.headers).get("X-Operation-Id") ?? "");
        if (failCreate) {
          failCreate = false;
          await fetch(input, init);
          throw new TypeError("fetch failed: connection reset");
        }
      }
      return fetch(input, init);
    };
    const c = client({ fetch: lossy, realtime: false });
    const conversation = await c.startConversation("echo");
    keep(conversation);
    await conversation.waitFor((s) => s.loaded, { timeout: 15_000 });
    await assert.rejects(conversation.send("only once"), (error: unknown) => isNetworkError(error));
    const failed = conversation.getState().messages.find((m) => m.local && m.sendError);
    assert.ok(failed, "the message shows as not sent");
    await assert.rejects(conversation.retry("local-nope"), (error: unknown) => isUsageError(error) && /No message that could not be sent/.test(error.message));

    const row = await conversation.retry(failed.id);
    assert.equal(operationIds.length, 2);
    assert.equal(operationIds[0], operationIds[1], "the retry repeats the first try's operation id");
    const stored = await c.messages.filter({ session: conversation.sessionId, message_type: "user" }).fetch();
    assert.deepEqual(stored.map((m) => [m.id, m.content]), [[row.id, "only once"]]);
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    assert.deepEqual(
      state.messages.map((m) => [m.message_type, m.local]),
      [
        ["user", false],
        ["agent", false],
      ],
    );
    assert.equal(lastAgent(state)?.content, "You said: only once");
    assert.equal(await c.messages.filter({ session: conversation.sessionId }).count(), 2, "one turn, one reply");
  });

  test("retry() after a refused upload sends the files again, without uploading twice the ones that made it", async () => {
    const uploads: string[] = [];
    let refuseSecond = true;
    const flaky: FetchLike = async (input, init) => {
      if (isUpload(input, init)) {
        const name = ((init?.body as FormData).get("file") as File).name;
        uploads.push(name);
        if (name === "b.txt" && refuseSecond) {
          refuseSecond = false;
          throw new TypeError("fetch failed: connection reset");
        }
      }
      return fetch(input, init);
    };
    const c = client({ fetch: flaky });
    const conversation = await start(c, "files");
    const files = [new File(["alpha text"], "a.txt", { type: "text/plain" }), new File(["beta text"], "b.txt", { type: "text/plain" })];
    await assert.rejects(conversation.send("read both", { files }), (error: unknown) => isNetworkError(error));
    const failed = conversation.getState().messages.find((m) => m.local && m.sendError);
    assert.ok(failed);
    const row = await conversation.retry(failed.id);
    assert.deepEqual(uploads, ["a.txt", "b.txt", "b.txt"], "a.txt was not uploaded again");
    assert.equal(row.files.length, 2);
    const state = await conversation.waitFor(replied, { timeout: 30_000 });
    assert.match(lastAgent(state)?.content ?? "", /a\.txt/);
    assert.match(lastAgent(state)?.content ?? "", /b\.txt/);
  });
});
