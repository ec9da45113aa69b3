/** The conversation store against the real demo server: streaming over Server-Sent Events,
 * widgets answering back, resume when joining late, cancel, uploads and their errors. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  createClient,
  isApiError,
  isPayloadTooLarge,
  isRealtimeError,
  isUnsupportedFileType,
  isUsageError,
  UnsupportedFileTypeError,
  type Client,
  type Conversation,
  type ConversationMessage,
  type ConversationState,
} from "../src/index.js";
import { demoServer, type DemoServer } from "./helpers/server.js";
import { firstNotPrefix, joinMidStream } from "./helpers/streams.js";

let server: DemoServer;
const clients: Client[] = [];
const conversations: Conversation[] = [];

function client(anonymousId?: string): Client {
  const c = createClient({ baseUrl: server.api, ...(anonymousId ? { anonymousId } : {}) });
  clients.push(c);
  return c;
}

async function start(c: Client, agent: string, context = {}): Promise<Conversation> {
  const conversation = await c.startConversation(agent, context);
  conversations.push(conversation);
  await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 10_000 });
  return conversation;
}

function lastAgent(state: ConversationState): ConversationMessage | undefined {
  return [...state.messages].reverse().find((m) => m.message_type === "agent");
}

const finished = (s: ConversationState) => {
  const agent = lastAgent(s);
  return !s.busy && !!agent && ["completed", "cancelled", "failed"].includes(agent.processing_status);
};

before(async () => {
  server = await demoServer();
});

after(async () => {
  for (const c of conversations) c.close();
  for (const c of clients) c.close();
  await server.stop();
});

describe("conversation store", () => {
  test("a streamed reply arrives in pieces and ends equal to the stored message", async () => {
    const c = client();
    const conversation = await start(c, "support", { tier: "premium" });
    const seen: { phase: string; text: string }[] = [];
    conversation.subscribe((s) => seen.push({ phase: s.phase, text: lastAgent(s)?.content ?? "" }));

    const sent = await conversation.send("How do refunds work?");
    assert.equal(sent.content, "How do refunds work?");
    assert.equal(sent.message_type, "user");
    const state = await conversation.waitFor(finished, { timeout: 20_000 });

    const reply = lastAgent(state);
    assert.ok(reply);
    assert.equal(reply.processing_status, "completed");
    assert.match(reply.content, /As a premium customer, here is what I know about refunds and cancellations: Refunds/);
    const stored = await c.messages.get(reply.id);
    assert.equal(reply.content, stored.content);

    // Streamed: the store showed partial text while the phase was "streaming".
    const partial = seen.filter((s) => s.phase === "streaming" && s.text.length > 0 && s.text.length < reply.content.length);
    assert.ok(partial.length >= 3, `only ${partial.length} partial states`);
    const lengths = partial.map((s) => s.text.length);
    assert.deepEqual(lengths, [...lengths].sort((a, b) => a - b), "the text only grows");
    // The user message is confirmed (no local copy left) and the turn is over.
    assert.deepEqual(state.messages.map((m) => [m.message_type, m.local]), [["user", false], ["agent", false]]);
    assert.equal(state.phase, "idle");
    assert.equal(state.error, null);
  });

  test("the appointment widget's slots answer back", async () => {
    const c = client();
    const conversation = await start(c, "support");
    await conversation.send("I'd like to book a call");
    const withWidget = await conversation.waitFor((s) => s.messages.some((m) => m.widget?.widget_type === "appointment_form") && !s.busy, {
      timeout: 15_000,
    });
    const widget = withWidget.messages.find((m) => m.widget)?.widget;
    assert.ok(widget);
    const slots = widget.data.available_slots as string[];
    assert.equal(slots.length, 3);

    const picked = slots[2] as string;
    const updated = await conversation.updateWidget(widget.id, { selected_slot: picked });
    assert.deepEqual(updated.display_data, { selected_slot: picked });
    await conversation.send(String(widget.data.answer_template).replace("{slot}", picked));
    const done = await conversation.waitFor(
      (s) => finished(s) && (lastAgent(s)?.content ?? "").startsWith("Done!") && s.widgets[widget.id]?.display_data.confirmed === true,
      { timeout: 15_000 },
    );
    assert.equal(lastAgent(done)?.content.includes(picked), true);
    assert.deepEqual(done.widgets[widget.id]?.display_data, { selected_slot: picked, confirmed: true });
  });

  test("a second client joining mid-stream rebuilds the same text (resume)", async () => {
    const alice = client();
    const conversation = await start(alice, "writer");
    await conversation.send("a lighthouse keeper");
    await conversation.waitFor((s) => s.phase === "streaming" && (lastAgent(s)?.content.length ?? 0) > 120, { timeout: 15_000 });

    // Same visitor, another tab: a new client with the anonymous id joins while the story streams.
    const tab = client(alice.anonymousId ?? undefined);
    const late = tab.conversation(conversation.sessionId);
    conversations.push(late);
    const firstLoaded = await late.waitFor((s) => s.loaded, { timeout: 10_000 });
    assert.equal(lastAgent(firstLoaded)?.streaming, true, "joined while the reply was streaming");

    const [a, b] = await Promise.all([
      conversation.waitFor(finished, { timeout: 30_000 }),
      late.waitFor(finished, { timeout: 30_000 }),
    ]);
    const stored = await alice.messages.get(lastAgent(a)?.id as string);
    assert.equal(lastAgent(a)?.content, stored.content);
    assert.equal(lastAgent(b)?.content, stored.content);
    assert.ok(stored.content.endsWith("The end."));
  });

  test("a client joining while writes are coalesced rebuilds the streamed text exactly (offsets, row cut mid-event)", async () => {
    const alice = client();
    const conversation = await start(alice, "stream-test");
    const seen = await joinMidStream(alice, client(alice.anonymousId ?? undefined), conversation);

    assert.equal(seen.stored.processing_status, "completed");
    assert.ok(seen.savedWhenJoining.length > 0 && seen.savedWhenJoining.length < seen.stored.content.length);
    assert.equal(seen.firstLoaded?.streaming, true, "joined while the reply was streaming");
    for (const [who, message, texts] of [["owner", seen.ownerAtEnd, seen.ownerTexts], ["late tab", seen.lateAtEnd, seen.lateTexts]] as const) {
      assert.equal(message?.streaming, true, `${who}: stream_end was applied before the finished row`);
      assert.equal(message?.content.length, seen.stored.content.length, `${who}: length at stream_end`);
      assert.ok(message?.content === seen.stored.content, `${who}: the streamed text equals the agent's text`);
      assert.equal(firstNotPrefix(texts, seen.stored.content), null, `${who}: every streamed state was a prefix`);
    }
  });

  test("a dropped realtime connection reconnects and the reply still ends whole", async () => {
    // The network (not the server) fails: the first event stream is cut after a few kilobytes.
    let cut = false;
    const flaky = async (input: string, init?: RequestInit): Promise<Response> => {
      const response = await fetch(input, init);
      if (cut || !input.includes("realtime/events/") || !response.body) return response;
      let seen = 0;
      const reader = response.body.getReader();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) return controller.close();
          seen += value.byteLength;
          controller.enqueue(value);
          if (seen > 3000 && !cut) {
            cut = true;
            controller.error(new TypeError("network connection lost"));
            void reader.cancel();
          }
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const c = createClient({ baseUrl: server.api, fetch: flaky });
    clients.push(c);
    const conversation = await start(c, "writer");
    const states: string[] = [];
    conversation.subscribe((s) => states.push(s.connection));
    await conversation.send("a lost umbrella");
    const done = await conversation.waitFor(finished, { timeout: 40_000 });
    assert.ok(cut, "the stream was cut");
    assert.ok(states.includes("reconnecting"), `connection states: ${[...new Set(states)].join(", ")}`);
    assert.equal(done.connection, "subscribed");
    const reply = lastAgent(done);
    const stored = await c.messages.get(reply?.id as string);
    assert.equal(reply?.content, stored.content);
    assert.ok(stored.content.endsWith("The end."));
  });

  test("a turn that fails mid-stream ends failed with the server's notice, and the conversation goes on", async () => {
    const c = client();
    const conversation = await start(c, "stream-test");
    await conversation.send("fail 60");
    const state = await conversation.waitFor(
      (s) => !s.busy && s.messages.some((m) => m.message_type === "system"),
      { timeout: 20_000 },
    );
    const [user, agent, notice] = state.messages;
    assert.deepEqual(state.messages.map((m) => m.message_type), ["user", "agent", "system"]);
    assert.equal(user?.processing_status, "failed");
    assert.equal(agent?.processing_status, "failed");
    assert.equal(agent?.streaming, false);
    assert.ok((agent?.content.length ?? 0) >= 60, "the partial text stays");
    // The test server runs with DEBUG, so EXPOSE_ERROR_DETAILS adds the error to the notice.
    assert.equal(notice?.content, "Sorry, something went wrong while answering. Please try again.\n\nRuntimeError: stream-test was asked to fail");
    assert.equal(state.phase, "idle");
    assert.equal(state.error, null, "a failed turn is shown by its messages, not as a client error");
    // The same as the rows the server stored.
    const rows = await c.messages.filter({ session: conversation.sessionId }).orderBy("timestamp").fetch();
    assert.deepEqual(rows.map((m) => [m.message_type, m.processing_status, m.content]), state.messages.map((m) => [m.message_type, m.processing_status, m.content]));

    await conversation.send("long 30");
    const next = await conversation.waitFor(finished, { timeout: 20_000 });
    assert.equal(lastAgent(next)?.processing_status, "completed");
  });

  test("cancel() stops a long reply and keeps its partial text", async () => {
    const c = client();
    const conversation = await start(c, "writer");
    await conversation.send("a dragon");
    await conversation.waitFor((s) => (lastAgent(s)?.content.length ?? 0) > 60, { timeout: 15_000 });
    const result = await conversation.cancel();
    assert.equal(result.status, "cancelling");
    const state = await conversation.waitFor(finished, { timeout: 15_000 });
    const reply = lastAgent(state);
    assert.equal(reply?.processing_status, "cancelled");
    assert.ok((reply?.content.length ?? 0) > 60);
    assert.ok(!reply?.content.includes("The end."));
    assert.equal(state.busy, false);
    const user = state.messages.find((m) => m.message_type === "user");
    assert.equal(user?.processing_status, "cancelled");
    // Cancelling again is a clear no-op.
    assert.deepEqual(await conversation.cancel(), { status: "idle", cancelled: [] });
  });

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

  test("an empty message is refused before anything is sent", async () => {
    const c = client();
    const conversation = await start(c, "echo");
    // A check of the client, not an answer of the server: a UsageError, never an ApiError.
    await assert.rejects(conversation.send("   "), (error: unknown) => isUsageError(error) && error.field === "content" && !isApiError(error));
    assert.equal(conversation.getState().messages.length, 0);
  });

  test("another visitor cannot open the conversation or its channel", async () => {
    const alice = client();
    const conversation = await start(alice, "echo");
    await conversation.send("secret");
    const mallory = client();
    await mallory.startConversation("echo").then((x) => x.close());
    const intruder = mallory.conversation(conversation.sessionId);
    conversations.push(intruder);
    const state = await intruder.waitFor((s) => s.connection === "failed" && s.error !== null, { timeout: 10_000 });
    assert.equal(state.messages.length, 0);
    assert.equal(state.loaded, false);
    // Either refusal may be reported last: the read (404) or the channel (403/404).
    const error = state.error;
    const status = isApiError(error) ? error.status : isRealtimeError(error) ? error.status : undefined;
    assert.ok(status === 403 || status === 404, `unexpected error ${String(error)}`);
  });
});
