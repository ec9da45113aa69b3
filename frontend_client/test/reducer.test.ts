/**
 * The conversation store's reducer without a server: every event kind, events out of order and
 * twice, reads that answer out of order, a full read replacing the state, sends and uploads, and
 * the snapshot (`view`) the listeners get. Each test folds actions over a state, as the store does.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ConversationClientError, NetworkError, RealtimeError } from "../src/errors.js";
import { GAP_RETRY_DELAY, reduce, type RowRead, type StoreAction } from "../src/store/reducer.js";
import { initialState, type StoreState } from "../src/store/state.js";
import { view } from "../src/store/view.js";
import type { EventPayloads, FileRow, MessageRow, RealtimeEvent, SessionRow, WidgetRow } from "../src/types.js";

const SESSION = "s-1";
const T0 = Date.parse("2026-01-01T10:00:00.000Z");
let counter = 0;

/** An ISO timestamp `ms` after T0 (with microseconds when given). */
const at = (ms: number, micro = "000") => new Date(T0 + ms).toISOString().replace("Z", `${micro}Z`);

function event<N extends keyof EventPayloads>(name: N, fields: Omit<EventPayloads[N], "id" | "session_id" | "timestamp"> & { session_id?: string | null; timestamp?: string }): StoreAction {
  counter += 1;
  const payload = { id: `e-${counter}`, session_id: SESSION, timestamp: at(counter), ...fields } as EventPayloads[N];
  return { type: "event", event: { name, channel: `private-conversation-session-${SESSION}`, payload } as RealtimeEvent };
}

function messageRow(id: string, fields: Partial<MessageRow> = {}): MessageRow {
  return {
    id,
    session: SESSION,
    message_type: "agent",
    content: "",
    component_type: "",
    component_data: {},
    files: [],
    processing_status: "completed",
    reply_to: null,
    stream_sequence: 0,
    text_offset: null,
    timestamp: at(0),
    updated_at: at(0),
    ...fields,
  };
}

const sessionRow = (fields: Partial<SessionRow> = {}): SessionRow => ({
  id: SESSION,
  agent_path: "echo",
  title: "",
  status: "active",
  created_at: at(0),
  updated_at: at(0),
  last_message_at: null,
  ...fields,
});

const widgetRow = (id: string, fields: Partial<WidgetRow> = {}): WidgetRow => ({
  id,
  session: SESSION,
  message: null,
  widget_type: "form",
  data: {},
  display_data: {},
  created_at: at(0),
  updated_at: at(0),
  ...fields,
});

const fileRow = (id: string, fields: Partial<FileRow> = {}): FileRow => ({
  id,
  session: SESSION,
  filename: `${id}.txt`,
  content_type: "text/plain",
  size: 10,
  extraction_status: "pending",
  extraction_error: "",
  created_at: at(0),
  updated_at: at(0),
  ...fields,
});

const read = (rows: { messages?: MessageRow[]; widgets?: WidgetRow[]; files?: FileRow[]; session?: SessionRow | null }): StoreAction => ({
  type: "read",
  session: rows.session ?? null,
  messages: rows.messages ?? [],
  widgets: rows.widgets ?? [],
  files: rows.files ?? [],
});

function synced(state: StoreState, rows: { messages?: MessageRow[]; widgets?: WidgetRow[]; files?: FileRow[]; session?: SessionRow }): StoreAction {
  return {
    type: "synced",
    session: rows.session ?? sessionRow(),
    messages: rows.messages ?? [],
    widgets: rows.widgets ?? [],
    files: rows.files ?? [],
    known: new Set(state.rows.keys()),
  };
}

/** Fold `actions` over `state`; the last state and every read asked for on the way. */
function run(state: StoreState, ...actions: StoreAction[]): { state: StoreState; reads: RowRead[] } {
  const reads: RowRead[] = [];
  for (const action of actions) {
    const step = reduce(state, action);
    state = step.state;
    reads.push(...step.reads);
  }
  return { state, reads };
}

/** A loaded store with no messages. */
const loaded = () => run(initialState(SESSION), synced(initialState(SESSION), {})).state;
const message = (state: StoreState, id: string) => view(state).messages.find((m) => m.id === id);
const chunk = (message_id: string, text: string, offset: number, sequence: number) => event("text_chunk", { message_id, text, offset, sequence });

describe("streamed text", () => {
  test("stream_start shows an empty streaming agent message; a second stream_start changes nothing", () => {
    const first = run(loaded(), event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }));
    const a = message(first.state, "a");
    assert.equal(a?.streaming, true);
    assert.equal(a?.content, "");
    assert.equal(a?.reply_to, "u");
    assert.deepEqual(first.reads, [], "a first stream has nothing to read");
    assert.equal(view(first.state).phase, "streaming");
    assert.equal(view(first.state).streamingMessageId, "a");
    const again = run(first.state, chunk("a", "Hi", 0, 1), event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }));
    assert.equal(message(again.state, "a")?.content, "Hi");
  });

  test("a later stream of the turn reads the row for the text before it", () => {
    const { reads } = run(loaded(), event("stream_start", { message_id: "a", sequence: 4, reply_to: "u" }));
    assert.deepEqual(reads, [{ model: "message", pk: "a", delay: 25 }]);
  });

  test("chunks append by offset; a chunk twice and a chunk already known change nothing", () => {
    const { state } = run(
      loaded(),
      event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }),
      chunk("a", "Hello", 0, 1),
      chunk("a", " world", 5, 2),
      chunk("a", " world", 5, 2),
      chunk("a", "llo", 2, 1),
    );
    assert.equal(message(state, "a")?.content, "Hello world");
    assert.equal(message(state, "a")?.stream_sequence, 2);
  });

  test("chunks out of order are held until the text before them arrives", () => {
    const start = run(loaded(), event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" })).state;
    const early = run(start, chunk("a", "world", 6, 2), chunk("a", "!", 11, 3));
    assert.equal(message(early.state, "a")?.content, "", "nothing shows past a gap");
    assert.ok(early.reads.some((r) => r.model === "message" && r.pk === "a" && r.delay === GAP_RETRY_DELAY), "the row is read again for the gap");
    const filled = run(early.state, chunk("a", "Hello ", 0, 1));
    assert.equal(message(filled.state, "a")?.content, "Hello world!");
  });

  test("a gap is closed by a fresher row, and the held chunks after it apply", () => {
    const start = run(loaded(), event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }), chunk("a", "c", 2, 3)).state;
    const { state, reads } = run(start, read({ messages: [messageRow("a", { content: "ab", stream_sequence: 2, processing_status: "streaming", updated_at: at(5) })] }));
    assert.equal(message(state, "a")?.content, "abc");
    assert.deepEqual(reads, [], "no gap left, nothing more to read");
  });

  test("chunks of a message not read yet ask for its row and apply beyond it", () => {
    const early = run(loaded(), chunk("a", "cd", 2, 2));
    assert.equal(message(early.state, "a"), undefined, "no row, nothing to show");
    assert.deepEqual(early.reads, [{ model: "message", pk: "a", delay: 25 }]);
    const { state } = run(early.state, read({ messages: [messageRow("a", { content: "ab", stream_sequence: 1, processing_status: "streaming" })] }));
    assert.equal(message(state, "a")?.content, "abcd");
    assert.equal(message(state, "a")?.streaming, true);
  });

  test("a finished row is the whole truth: a late chunk changes nothing", () => {
    const { state } = run(
      loaded(),
      event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }),
      chunk("a", "Hello", 0, 1),
      read({ messages: [messageRow("a", { content: "Hello there.", stream_sequence: 3, processing_status: "completed", updated_at: at(9) })] }),
      chunk("a", " world", 5, 2),
      chunk("a", "Hello there. And more", 0, 4),
    );
    assert.equal(message(state, "a")?.content, "Hello there.");
    assert.equal(message(state, "a")?.streaming, false);
    assert.equal(state.streams.has("a"), false, "no assembler is kept for a finished message");
  });

  test("a streaming row older than the text the chunks gave keeps the chunks' text", () => {
    const { state } = run(
      loaded(),
      event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }),
      chunk("a", "Hello world", 0, 2),
      read({ messages: [messageRow("a", { content: "Hello", stream_sequence: 1, processing_status: "streaming" })] }),
    );
    assert.equal(message(state, "a")?.content, "Hello world");
  });

  test("stream_end reads the finished row; until it comes the message still streams", () => {
    const start = run(loaded(), event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }), chunk("a", "Hi", 0, 1)).state;
    const { state, reads } = run(start, event("stream_end", { message_id: "a", sequence: 1 }));
    assert.deepEqual(reads, [{ model: "message", pk: "a", delay: 25 }]);
    assert.equal(message(state, "a")?.streaming, true);
  });
});

describe("message status", () => {
  test("a running status is shown at once; a finished one waits for the row, read at once", () => {
    const user = messageRow("u", { message_type: "user", processing_status: "pending", content: "hi" });
    const start = run(loaded(), read({ messages: [user] })).state;
    assert.equal(view(start).phase, "waiting");
    const processing = run(start, event("message_status", { message_id: "u", message_type: "user", status: "processing" }));
    assert.equal(message(processing.state, "u")?.processing_status, "processing");
    assert.deepEqual(processing.reads, []);
    const done = run(processing.state, event("message_status", { message_id: "u", message_type: "user", status: "completed" }));
    assert.equal(message(done.state, "u")?.processing_status, "processing", "not half-final");
    assert.deepEqual(done.reads, [{ model: "message", pk: "u", delay: 0 }]);
  });

  test("the status of a message not read yet reads it", () => {
    const { state, reads } = run(loaded(), event("message_status", { message_id: "x", message_type: "agent", status: "processing" }));
    assert.equal(view(state).messages.length, 0);
    assert.deepEqual(reads, [{ model: "message", pk: "x", delay: 0 }]);
  });
});

describe("widgets", () => {
  test("a widget event shows its data on its message; widget_update replaces it", () => {
    const w = { widget_id: "w", message_id: "m", widget_type: "form", data: { slots: [1, 2] }, display_data: {} };
    const shown = run(loaded(), read({ messages: [messageRow("m", { message_type: "widget" })] }), event("widget", w));
    assert.deepEqual(message(shown.state, "m")?.widget?.data, { slots: [1, 2] });
    assert.deepEqual(shown.reads, [], "the message is known");
    const updated = run(shown.state, event("widget_update", { ...w, display_data: { picked: 2 } }));
    assert.deepEqual(view(updated.state).widgets.w?.display_data, { picked: 2 });
    assert.equal(view(updated.state).widgets.w?.created_at, view(shown.state).widgets.w?.created_at, "created_at stays");
  });

  test("a widget of a message not read yet reads the message", () => {
    const { reads } = run(loaded(), event("widget", { widget_id: "w", message_id: "m", widget_type: "form", data: {}, display_data: {} }));
    assert.deepEqual(reads, [{ model: "message", pk: "m", delay: 25 }]);
  });

  test("a truncated widget event keeps what is shown and reads the widget row", () => {
    const start = run(loaded(), read({ widgets: [widgetRow("w", { data: { a: 1 } })] })).state;
    const truncated = event("widget_update", { widget_id: "w", message_id: null, widget_type: "form", truncated: true } as never);
    const { state, reads } = run(start, truncated);
    assert.deepEqual(view(state).widgets.w?.data, { a: 1 });
    assert.deepEqual(reads, [{ model: "widget", pk: "w", delay: 0 }]);
  });

  test("a widget read that started before the widget event does not undo it", () => {
    const start = run(loaded(), event("widget", { widget_id: "w", message_id: null, widget_type: "form", data: { v: 2 }, display_data: {} })).state;
    const { state } = run(start, read({ widgets: [widgetRow("w", { data: { v: 1 }, updated_at: at(-1000) })] }));
    assert.deepEqual(view(state).widgets.w?.data, { v: 2 });
  });
});

describe("model_change", () => {
  test("created or updated rows of the built-in models are read; deleted ones go", () => {
    const start = run(loaded(), read({ messages: [messageRow("m")], widgets: [widgetRow("w")], files: [fileRow("f")] })).state;
    const changed = run(
      start,
      event("model_change", { model: "message", operation: "update", pks: ["m", "n"], operation_id: null }),
      event("model_change", { model: "widget", operation: "create", pks: ["w2"], operation_id: null }),
      event("model_change", { model: "file", operation: "update", pks: ["f"], operation_id: null }),
      event("model_change", { model: "session", operation: "update", pks: [SESSION], operation_id: null }),
    );
    assert.deepEqual(changed.reads, [
      { model: "message", pk: "m", delay: 25 },
      { model: "message", pk: "n", delay: 25 },
      { model: "widget", pk: "w2", delay: 25 },
      { model: "file", pk: "f", delay: 25 },
      { model: "session", delay: 25 },
    ]);
    const deleted = run(
      changed.state,
      event("model_change", { model: "message", operation: "delete", pks: ["m"], operation_id: null }),
      event("model_change", { model: "widget", operation: "delete", pks: ["w"], operation_id: null }),
      event("model_change", { model: "file", operation: "delete", pks: ["f"], operation_id: null }),
      event("model_change", { model: "session", operation: "delete", pks: [SESSION], operation_id: null }),
    );
    const shown = view(deleted.state);
    assert.deepEqual([shown.messages.length, Object.keys(shown.widgets), Object.keys(shown.files), shown.session], [0, [], [], null]);
    assert.deepEqual(deleted.reads, []);
  });

  test("changes of a project's own models are not the store's", () => {
    const { state, reads } = run(loaded(), event("model_change", { model: "ticket", operation: "create", pks: ["T-1"], operation_id: null }));
    assert.deepEqual(reads, []);
    assert.deepEqual(view(state).messages, []);
  });

  test("the echo of the store's own send replaces the local copy once the row is read, even a copy marked failed", () => {
    const local = {
      ...messageRow("local-op1", { message_type: "user", content: "only once", processing_status: "pending", timestamp: at(50) }),
      local: true,
      sendError: null,
      operationId: "op1",
    };
    const failed = run(loaded(), { type: "sendStarted", row: local }, { type: "sendFailed", localId: "local-op1", error: new NetworkError("http://x/") });
    assert.equal(message(failed.state, "local-op1")?.sendError?.code, "network_error");
    const echo = run(failed.state, event("model_change", { model: "message", operation: "create", pks: ["u1"], operation_id: "op1" }));
    assert.equal(message(echo.state, "local-op1")?.local, true, "kept until the row is known");
    const { state } = run(echo.state, read({ messages: [messageRow("u1", { message_type: "user", content: "only once", processing_status: "pending" })] }));
    assert.deepEqual(view(state).messages.map((m) => [m.id, m.local]), [["u1", false]]);
  });

  test("another client's message with an operation id is not taken for ours", () => {
    const local = { ...messageRow("local-op1", { message_type: "user", content: "mine" }), local: true, operationId: "op1" };
    const { state } = run(
      loaded(),
      { type: "sendStarted", row: local },
      event("model_change", { model: "message", operation: "create", pks: ["u2"], operation_id: "someone-else" }),
      read({ messages: [messageRow("u2", { message_type: "user", content: "theirs" })] }),
    );
    assert.deepEqual(view(state).messages.map((m) => m.content), ["theirs", "mine"]);
  });
});

describe("order and freshness", () => {
  test("events of another session are ignored", () => {
    const start = loaded();
    const { state, reads } = run(start, event("stream_start", { message_id: "a", sequence: 0, reply_to: "u", session_id: "s-2" }));
    assert.deepEqual(view(state).messages, []);
    assert.deepEqual(reads, []);
  });

  test("a read that answers after a fresher one does not bring the older row back", () => {
    const fresh = messageRow("m", { content: "new", updated_at: at(2000) });
    const stale = messageRow("m", { content: "old", updated_at: at(1000) });
    const { state } = run(loaded(), read({ messages: [fresh] }), read({ messages: [stale] }));
    assert.equal(message(state, "m")?.content, "new");
    const file = run(loaded(), read({ files: [fileRow("f", { extraction_status: "done", updated_at: at(2000) })] }), read({ files: [fileRow("f", { updated_at: at(1000) })] }));
    assert.equal(view(file.state).files.f?.extraction_status, "done");
  });

  test("messages are ordered by their microseconds, then user, agent, widget at the same instant", () => {
    const rows = [
      messageRow("w", { message_type: "widget", timestamp: at(1, "500") }),
      messageRow("a", { message_type: "agent", timestamp: at(1, "500") }),
      messageRow("u", { message_type: "user", timestamp: at(1, "500") }),
      messageRow("early", { message_type: "agent", timestamp: at(1, "499") }),
    ];
    const { state } = run(loaded(), read({ messages: rows }));
    assert.deepEqual(view(state).messages.map((m) => m.id), ["early", "u", "a", "w"]);
  });

  test("the reducer never changes the state it is given", () => {
    const before = run(loaded(), event("stream_start", { message_id: "a", sequence: 0, reply_to: "u" }), chunk("a", "Hello", 0, 1)).state;
    const picture = JSON.stringify(view(before));
    const assembler = before.streams.get("a");
    run(before, chunk("a", " world", 5, 2), chunk("a", "?", 20, 9), read({ messages: [messageRow("a", { content: "Hello world", processing_status: "completed" })] }));
    assert.equal(JSON.stringify(view(before)), picture);
    assert.equal(assembler?.text, "Hello", "the old state's assembler is untouched");
    assert.equal(assembler?.needsRow, false);
  });
});

describe("full reads (sync)", () => {
  test("a full read replaces what it covers: rows it no longer returns are gone", () => {
    const start = run(loaded(), read({ messages: [messageRow("gone"), messageRow("kept", { timestamp: at(5) })] })).state;
    const { state } = run(start, synced(start, { messages: [messageRow("kept", { timestamp: at(5) }), messageRow("new", { timestamp: at(6) })] }));
    assert.deepEqual(view(state).messages.map((m) => m.id), ["kept", "new"]);
    assert.equal(view(state).loaded, true);
    assert.equal(view(state).phase, "idle");
  });

  test("local messages, live streams and rows that arrived during the read stay", () => {
    const start = run(
      loaded(),
      { type: "sendStarted", row: { ...messageRow("local-op"), message_type: "user", local: true, operationId: "op" } },
      event("stream_start", { message_id: "streaming", sequence: 0, reply_to: "u" }),
    ).state;
    const sync = synced(start, {});
    // A row read by a refetch while the full read ran is newer than the full read.
    const during = run(start, read({ messages: [messageRow("during")] })).state;
    const { state } = run(during, sync);
    assert.deepEqual(view(state).messages.map((m) => m.id).sort(), ["during", "local-op", "streaming"]);
  });

  test("the first full read ends loading; it clears a network error, not others", () => {
    const initial = initialState(SESSION);
    assert.equal(view(initial).phase, "loading");
    const offline = run(initial, { type: "error", error: new NetworkError("http://x/") }, synced(initial, {})).state;
    assert.equal(view(offline).error, null);
    const refused = new ConversationClientError("no", { code: "rate_limited" });
    const kept = run(initial, { type: "error", error: refused }, synced(initial, {})).state;
    assert.equal(view(kept).error, refused);
  });
});

describe("connection", () => {
  test("the channel's state shows; its error shows while reconnecting or failed and goes once subscribed", () => {
    const down = new RealtimeError("down", { code: "realtime_unavailable" });
    const reconnecting = run(loaded(), { type: "connection", state: "reconnecting", error: down }).state;
    assert.deepEqual([view(reconnecting).connection, view(reconnecting).error], ["reconnecting", down]);
    const back = run(reconnecting, { type: "connection", state: "subscribed" }).state;
    assert.deepEqual([view(back).connection, view(back).error], ["subscribed", null]);
    const other = new ConversationClientError("x", { code: "unexpected" });
    const kept = run(loaded(), { type: "error", error: other }, { type: "connection", state: "subscribed" }).state;
    assert.equal(view(kept).error, other, "only a realtime error is cleared by subscribing");
    const refused = new RealtimeError("refused", { status: 403 });
    assert.equal(view(run(loaded(), { type: "connection", state: "failed", error: refused }).state).error, refused);
  });
});

describe("sends and uploads", () => {
  const local = (id: string, at0: number) => ({
    ...messageRow(`local-${id}`, { message_type: "user", content: id, processing_status: "pending", timestamp: at(at0) }),
    local: true,
    sendError: null,
    operationId: id,
  });

  test("a local message shows at once and last, then gives way to the stored row", () => {
    const sending = run(loaded(), read({ messages: [messageRow("old", { timestamp: at(100) })] }), { type: "sendStarted", row: local("op", 0) }).state;
    assert.deepEqual(view(sending).messages.map((m) => [m.id, m.local]), [["old", false], ["local-op", true]]);
    assert.equal(view(sending).phase, "sending");
    assert.equal(view(sending).busy, true);
    const sent = run(sending, { type: "sent", localId: "local-op", row: messageRow("u", { message_type: "user", processing_status: "pending", timestamp: at(200) }) }).state;
    assert.deepEqual(view(sent).messages.map((m) => [m.id, m.local]), [["old", false], ["u", false]]);
    assert.equal(view(sent).phase, "waiting");
  });

  test("a failed send keeps the message with its error; an aborted one leaves state.error alone", () => {
    const refused = new ConversationClientError("slow down", { code: "rate_limited" });
    const failed = run(loaded(), { type: "sendStarted", row: local("a", 0) }, { type: "sendFailed", localId: "local-a", error: refused }).state;
    assert.equal(message(failed, "local-a")?.sendError, refused);
    assert.equal(message(failed, "local-a")?.processing_status, "failed");
    assert.equal(view(failed).error, refused);
    assert.equal(view(failed).busy, false);
    const aborted = new ConversationClientError("Cancelled.", { code: "aborted" });
    const stopped = run(loaded(), { type: "sendStarted", row: local("b", 0) }, { type: "sendFailed", localId: "local-b", error: aborted }).state;
    assert.equal(message(stopped, "local-b")?.sendError?.code, "aborted");
    assert.equal(view(stopped).error, null);
    const discarded = run(stopped, { type: "localRemoved", localId: "local-b" }).state;
    assert.deepEqual(view(discarded).messages, []);
  });

  test("uploads move from uploading to uploaded with their file row, which then follows its extraction", () => {
    const upload = { key: "upload-1", filename: "a.txt", size: 10, loaded: 0, total: 10, status: "uploading" as const, file: null, error: null };
    const started = run(loaded(), { type: "uploadStarted", upload }, { type: "uploadProgress", key: "upload-1", loaded: 4, total: 10 }).state;
    assert.deepEqual(view(started).uploads.map((u) => [u.status, u.loaded]), [["uploading", 4]]);
    assert.equal(view(started).phase, "sending");
    const done = run(started, { type: "uploaded", key: "upload-1", row: fileRow("f") }).state;
    assert.deepEqual(view(done).uploads.map((u) => [u.status, u.loaded, u.file?.id]), [["uploaded", 10, "f"]]);
    const extracted = run(done, read({ files: [fileRow("f", { extraction_status: "done", updated_at: at(10) })] })).state;
    assert.equal(view(extracted).uploads[0]?.file?.extraction_status, "done");
    const failure = new ConversationClientError("too large", { code: "request_too_large" });
    const second = { ...upload, key: "upload-2" };
    const failed = run(extracted, { type: "uploadStarted", upload: second }, { type: "uploadFailed", key: "upload-2", error: failure }).state;
    assert.deepEqual(view(failed).uploads.map((u) => u.status), ["uploaded", "failed"]);
    assert.equal(view(failed).error, failure);
    assert.deepEqual(view(run(failed, { type: "uploadsCleared", failedOnly: true }).state).uploads.map((u) => u.key), ["upload-1"]);
    assert.deepEqual(view(run(failed, { type: "uploadsCleared", failedOnly: false }).state).uploads, []);
  });
});

describe("tool steps and parts", () => {
  const USER = "u";
  const user = (fields: Partial<MessageRow> = {}) => messageRow(USER, { message_type: "user", content: "hi", processing_status: "processing", timestamp: at(0), ...fields });
  const agent = (content: string, fields: Partial<MessageRow> = {}) =>
    messageRow("a", { content, processing_status: "streaming", reply_to: USER, timestamp: at(10), updated_at: at(10), ...fields });
  const stepData = (call: string, fields: Record<string, unknown> = {}) => ({
    call_id: call,
    name: "search",
    arguments: { q: call },
    round: 0,
    index: 0,
    text_offset: 0,
    result: null,
    error: null,
    duration_ms: null,
    approval: null,
    ...fields,
  });
  const toolRow = (id: string, call: string, fields: Record<string, unknown> = {}, row: Partial<MessageRow> = {}) =>
    messageRow(id, {
      message_type: "tool",
      component_type: "search",
      component_data: stepData(call, fields) as MessageRow["component_data"],
      reply_to: USER,
      timestamp: at(20),
      updated_at: at(20),
      ...row,
    });
  const start = (call: string, fields: Partial<EventPayloads["tool_call_start"]> = {}) => event("tool_call_start", { reply_to: USER, call_id: call, name: "search", ...fields });
  const args = (id: string, call: string, fields: Partial<EventPayloads["tool_call_arguments"]> = {}) =>
    event("tool_call_arguments", { message_id: id, reply_to: USER, call_id: call, name: "search", arguments: { q: call }, status: "processing", round: 0, index: 0, ...fields });
  const result = (id: string, call: string, fields: Partial<EventPayloads["tool_call_result"]> = {}) =>
    event("tool_call_result", { message_id: id, reply_to: USER, call_id: call, name: "search", status: "completed", result: [1, 2], error: null, duration_ms: 12, ...fields });
  /** An agent message's parts as short strings: `text:<text>`, `tool:<name or id>:<status>`, `widget:<id>`. */
  const parts = (state: StoreState, id = "a") =>
    (message(state, id)?.parts ?? []).map((p) =>
      p.type === "text" ? `text:${p.text}` : p.type === "tool" ? `tool:${p.step.id ?? `(${p.step.call_id})`}:${p.step.status}` : `widget:${p.message.id}`,
    );
  const streaming = (text: string) =>
    run(loaded(), read({ messages: [user()] }), event("stream_start", { message_id: "a", sequence: 0, reply_to: USER }), chunk("a", text, 0, 1)).state;

  test("tool_call_start shows a step with no row after the text so far; its events fill it in; text after it follows", () => {
    const seen = run(streaming("Let me look. "), start("c1"));
    assert.deepEqual(parts(seen.state), ["text:Let me look. ", "tool:(c1):pending"]);
    const step = message(seen.state, "a")?.parts[1];
    assert.equal(step?.type === "tool" && step.step.id, null, "no row yet");
    assert.deepEqual(seen.reads, []);
    const running = run(seen.state, args("t1", "c1", { text_offset: 13 }));
    assert.deepEqual(parts(running.state), ["text:Let me look. ", "tool:t1:processing"]);
    assert.equal(view(running.state).messages.filter((m) => m.message_type === "tool").length, 1, "the placeholder gave way to the row");
    const done = run(running.state, result("t1", "c1"), chunk("a", "Found two.", 13, 2));
    assert.deepEqual(parts(done.state), ["text:Let me look. ", "tool:t1:completed", "text:Found two."]);
    const tool = message(done.state, "t1");
    assert.deepEqual([tool?.partOf, tool?.step?.arguments, tool?.step?.result, tool?.step?.duration_ms], ["a", { q: "c1" }, [1, 2], 12]);
    assert.equal(done.state.rows.has("tool-call:u:c1"), false);
  });

  test("rows read after a reload give the same parts as the live events: text, steps and widgets by text_offset", () => {
    const text = "Looking 😀 up. Found it. Done.";
    const firstCut = "Looking 😀 up. ".length; // UTF-16 units: the emoji counts two
    const secondCut = "Looking 😀 up. Found it. ".length;
    const rows = [
      user({ processing_status: "completed" }),
      agent(text, { processing_status: "completed" }),
      toolRow("t2", "c2", { round: 1, text_offset: secondCut }, { processing_status: "completed", timestamp: at(30) }),
      toolRow("t1b", "c1b", { index: 1, text_offset: firstCut }, { processing_status: "completed", timestamp: at(20, "100") }),
      toolRow("t1a", "c1a", { index: 0, text_offset: firstCut }, { processing_status: "completed", timestamp: at(20, "200") }),
      // Made after the steps (the live events' rows are stamped with the events' times).
      messageRow("w", { message_type: "widget", reply_to: USER, timestamp: at(100_000), text_offset: secondCut }),
    ];
    const reloaded = run(initialState(SESSION), synced(initialState(SESSION), { messages: rows, widgets: [widgetRow("wr", { message: "w" })] })).state;
    assert.deepEqual(parts(reloaded), [
      "text:Looking 😀 up. ",
      "tool:t1a:completed",
      "tool:t1b:completed",
      "text:Found it. ",
      "tool:t2:completed",
      "widget:w",
      "text:Done.",
    ]);
    const widget = message(reloaded, "a")?.parts[5];
    assert.equal(widget?.type === "widget" && widget.widget?.id, "wr");
    assert.deepEqual(
      view(reloaded).messages.filter((m) => m.partOf === null).map((m) => m.id),
      ["u", "a"],
      "steps and widgets show inside the reply only",
    );
    // The same reply seen live, then finished by its row: the same parts.
    const live = run(
      streaming("Looking 😀 up. "),
      start("c1a", { index: 0 }),
      start("c1b", { index: 1 }),
      args("t1b", "c1b", { index: 1, text_offset: firstCut }),
      args("t1a", "c1a", { index: 0, text_offset: firstCut }),
      result("t1a", "c1a"),
      result("t1b", "c1b"),
      chunk("a", "Found it. ", firstCut, 2),
      args("t2", "c2", { round: 1, text_offset: secondCut }),
      result("t2", "c2"),
      read({ messages: [rows[5] as MessageRow], widgets: [widgetRow("wr", { message: "w" })] }),
      chunk("a", "Done.", secondCut, 3),
    ).state;
    assert.deepEqual(parts(live), parts(reloaded));
  });

  test("events out of order: a result before its arguments, a late arguments event, a start after the row", () => {
    const early = run(streaming("Hi. "), result("t1", "c1", { status: "failed", result: null, error: { code: "tool_error", message: "boom" } }));
    assert.deepEqual(early.reads, [{ model: "message", pk: "t1", delay: 25 }], "a step known only from its result reads its row");
    assert.equal(message(early.state, "t1")?.step?.error?.code, "tool_error");
    const late = run(early.state, args("t1", "c1", { text_offset: 4 }), start("c1"));
    assert.equal(message(late.state, "t1")?.step?.status, "failed", "a late arguments event does not take the step back");
    assert.equal(message(late.state, "t1")?.step?.error?.code, "tool_error");
    assert.deepEqual(message(late.state, "t1")?.step?.arguments, { q: "c1" }, "but gives the call's arguments and place");
    assert.equal(late.state.rows.has("tool-call:u:c1"), false, "a start after the row adds nothing");
    assert.deepEqual(parts(late.state), ["text:Hi. ", "tool:t1:failed"]);
  });

  test("a read that started before the step ended does not bring it back; a fresher read fills in the row", () => {
    const ended = run(streaming("x"), args("t1", "c1"), result("t1", "c1")).state;
    const stale = run(ended, read({ messages: [toolRow("t1", "c1", {}, { processing_status: "processing", updated_at: at(1) })] })).state;
    assert.equal(message(stale, "t1")?.step?.status, "completed");
    const fresh = run(stale, read({ messages: [toolRow("t1", "c1", { result: [1, 2] }, { processing_status: "completed", content: "[1, 2]", updated_at: at(5000) })] })).state;
    assert.equal(message(fresh, "t1")?.step?.content, "[1, 2]");
  });

  test("truncated tool events keep what is shown and read the row at once", () => {
    const seen = run(streaming("x"), start("c1")).state;
    const truncated = run(
      seen,
      event("tool_call_arguments", { message_id: "t1", reply_to: USER, call_id: "c1", name: "search", status: "processing", truncated: true } as never),
      event("tool_call_result", { message_id: "t1", reply_to: USER, call_id: "c1", name: "search", status: "completed", truncated: true } as never),
    );
    assert.deepEqual(truncated.reads, [
      { model: "message", pk: "t1", delay: 0 },
      { model: "message", pk: "t1", delay: 0 },
    ]);
    assert.deepEqual(parts(truncated.state), ["text:x", "tool:(c1):pending"], "the placeholder stays until the row is read");
    const filled = run(truncated.state, read({ messages: [toolRow("t1", "c1", { text_offset: 1, result: "big" }, { processing_status: "completed" })] })).state;
    assert.deepEqual(parts(filled), ["text:x", "tool:t1:completed"]);
  });

  test("steps of a reply with no agent message yet show on their own, then move into the reply", () => {
    const alone = run(loaded(), read({ messages: [user()] }), start("c1"), args("t1", "c1")).state;
    const step = message(alone, "t1");
    assert.deepEqual([step?.partOf, step?.step?.status, view(alone).phase], [null, "processing", "waiting"]);
    const replied = run(alone, result("t1", "c1"), event("stream_start", { message_id: "a", sequence: 0, reply_to: USER }), chunk("a", "Done.", 0, 1)).state;
    assert.equal(message(replied, "t1")?.partOf, "a");
    assert.deepEqual(parts(replied), ["tool:t1:completed", "text:Done."]);
  });

  test("a widget without an offset sits before the text when it was made first, else after it", () => {
    const rows = [
      user(),
      agent("Pick one.", { processing_status: "completed" }),
      messageRow("before", { message_type: "widget", reply_to: USER, timestamp: at(5) }),
      messageRow("after", { message_type: "widget", reply_to: USER, timestamp: at(15) }),
    ];
    assert.deepEqual(parts(run(loaded(), read({ messages: rows })).state), ["widget:before", "text:Pick one.", "widget:after"]);
  });

  test("a call that never got its row goes when the reply ends", () => {
    const seen = run(streaming("x"), start("c1")).state;
    const cancelled = run(seen, read({ messages: [agent("x", { processing_status: "cancelled", updated_at: at(9000) })] })).state;
    assert.deepEqual(parts(cancelled), ["text:x"]);
    const failed = run(loaded(), read({ messages: [user()] }), start("c1"), read({ messages: [user({ processing_status: "failed", updated_at: at(9000) })] })).state;
    assert.deepEqual(view(failed).messages.map((m) => m.id), ["u"]);
  });

  test("a widget without an offset made while a tool ran sits after that step", () => {
    const rows = [
      user(),
      agent("Let me see. Here it is.", { processing_status: "completed" }),
      toolRow("t1", "c1", { text_offset: 12 }, { processing_status: "completed", timestamp: at(20) }),
      messageRow("w", { message_type: "widget", reply_to: USER, timestamp: at(25) }),
      toolRow("t2", "c2", { text_offset: 12, index: 1 }, { processing_status: "completed", timestamp: at(30) }),
    ];
    assert.deepEqual(parts(run(loaded(), read({ messages: rows })).state), ["text:Let me see. ", "tool:t1:completed", "widget:w", "tool:t2:completed", "text:Here it is."]);
  });

  test("a full read keeps a step seen only by tool_call_start", () => {
    const seen = run(streaming("x"), start("c1")).state;
    const { state } = run(seen, synced(seen, { messages: [user(), agent("x")] }));
    assert.deepEqual(parts(state), ["text:x", "tool:(c1):pending"]);
  });

  test("steps of one reply with the same call id (a model reusing ids per round) have distinct part keys", () => {
    const state = run(
      loaded(),
      read({
        messages: [
          user({ processing_status: "completed" }),
          agent("ab", { processing_status: "completed" }),
          toolRow("t1", "call_0", { round: 0, index: 0, text_offset: 1 }, { processing_status: "completed" }),
          toolRow("t2", "call_0", { round: 1, index: 0, text_offset: 2 }, { processing_status: "completed", timestamp: at(30) }),
        ],
      }),
    ).state;
    assert.deepEqual(parts(state), ["text:a", "tool:t1:completed", "text:b", "tool:t2:completed"]);
    const keys = (message(state, "a")?.parts ?? []).map((p) => p.key);
    assert.equal(new Set(keys).size, keys.length, `keys repeat: ${JSON.stringify(keys)}`);
    // Live: the second round's call shows from its tool_call_start although a row has its id, and
    // a read of the first round's row does not take it away.
    const live = run(
      streaming("a"),
      args("t1", "call_0", { text_offset: 1 }),
      result("t1", "call_0"),
      start("call_0", { round: 1, index: 0 }),
      read({ messages: [toolRow("t1", "call_0", { text_offset: 1 }, { processing_status: "completed" })] }),
    ).state;
    assert.deepEqual(parts(live), ["text:a", "tool:t1:completed", "tool:(call_0):pending"]);
  });

  test("a step awaiting approval is pending approval; the waiting turn is no failure and not busy; answers move it on", () => {
    const approval = { status: "pending", reason: "", answered_by: null, answered_at: null, expires_at: at(86_400_000) } as const;
    const asked = run(
      streaming("I can apply it. "),
      args("t1", "c1", { name: "apply_discount", arguments: { percent: 15 }, status: "awaiting_approval", approval, text_offset: 16 }),
      event("message_status", { message_id: "a", message_type: "agent", status: "awaiting_approval" }),
      event("message_status", { message_id: USER, message_type: "user", status: "awaiting_approval" }),
    );
    assert.deepEqual(asked.reads, [], "waiting is no finished status: nothing to read");
    const shown = view(asked.state);
    assert.deepEqual(shown.pendingApprovals.map((s) => [s.id, s.name, s.arguments, s.awaitingApproval, s.answering]), [["t1", "apply_discount", { percent: 15 }, true, false]]);
    assert.deepEqual([shown.phase, shown.busy, shown.error, shown.streamingMessageId], ["awaiting_approval", false, null, null]);
    // Before the turn records its suspension the step already waits; so does a message sent meanwhile.
    const early = view(run(loaded(), read({ messages: [user()] }), args("t1", "c1", { status: "awaiting_approval", approval })).state);
    assert.deepEqual([early.phase, early.busy, early.pendingApprovals.length], ["awaiting_approval", true, 1]);
    assert.equal(message(asked.state, "a")?.processing_status, "awaiting_approval");
    const answering = run(asked.state, { type: "answerStarted", stepId: "t1" }).state;
    assert.equal(view(answering).pendingApprovals[0]?.answering, true);
    const approvedRow = toolRow("t1", "c1", { name: "apply_discount", approval: { ...approval, status: "approved" } }, { processing_status: "pending", updated_at: at(60_000) });
    const approved = run(answering, { type: "answerEnded", stepId: "t1", row: approvedRow }).state;
    assert.deepEqual(view(approved).pendingApprovals, []);
    assert.equal(message(approved, "t1")?.step?.approval?.status, "approved");
    const conflict = new ConversationClientError("already answered", { code: "approval_already_answered" });
    const refused = run(asked.state, { type: "answerStarted", stepId: "t1" }, { type: "answerEnded", stepId: "t1", row: null, error: conflict });
    assert.equal(view(refused.state).error, conflict);
    assert.equal(view(refused.state).pendingApprovals[0]?.answering, false);
    assert.deepEqual(refused.reads, [{ model: "message", pk: "t1", delay: 0 }], "the row says what the step is now");
    const rejected = run(asked.state, result("t1", "c1", { status: "failed", result: null, error: { code: "tool_rejected", message: "no" }, approval: { ...approval, status: "rejected", reason: "no" } })).state;
    assert.deepEqual(view(rejected).pendingApprovals, []);
    assert.equal(message(rejected, "t1")?.step?.error?.code, "tool_rejected");
  });

  test("a reply resumed after an approval streams on after its text, which never blanks", () => {
    const waiting = run(
      loaded(),
      read({ messages: [user({ processing_status: "pending" }), agent("I can apply it. ", { processing_status: "awaiting_approval", stream_sequence: 3 })] }),
    ).state;
    const resumed = run(waiting, event("stream_start", { message_id: "a", sequence: 3, reply_to: USER }));
    assert.equal(message(resumed.state, "a")?.streaming, true);
    assert.equal(message(resumed.state, "a")?.content, "I can apply it. ");
    const more = run(resumed.state, chunk("a", "Done: 15 % off.", 16, 4)).state;
    assert.equal(message(more, "a")?.content, "I can apply it. Done: 15 % off.");
    // Chunks of the resumed reply before its stream_start (another order on the wire) too.
    const early = run(waiting, chunk("a", "Done.", 16, 4)).state;
    assert.equal(message(early, "a")?.content, "I can apply it. Done.");
  });
});

describe("versions: the active path", () => {
  // A conversation u1 -> a1, u2 -> a2 (tool step t2 in a2's reply); u2 is then answered again
  // (u2b, reply a2b) or edited. The server flips `active` (updated_at moves on) and says so with
  // one model_change naming every row whose flag changed.
  const user = (id: string, ms: number, fields: Partial<MessageRow> = {}) =>
    messageRow(id, { message_type: "user", content: id, timestamp: at(ms), updated_at: at(ms), active: true, version_index: 1, version_count: 1, ...fields });
  const reply = (id: string, to: string, ms: number, fields: Partial<MessageRow> = {}) =>
    messageRow(id, { reply_to: to, content: `reply to ${to}`, timestamp: at(ms), updated_at: at(ms), active: true, ...fields });
  const step = (id: string, to: string, ms: number) =>
    reply(id, to, ms, { message_type: "tool", component_type: "lookup", component_data: { call_id: "c1", name: "lookup", arguments: {}, round: 0, index: 0, text_offset: 0 } });
  const base = () =>
    run(loaded(), read({ messages: [user("u1", 10), reply("a1", "u1", 20), user("u2", 30), step("t2", "u2", 35), reply("a2", "u2", 40)] })).state;
  const ids = (state: StoreState) => view(state).messages.map((m) => m.id);
  const change = (pks: string[]) => event("model_change", { model: "message", operation: "update", pks, operation_id: null });

  test("rows read back inactive leave the snapshot, with their reply; rows that joined appear in order", () => {
    const start = base();
    assert.deepEqual(ids(start), ["u1", "a1", "u2", "t2", "a2"]);
    const asked = run(start, change(["u2", "t2", "a2", "u2b"]));
    assert.deepEqual(new Set(asked.reads.map((r) => (r.model === "message" ? r.pk : ""))), new Set(["u2", "t2", "a2", "u2b"]));
    const u2b = user("u2b", 50, { version_group: "u2", version_index: 2, version_count: 2, revision: "regenerate", processing_status: "pending" });
    // The user message alone says it left: its reply goes with it, before the reply's rows come.
    const { state } = run(asked.state, read({ messages: [user("u2", 30, { active: false, updated_at: at(60), version_group: "u2", version_count: 2 }), u2b] }));
    assert.deepEqual(ids(state), ["u1", "a1", "u2b"]);
    assert.equal(view(state).phase, "waiting", "the new version waits for its reply");
    const answered = run(state, read({ messages: [reply("a2b", "u2b", 70)] })).state;
    assert.deepEqual(ids(answered), ["u1", "a1", "u2b", "a2b"]);
  });

  test("an active-scoped read that no longer returns a row the store shows removes it; rows it never showed stay unknown", () => {
    const start = base();
    const { state } = run(start, { ...read({ messages: [user("u2b", 50, { version_group: "u2", version_index: 2, version_count: 2 })] }), asked: ["u2", "t2", "a2", "u2b", "x9"] } as StoreAction);
    assert.deepEqual(ids(state), ["u1", "a1", "u2b"]);
    assert.ok(!state.offPath.has("x9"), "a row the store never showed is not taken for one that left");
    // A row not asked for stays even when the answer lacks it.
    const other = run(start, { ...read({ messages: [] }), asked: ["a1"] } as StoreAction).state;
    assert.deepEqual(ids(other), ["u1", "u2", "t2", "a2"]);
  });

  test("events of a superseded turn (its late chunks, steps, status) do not bring its rows back", () => {
    const streaming = run(
      base(),
      event("stream_start", { message_id: "a3", sequence: 0, reply_to: "u3" }),
      read({ messages: [user("u3", 80, { processing_status: "processing" })] }),
      chunk("a3", "Half", 0, 1),
    ).state;
    assert.deepEqual(ids(streaming), ["u1", "a1", "u2", "t2", "a2", "u3", "a3"]);
    const left = run(streaming, read({ messages: [user("u3", 80, { active: false, updated_at: at(90), processing_status: "processing" })] })).state;
    assert.deepEqual(ids(left), ["u1", "a1", "u2", "t2", "a2"]);
    assert.equal(view(left).busy, false, "the superseded turn no longer makes the conversation busy");
    const late = run(
      left,
      chunk("a3", " more", 4, 2),
      event("tool_call_start", { reply_to: "u3", call_id: "c9", name: "lookup" }),
      event("tool_call_arguments", { message_id: "t3", reply_to: "u3", call_id: "c9", name: "lookup", arguments: {}, status: "processing" }),
      event("message_status", { message_id: "a3", message_type: "agent", status: "cancelled", reason: "superseded" }),
      event("stream_end", { message_id: "a3", sequence: 2 }),
      event("stream_start", { message_id: "a3", sequence: 2, reply_to: "u3" }),
    );
    assert.deepEqual(ids(late.state), ["u1", "a1", "u2", "t2", "a2"]);
    assert.deepEqual(late.reads, [], "nothing of the superseded turn is read");
    assert.equal(late.state.streams.size, 0);
  });

  test("a read that started before a row left the path does not bring it back; a later one that finds it active again does", () => {
    const left = run(base(), read({ messages: [user("u2", 30, { active: false, updated_at: at(60) }), reply("a2", "u2", 40, { active: false, updated_at: at(60) })] })).state;
    assert.deepEqual(ids(left), ["u1", "a1"]);
    const stale = run(left, read({ messages: [user("u2", 30), reply("a2", "u2", 40)] })).state;
    assert.deepEqual(ids(stale), ["u1", "a1"], "copies older than the change stay out");
    const staleSync = run(stale, synced(stale, { messages: [user("u1", 10), reply("a1", "u1", 20), user("u2", 30), reply("a2", "u2", 40)] })).state;
    assert.deepEqual(ids(staleSync), ["u1", "a1"], "a full read made before the change neither");
    const back = run(staleSync, read({ messages: [user("u2", 30, { updated_at: at(70) }), reply("a2", "u2", 40, { updated_at: at(70) })] })).state;
    assert.deepEqual(ids(back), ["u1", "a1", "u2", "a2"]);
    assert.equal(back.offPath.size, 1, "only t2 (not read back yet) is still known off the path");
  });

  test("switching back and forth: the snapshot is always one path, in order", () => {
    // u2 (a2) and u2b (a2b) are versions of one message; u3 followed u2b.
    const v1 = { version_group: "u2", version_count: 2 };
    const path1 = [user("u1", 10), reply("a1", "u1", 20), user("u2", 30, { ...v1, updated_at: at(100) }), reply("a2", "u2", 40, { updated_at: at(100) })];
    const path2 = [user("u2b", 50, { ...v1, version_index: 2 }), reply("a2b", "u2b", 60), user("u3", 70), reply("a3", "u3", 75)];
    let state = run(loaded(), read({ messages: [user("u1", 10), reply("a1", "u1", 20), ...path2] })).state;
    assert.deepEqual(ids(state), ["u1", "a1", "u2b", "a2b", "u3", "a3"]);
    // To version 1: u2b's path leaves, u2's joins (all in one model_change, one read).
    const off = (rows: MessageRow[], ms: number) => rows.map((r) => ({ ...r, active: false, updated_at: at(ms) }));
    state = run(state, read({ messages: [...path1.slice(2), ...off(path2, 100)] })).state;
    assert.deepEqual(ids(state), ["u1", "a1", "u2", "a2"]);
    assert.deepEqual(
      view(state).messages.map((m) => [m.id, m.versionIndex, m.versionCount, m.versionOf]),
      [["u1", 1, 1, "u1"], ["a1", 1, 1, "u1"], ["u2", 1, 2, "u2"], ["a2", 1, 2, "u2"]],
      "a reply counts the versions of the user message it answers",
    );
    // And back: the rows come back active, newer than when they left.
    const on = (rows: MessageRow[], ms: number) => rows.map((r) => ({ ...r, active: true, updated_at: at(ms) }));
    state = run(state, read({ messages: [...off(path1.slice(2), 200), ...on(path2, 200)] })).state;
    assert.deepEqual(ids(state), ["u1", "a1", "u2b", "a2b", "u3", "a3"]);
    assert.equal(view(state).messages.find((m) => m.id === "u2b")?.versionIndex, 2);
  });

  test("the answer of the store's own version operation replaces the other version and everything after it at once", () => {
    const start = run(base(), read({ messages: [user("u3", 50), reply("a3", "u3", 60)] })).state;
    assert.deepEqual(ids(start), ["u1", "a1", "u2", "t2", "a2", "u3", "a3"]);
    // u2 was regenerated: the server answers the new version (the original's row here still has
    // version_group null: its group is itself).
    const u2b = user("u2b", 90, { version_group: "u2", version_index: 2, version_count: 2, revision: "regenerate", processing_status: "pending" });
    const { state } = run(start, { type: "messageSaved", row: u2b });
    assert.deepEqual(ids(state), ["u1", "a1", "u2b"]);
    assert.equal(view(state).busy, true);
    // A local message being sent meanwhile stays.
    const sending = run(start, { type: "sendStarted", row: { ...user("local-1", 95), local: true, operationId: "op" } }, { type: "messageSaved", row: u2b }).state;
    assert.deepEqual(ids(sending), ["u1", "a1", "u2b", "local-1"]);
    // Feedback on a reply (an agent row) changes that row only.
    const rated = run(start, { type: "messageSaved", row: reply("a1", "u1", 20, { feedback: "up", feedback_comment: "good", updated_at: at(99) }) }).state;
    assert.deepEqual(ids(rated), ids(start));
    assert.equal(view(rated).messages.find((m) => m.id === "a1")?.feedback, "up");
  });

  test("a full read that lacks a reply still streaming reads its row: off the path, it goes", () => {
    const streaming = run(base(), read({ messages: [user("u3", 80, { processing_status: "processing" }), reply("a3", "u3", 85, { processing_status: "streaming" })] })).state;
    // The path changed while the channel was down: the read of the active path lacks u3 and a3.
    const sync = run(streaming, synced(streaming, { messages: [user("u1", 10), reply("a1", "u1", 20), user("u2", 30), step("t2", "u2", 35), reply("a2", "u2", 40)] }));
    assert.deepEqual(ids(sync.state), ["u1", "a1", "u2", "t2", "a2", "a3"], "a live stream stays until its row says otherwise");
    assert.deepEqual(sync.reads, [{ model: "message", pk: "a3", delay: 0 }]);
    const { state } = run(sync.state, read({ messages: [reply("a3", "u3", 85, { processing_status: "cancelled", active: false, updated_at: at(95) })] }));
    assert.deepEqual(ids(state), ["u1", "a1", "u2", "t2", "a2"]);
    assert.equal(view(state).busy, false);
  });

  test("a conversation deleted elsewhere: the session read finds it missing; the store keeps its messages and says so", () => {
    const gone = new ConversationClientError("Not found.", { code: "not_found" });
    const { state, reads } = run(base(), { ...read({}), sessionGone: gone } as StoreAction);
    assert.equal(state.session, null);
    assert.equal(state.error, gone);
    assert.deepEqual(ids(state), ["u1", "a1", "u2", "t2", "a2"]);
    assert.deepEqual(reads, []);
  });

  test("a stale answer of a version operation (another switch came after it) changes nothing", () => {
    const left = run(base(), read({ messages: [user("u2", 30, { active: false, updated_at: at(200) })] })).state;
    const { state } = run(left, { type: "messageSaved", row: user("u2", 30, { updated_at: at(150) }) });
    assert.deepEqual(ids(state), ["u1", "a1"]);
  });
});
