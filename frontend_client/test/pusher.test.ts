/**
 * The SDK over Pusher: a real Pusher-protocol server (soketi, from tests/realtime_server, with
 * hosted Pusher's limits: 10 KB per event, 10 events per batch) and a demo server configured to
 * publish to it; the client follows `realtime/config/` to pusher-js, whose private channels are
 * authorised by the project's `realtime/auth/`.
 */

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  createClient,
  isRealtimeError,
  type Client,
  type Conversation,
  type TextChunkEvent,
  type ToolCallResultEvent,
  type WidgetEvent,
} from "../src/index.js";
import { freePort, repoRoot, startDemoServer, type DemoServer } from "./helpers/server.js";
import { lastAgent, replied } from "./helpers/store.js";
import { assertRebuiltExactly, firstNotPrefix, joinMidStream, messageAtStreamEnd, recordStreamedTexts } from "./helpers/streams.js";

const SOKETI_DIR = join(repoRoot, "tests", "realtime_server");
const SOKETI_BIN = join(SOKETI_DIR, "node_modules", "@soketi", "soketi", "bin", "server.js");
const KEY = "sdk-key";

let soketi: ChildProcess | null = null;
let server: DemoServer | null = null;
let pusherEnv: Record<string, string> = {};
const clients: Client[] = [];
const conversations: Conversation[] = [];
const missing = existsSync(SOKETI_BIN) ? null : `soketi is not installed in ${SOKETI_DIR} (CI installs it: scripts/npm-dirs.txt)`;

async function startSoketi(): Promise<number> {
  const port = await freePort();
  const child = spawn(process.execPath, [SOKETI_BIN, "start"], {
    cwd: SOKETI_DIR,
    env: {
      ...process.env,
      SOKETI_HOST: "127.0.0.1",
      SOKETI_PORT: String(port),
      SOKETI_METRICS_ENABLED: "false",
      SOKETI_METRICS_SERVER_PORT: String(await freePort()),
      SOKETI_DEFAULT_APP_ID: "4243",
      SOKETI_DEFAULT_APP_KEY: KEY,
      SOKETI_DEFAULT_APP_SECRET: "sdk-secret",
      SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: "false",
      // Hosted Pusher's limits: a larger event is refused, so the server must split long text.
      SOKETI_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB: "10",
      SOKETI_DEFAULT_APP_MAX_EVENT_BATCH_SIZE: "10",
      SOKETI_SHUTDOWN_GRACE_PERIOD: "100",
    },
    stdio: "ignore",
    detached: true,
  });
  soketi = child;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/`)).ok) return port;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("soketi did not start within 30 s");
}

before(async () => {
  if (missing) return;
  const port = await startSoketi();
  pusherEnv = {
    PUSHER_APP_ID: "4243",
    PUSHER_KEY: KEY,
    PUSHER_SECRET: "sdk-secret",
    PUSHER_HOST: "127.0.0.1",
    PUSHER_PORT: String(port),
    PUSHER_SCHEME: "http",
  };
  server = await startDemoServer(pusherEnv);
});

after(async () => {
  for (const c of conversations) c.close();
  for (const c of clients) c.close();
  await server?.stop();
  if (soketi?.pid) {
    try {
      process.kill(-soketi.pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
});

function client(anonymousId?: string | null): Client {
  const c = createClient({ baseUrl: (server as DemoServer).api, ...(anonymousId ? { anonymousId } : {}) });
  clients.push(c);
  return c;
}


describe("over Pusher (soketi)", { skip: missing ?? false }, () => {
  test("the config leads to pusher-js, and a streamed reply arrives through it", async () => {
    const c = client();
    const config = await c.realtimeConfig();
    assert.equal(config.backend, "pusher");
    assert.equal(config.key, KEY);

    const conversation = await c.startConversation("support");
    conversations.push(conversation);
    await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
    const adapter = await c.realtime.adapter();
    assert.equal(adapter?.name, "pusher");

    const partial: number[] = [];
    conversation.subscribe((s) => {
      const agent = lastAgent(s);
      if (agent?.streaming && agent.content) partial.push(agent.content.length);
    });
    await conversation.send("Where is my order?");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    const stored = await c.messages.get(lastAgent(state)?.id as string);
    assert.equal(lastAgent(state)?.content, stored.content);
    assert.match(stored.content, /Orders ship within two working days/);
    assert.ok(new Set(partial).size >= 3, `streamed in ${new Set(partial).size} steps`);
  });

  test("one write of 30,000 characters, cut into events under 10 KB that share its sequence, arrives whole", async () => {
    const c = client();
    const conversation = await c.startConversation("stream-test");
    conversations.push(conversation);
    await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
    const chunks: TextChunkEvent[] = [];
    c.realtime.subscribe(conversation.channel, { event: (e) => void (e.name === "text_chunk" && chunks.push(e.payload)) });
    const texts = recordStreamedTexts(conversation);
    const atEnd = messageAtStreamEnd(c, conversation);

    await conversation.send("long 30000");
    const streamed = await atEnd;
    const done = await conversation.waitFor(replied, { timeout: 20_000 });
    const stored = await c.messages.get(lastAgent(done)?.id as string);

    // The agent's text: the finished row (the agent returns exactly what it streamed).
    assert.ok(stored.content.length >= 30_000, `${stored.content.length} characters`);
    assert.ok(stored.content.includes("😀") && stored.content.includes("Grüße") && stored.content.includes("日本語"));
    // The server cut the one write into several events, all carrying sequence 1.
    assert.ok(chunks.length >= 4, `${chunks.length} events`);
    assert.deepEqual([...new Set(chunks.map((e) => `${e.first_sequence}-${e.sequence}`))], ["1-1"]);
    assert.deepEqual(chunks.map((e) => e.offset), chunks.map((_, i) => chunks.slice(0, i).reduce((n, e) => n + e.text.length, 0)));
    // At stream_end, before the finished row arrived, the store had assembled all of it.
    assert.equal(streamed?.streaming, true, "stream_end was applied before the finished row");
    assert.equal(streamed?.content.length, stored.content.length);
    assert.ok(streamed?.content === stored.content, "the streamed text equals the agent's text");
    assert.equal(firstNotPrefix(texts, stored.content), null, "every streamed state was a prefix of the reply");
    assert.equal(lastAgent(done)?.content, stored.content);
  });

  test("a second client joining while writes are coalesced and split rebuilds the streamed text exactly", async () => {
    const alice = client();
    const conversation = await alice.startConversation("stream-test");
    conversations.push(conversation);
    await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
    const tab = client(alice.anonymousId);
    const seen = await joinMidStream(alice, tab, conversation);

    assertRebuiltExactly(seen);
  });

  test("widget and tool step events over the server's event limit arrive truncated, and the store reads the rows", async () => {
    // A second demo server on the same soketi whose events may carry 400 bytes: the appointment
    // widget's event (about 450) does not fit, text is split to fit.
    const small = await startDemoServer({
      ...pusherEnv,
      DJANGO_AI_SETTINGS_JSON: JSON.stringify({ PUSHER: { MAX_EVENT_BYTES: 400 } }),
    });
    try {
      const c = createClient({ baseUrl: small.api });
      clients.push(c);
      const conversation = await c.startConversation("support");
      conversations.push(conversation);
      await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
      const widgetEvents: WidgetEvent[] = [];
      c.realtime.subscribe(conversation.channel, { event: (e) => void (e.name === "widget" && widgetEvents.push(e.payload)) });

      await conversation.send("book a call");
      const state = await conversation.waitFor(
        (s) => !s.busy && s.messages.some((m) => m.widget?.widget_type === "appointment_form" && Array.isArray(m.widget.data.available_slots)),
        { timeout: 20_000 },
      );
      assert.equal(widgetEvents.length, 1);
      const [event] = widgetEvents as [WidgetEvent];
      assert.equal(event.truncated, true);
      assert.equal(event.data, undefined);
      const widget = state.widgets[event.widget_id];
      assert.ok(widget, "the store has the widget the event named");
      const row = await c.widgets.get(event.widget_id);
      assert.deepEqual(widget.data, row.data);
      assert.equal((widget.data.available_slots as string[]).length, 3);
      assert.equal(state.messages.find((m) => m.widget)?.widget?.id, event.widget_id);

      // A tool step whose arguments and result do not fit: its events name the row (issue 13).
      const tools = await c.startConversation("tools-test");
      conversations.push(tools);
      await tools.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
      const stepEvents: ToolCallResultEvent[] = [];
      c.realtime.subscribe(tools.channel, {
        event: (e) => void ((e.name === "tool_call_arguments" || e.name === "tool_call_result") && stepEvents.push(e.payload as ToolCallResultEvent)),
      });
      await tools.send("big 600");
      const done = await tools.waitFor((s) => replied(s) && lastAgent(s)?.parts.at(-1)?.type === "text", { timeout: 20_000 });
      assert.deepEqual(stepEvents.map((e) => [e.truncated, e.status, e.name]), [[true, "processing", undefined], [true, "completed", undefined]]);
      const step = lastAgent(done)?.parts.find((p) => p.type === "tool");
      assert.ok(step?.type === "tool");
      assert.deepEqual([step.step.id, step.step.arguments, step.step.result, step.step.status], [stepEvents[0]?.message_id, { q: "x".repeat(600) }, `${"x".repeat(600)}!`, "completed"]);
      assert.deepEqual(lastAgent(done)?.parts.map((p) => p.type), ["text", "tool", "text"]);
    } finally {
      await small.stop();
    }
  });

  test("live() follows the owner's channel through pusher-js", async () => {
    const c = client();
    const first = await c.startConversation("echo");
    conversations.push(first);
    const counts: number[] = [];
    const stop = c.sessions.live((s) => counts.push(s.rows.length));
    const deadline = Date.now() + 15_000;
    while (!counts.includes(1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    conversations.push(await c.startConversation("echo"));
    while (!counts.includes(2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    stop();
    assert.deepEqual([...new Set(counts)], [1, 2]);
  });

  test("another visitor's subscription is refused by realtime/auth/", async () => {
    const alice = client();
    const conversation = await alice.startConversation("echo");
    conversations.push(conversation);
    const mallory = client();
    conversations.push(await mallory.startConversation("echo"));
    const refused = await new Promise<unknown>((resolve) => {
      mallory.realtime.subscribe(conversation.channel, {
        event: () => resolve(new Error("an event reached the intruder")),
        state: (state, error) => {
          if (state === "failed") resolve(error);
        },
      });
    });
    assert.ok(isRealtimeError(refused), String(refused));
    assert.equal(refused.channel, conversation.channel);
    assert.ok(refused.status === 403 || refused.status === 404, `status ${refused.status}`);
    // The conversation store shows nothing of it either.
    const intruder = mallory.conversation(conversation.sessionId);
    conversations.push(intruder);
    const state = await intruder.waitFor((s) => s.connection === "failed", { timeout: 15_000 });
    assert.equal(state.messages.length, 0);
  });
});
