/**
 * How often a React component renders while a long reply streams: `useConversation()` of
 * `django-ai-first-client/react` (at most one render per animation frame) against a naive
 * component that keeps the store's state in `useState` and sets it on every change (one render per
 * event when the events come in separate tasks, as they do from a network).
 *
 * The real React 19 renders into a DOM (happy-dom) in Node with a 60 Hz `requestAnimationFrame`;
 * the conversation is a real one of a demo server (runserver, temporary SQLite), read through the
 * bridge as usual. Its realtime adapter is the benchmark's own: it delivers a `stream_start` and
 * then N `text_chunk` events shaped as the server sends them, each in its own task, either as fast
 * as the event loop takes them ("flood") or one per millisecond ("paced"), so both components get
 * exactly the same N chunks (the server's own stream coalesces writes into fewer events).
 * Prints one JSON line per round for tests/bench/bench_sdk.py.
 */

// First: the DOM the renderers read when they are imported.
import "../test/helpers/dom.js";

import { createElement, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";

import { createClient, SESSION_CHANNEL_PREFIX, type ChannelListener, type Client, type Conversation, type ConversationState, type RealtimeEvent, type RealtimeFactory } from "../src/index.js";
import { ClientProvider, useConversation } from "../src/react/index.js";
import { animationFrames } from "../test/helpers/bindings.js";
import { startDemoServer } from "../test/helpers/server.js";

const chunks = Number(process.argv[2] ?? "2000");
const rounds = Number(process.argv[3] ?? "3");
const PIECE = "word, ";

/** A realtime adapter the benchmark drives: `emit()` delivers an event to the channel's listener. */
function drivenRealtime(): { realtime: RealtimeFactory; emit: (channel: string, event: RealtimeEvent) => void } {
  const listeners = new Map<string, ChannelListener>();
  const realtime: RealtimeFactory = () => ({
    name: "bench",
    subscribe(channel, listener) {
      listeners.set(channel, listener);
      queueMicrotask(() => listener.state?.("subscribed"));
      return () => listeners.delete(channel);
    },
    close: () => listeners.clear(),
  });
  return { realtime, emit: (channel, event) => listeners.get(channel)?.event(event) };
}

const nextTask = (paced: boolean) => new Promise<void>((r) => (paced ? setTimeout(r, 1) : setImmediate(r)));

async function waitFor(check: () => boolean, what: string, timeout = 60_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const replyText = (state: ConversationState | null) => state?.messages.find((m) => m.message_type === "agent")?.content ?? "";

interface Probe {
  renders: number;
  shown: string;
  /** The rows are read and the channel subscribed: no chunk will wait for a read. */
  ready: boolean;
}

function show(probe: Probe, state: ConversationState | null): string {
  probe.renders += 1;
  probe.shown = replyText(state);
  probe.ready = !!state?.loaded && state.connection === "subscribed";
  return probe.shown;
}

/** The SDK's hook. */
function hooked(probe: Probe) {
  return function Reply({ id }: { id: string }) {
    return createElement("p", null, show(probe, useConversation(id)));
  };
}

/** The naive way: the store's state in useState, set on every change. */
function naive(probe: Probe, store: () => Conversation) {
  return function Reply() {
    const [conversation] = useState(store);
    const [state, setState] = useState<ConversationState>(() => conversation.getState());
    useEffect(() => conversation.subscribe(setState), [conversation]);
    return createElement("p", null, show(probe, state));
  };
}

async function round(api: string, anonymousId: string, sessionId: string, kind: "useConversation" | "naive", paced: boolean): Promise<Record<string, unknown>> {
  const driven = drivenRealtime();
  const client: Client = createClient({ baseUrl: api, anonymousId, realtime: driven.realtime });
  const probe: Probe = { renders: 0, shown: "", ready: false };
  let own: Conversation | null = null;
  const Reply = kind === "useConversation" ? hooked(probe) : naive(probe, () => (own = client.conversation(sessionId)));
  const container = document.createElement("div");
  document.body.appendChild(container);
  const root = createRoot(container);
  root.render(createElement(ClientProvider, { client }, createElement(Reply, { id: sessionId })));
  const channel = `${SESSION_CHANNEL_PREFIX}${sessionId}`;
  await waitFor(() => probe.ready, "the conversation to load");

  const messageId = `bench-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  const base = { session_id: sessionId, timestamp: new Date().toISOString() };
  driven.emit(channel, { name: "stream_start", channel, payload: { ...base, id: `${messageId}-start`, message_id: messageId, sequence: 0, reply_to: "" } } as RealtimeEvent);
  await nextTask(false);
  const final = PIECE.repeat(chunks).length;
  const rendersBefore = probe.renders;
  const started = performance.now();
  for (let n = 0; n < chunks; n++) {
    driven.emit(channel, {
      name: "text_chunk",
      channel,
      payload: { ...base, id: `${messageId}-${n}`, message_id: messageId, sequence: n + 1, first_sequence: n + 1, offset: n * PIECE.length, text: PIECE },
    } as RealtimeEvent);
    await nextTask(paced);
  }
  const emitted = performance.now();
  await waitFor(() => probe.shown.length === final, "the whole reply on screen");
  const shown = performance.now();
  const renders = probe.renders - rendersBefore;
  root.unmount();
  container.remove();
  (own as Conversation | null)?.close();
  client.close();
  const seconds = (shown - started) / 1000;
  return {
    component: kind,
    pattern: paced ? "paced" : "flood",
    chunks,
    renders,
    ms: shown - started,
    emit_ms: emitted - started,
    lag_ms: shown - emitted,
    renders_per_s: renders / seconds,
  };
}

async function main(): Promise<void> {
  const server = await startDemoServer();
  const frames = animationFrames(16);
  try {
    const writer = createClient({ baseUrl: server.api, realtime: "none" });
    const started = await writer.startConversation("echo");
    started.close();
    const anonymousId = writer.anonymousId as string;
    for (const paced of [false, true]) {
      for (let n = 0; n < rounds; n++) {
        // Alternating, so neither always runs on a warmer engine.
        for (const kind of n % 2 ? (["naive", "useConversation"] as const) : (["useConversation", "naive"] as const)) {
          process.stdout.write(JSON.stringify({ round: n, ...(await round(server.api, anonymousId, started.sessionId, kind, paced)) }) + "\n");
        }
      }
    }
  } finally {
    frames.remove();
    await server.stop();
  }
}

await main();
