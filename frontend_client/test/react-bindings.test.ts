/**
 * The React bindings (`django-ai-first-client/react`) with the real React 19 (React 18:
 * react-18.test.ts runs this file again with it) rendering into a DOM
 * (happy-dom) in Node, against the real demo server over Server-Sent Events: a streamed reply
 * arrives in a rendered component at most once per animation frame, unmounting closes every
 * channel subscription, StrictMode's double render and mount leave one subscription, and a live
 * queryset follows changes and starts again only when its query changes.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

// First: the DOM the renderers read when they are imported.
import { closeDom } from "./helpers/dom.js";

import { createElement, StrictMode, useState, version, type ReactNode } from "react";
import { createRoot, type Root } from "react-dom/client";

import { SESSION_CHANNEL_PREFIX, type Client, type FetchLike, type SessionRow } from "../src/index.js";
import { ClientProvider, useClient, useConversation, useLive, type ConversationView, type LiveView } from "../src/react/index.js";
import { RELEASE_AFTER_MS } from "../src/bindings/conversation.js";
import { animationFrames, countingRealtime, waitUntil } from "./helpers/bindings.js";
import { useDemoServer } from "./helpers/fixture.js";

const demo = useDemoServer();


function mount(element: ReactNode): { root: Root; container: HTMLElement; unmount: () => void } {
  const container = document.createElement("div");
  document.body.appendChild(container);
  const root = createRoot(container);
  root.render(element);
  return {
    root,
    container,
    unmount() {
      root.unmount();
      container.remove();
    },
  };
}

const lastAgent = (view: ConversationView | null) => [...(view?.messages ?? [])].reverse().find((m) => m.message_type === "agent");

/** A chat pane: the reply's text and the phase, with every render and its view recorded. */
function chatPane(record: { renders: number; views: ConversationView[] }) {
  return function Chat({ id }: { id: string }) {
    const view = useConversation(id);
    record.renders += 1;
    if (view && record.views.at(-1) !== view) record.views.push(view);
    return createElement("section", null, createElement("p", { className: "reply" }, lastAgent(view)?.content ?? ""), createElement("p", { className: "phase" }, view?.phase ?? "none"));
  };
}

/** The owner channel (live session lists), not a conversation's. */
const notASession = (channel: string) => !channel.startsWith(SESSION_CHANNEL_PREFIX);

async function startedId(c: Client, agent: string, title?: string): Promise<string> {
  const started = await c.startConversation(agent, {}, title ? { title } : {});
  started.close();
  return started.sessionId;
}

// The version in the title: react-18.test.ts runs this file again with React 18.
describe(`React ${version} bindings`, () => {
  after(closeDom);

  test("a streamed reply arrives in the component, at most one render per animation frame", async () => {
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime });
    const id = await startedId(c, "stream-test");
    const record = { renders: 0, views: [] as ConversationView[] };
    const Chat = chatPane(record);
    // A slow screen (about 7 frames a second): far fewer frames than the stream has chunks.
    const frames = animationFrames(150);
    const app = mount(createElement(ClientProvider, { client: c }, createElement(Chat, { id })));
    try {
      await waitUntil(() => record.views.at(-1)?.loaded === true && record.views.at(-1)?.connection === "subscribed", "the conversation to load");
      const chunks: number[] = [];
      const stopCounting = c.realtime.subscribe((record.views.at(-1) as ConversationView).conversation.channel, {
        event: (event) => {
          if (event.name === "text_chunk") chunks.push(Date.now());
        },
      });
      const rendersBefore = record.renders;
      const framesBefore = frames.frames();
      await (record.views.at(-1) as ConversationView).send("burst 60");
      await waitUntil(
        () => lastAgent(record.views.at(-1) ?? null)?.processing_status === "completed" && record.views.at(-1)?.busy === false,
        () => `the reply to complete (phase ${record.views.at(-1)?.phase})`,
      );
      stopCounting();
      const renders = record.renders - rendersBefore;
      const framesRun = frames.frames() - framesBefore;
      const reply = lastAgent(record.views.at(-1) ?? null);
      assert.ok(reply);
      assert.equal(app.container.querySelector(".reply")?.textContent, reply.content, "the DOM shows the whole reply");
      assert.equal((await c.messages.get(reply.id)).content, reply.content);
      // Streamed: the component showed partial text that only grew.
      const partial = record.views.map((v) => lastAgent(v)?.content ?? "").filter((t) => t.length > 0 && t.length < reply.content.length);
      assert.ok(partial.length >= 3, `only ${partial.length} partial renders`);
      assert.deepEqual(partial.map((t) => t.length), partial.map((t) => t.length).sort((a, b) => a - b));
      // At most one render per frame (plus the send's own: the local message, outside a frame).
      assert.ok(chunks.length > 10, `only ${chunks.length} text_chunk events`);
      assert.ok(renders <= framesRun + 2, `${renders} renders in ${framesRun} frames for ${chunks.length} chunks`);
    } finally {
      app.unmount();
      frames.remove();
    }
    await waitUntil(() => counting.open() === 0, () => `the channel subscriptions to close (${counting.open()} open)`, 10_000);
  });

  test("StrictMode: two components on one id and a live list leave one subscription per channel", async () => {
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime });
    const id = await startedId(c, "echo");
    const openedBefore = counting.opened();
    const first = { renders: 0, views: [] as ConversationView[] };
    const second = { renders: 0, views: [] as ConversationView[] };
    const A = chatPane(first);
    const B = chatPane(second);
    let list: LiveView<SessionRow> | null = null;
    function Sessions() {
      const client = useClient();
      list = useLive(client.sessions.orderBy("-created_at"));
      return createElement("ul", null, list.rows.map((row) => createElement("li", { key: row.id }, row.title)));
    }
    const app = mount(createElement(StrictMode, null, createElement(ClientProvider, { client: c }, createElement(A, { id }), createElement(B, { id }), createElement(Sessions))));
    try {
      await waitUntil(() => first.views.at(-1)?.connection === "subscribed" && list?.loading === false && list.connection === "subscribed", "the store and the list");
      // One store for the two components, one adapter subscription per channel (session, owner).
      assert.equal(first.views.at(-1)?.conversation, second.views.at(-1)?.conversation);
      assert.equal(counting.open(), 2);
      assert.equal(counting.opened() - openedBefore, 2);
      assert.deepEqual(list!.rows.map((r) => r.id), [id]);

      await (first.views.at(-1) as ConversationView).send("hello there");
      await waitUntil(() => lastAgent(second.views.at(-1) ?? null)?.processing_status === "completed", "the echo in the other component");
      const messages = second.views.at(-1)?.messages ?? [];
      assert.deepEqual(messages.map((m) => m.message_type), ["user", "agent"], "one message sent, one reply");
    } finally {
      app.unmount();
    }
    await waitUntil(() => counting.open() === 0, () => `the channel subscriptions to close (${counting.open()} open)`, 10_000);
  });

  test("useLive follows changes, refetches, and starts again only when its query changes", async () => {
    let queries = 0;
    const countingFetch: FetchLike = (url, init) => {
      if (url.includes("/models/session/query/")) queries += 1;
      return fetch(url, init);
    };
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime, fetch: countingFetch });
    await startedId(c, "echo", "alpha one");
    await startedId(c, "echo", "beta one");
    let latest: LiveView<SessionRow> | null = null;
    let setSearch: (value: string) => void = () => undefined;
    let rerender: () => void = () => undefined;
    function Search() {
      const [search, set] = useState("alpha");
      const [, tick] = useState(0);
      setSearch = set;
      rerender = () => tick((n) => n + 1);
      latest = useLive(useClient().sessions.filter({ title__icontains: search }).orderBy("title"));
      return createElement("p", null, latest.rows.map((r) => r.title).join(","));
    }
    const app = mount(createElement(ClientProvider, { client: c }, createElement(Search)));
    const titles = () => (latest?.rows ?? []).map((r) => r.title).join(",");
    try {
      await waitUntil(() => latest?.loading === false && latest.connection === "subscribed", "the first rows");
      assert.equal(titles(), "alpha one");
      assert.equal(latest!.error, null);

      // New queryset objects with the same query do not start the live result again (that
      // would re-open the owner channel); checked once a later change has come through.
      const openedBefore = counting.opened(notASession);
      for (let n = 0; n < 5; n++) rerender();
      await startedId(c, "echo", "alpha two");
      await waitUntil(() => titles() === "alpha one,alpha two", () => `the new session (rows: ${titles()})`);
      assert.equal(counting.opened(notASession), openedBefore, "an equal queryset started the live result again");

      // refetch() reads now. At least one read: a refetch of the live result's own (an event
      // of the new conversation's last save, batched 40 ms) may run beside it.
      const beforeRefetch = queries;
      await latest!.refetch();
      assert.ok(queries >= beforeRefetch + 1, `refetch() read nothing (${queries - beforeRefetch} reads)`);

      // Another query: the old live result stops, the new one starts.
      setSearch("beta");
      await waitUntil(() => titles() === "beta one", () => `the beta rows (rows: ${titles()})`);
      assert.equal(counting.open(), 1, "one owner-channel subscription");
    } finally {
      app.unmount();
    }
    await waitUntil(() => counting.open() === 0, () => `the channel subscriptions to close (${counting.open()} open)`, 10_000);
  });

  test("a store you made, no target, and server rendering", async () => {
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime });
    const own = demo.keep(await demo.start(c, "echo"));
    const record = { renders: 0, views: [] as ConversationView[] };
    let current: ConversationView | null = null;
    let setTarget: (target: typeof own | null) => void = () => undefined;
    function Pane() {
      const [target, set] = useState<typeof own | null>(null);
      setTarget = set;
      current = useConversation(target);
      record.renders += 1;
      if (current && record.views.at(-1) !== current) record.views.push(current);
      return createElement("p", null, current ? lastAgent(current)?.content ?? "" : "no conversation");
    }
    const app = mount(createElement(ClientProvider, { client: c }, createElement(Pane)));
    try {
      await waitUntil(() => app.container.textContent === "no conversation", "the empty pane");
      assert.equal(current, null);
      setTarget(own);
      await waitUntil(() => record.views.at(-1)?.conversation === own, "the store's view");
      // Its methods are bound: they work taken off the view.
      const { send } = record.views.at(-1) as ConversationView;
      await send("bound");
      await waitUntil(() => lastAgent(record.views.at(-1) ?? null)?.processing_status === "completed", "the echo");
      assert.match(app.container.textContent ?? "", /bound/);
    } finally {
      app.unmount();
    }
    // A store the caller made stays open after the component is gone; closing it is the caller's.
    await new Promise((r) => setTimeout(r, RELEASE_AFTER_MS + 200));
    assert.equal(counting.open(), 1);
    own.close();
    assert.equal(counting.open(), 0);

    // On a server (no `window`) nothing is made or fetched: the hook gives null.
    const { renderToString } = await import("react-dom/server");
    const globals = globalThis as Record<string, unknown>;
    const browserWindow = globals.window;
    const openedBefore = counting.opened();
    delete globals.window;
    let html: string;
    try {
      html = renderToString(createElement(ClientProvider, { client: c }, createElement(chatPane({ renders: 0, views: [] }), { id: own.sessionId })));
    } finally {
      globals.window = browserWindow;
    }
    assert.match(html, /none/);
    assert.equal(counting.opened(), openedBefore);
  });

  test("a hidden tab (frames requested, none run) still shows the reply", async () => {
    const globals = globalThis as Record<string, unknown>;
    let requested = 0;
    globals.requestAnimationFrame = () => ++requested;
    globals.cancelAnimationFrame = () => undefined;
    const c = demo.client();
    const id = await startedId(c, "echo");
    const record = { renders: 0, views: [] as ConversationView[] };
    const app = mount(createElement(ClientProvider, { client: c }, createElement(chatPane(record), { id })));
    try {
      await waitUntil(() => record.views.at(-1)?.connection === "subscribed" && record.views.at(-1)?.loaded === true, "the conversation to load");
      await (record.views.at(-1) as ConversationView).send("in the background");
      await waitUntil(() => lastAgent(record.views.at(-1) ?? null)?.processing_status === "completed", "the reply without frames");
      assert.ok(requested > 0, "no frame was requested");
    } finally {
      app.unmount();
      delete globals.requestAnimationFrame;
      delete globals.cancelAnimationFrame;
    }
  });

  test("without a provider, the hooks say what to do", async () => {
    let error: unknown = null;
    function Orphan() {
      try {
        useConversation("some-id");
      } catch (caught) {
        error = caught;
      }
      return null;
    }
    const app = mount(createElement(Orphan));
    try {
      await waitUntil(() => error !== null, "the render");
      assert.match(String(error), /ClientProvider/);
      assert.equal((error as { code?: string }).code, "no_client");
    } finally {
      app.unmount();
    }
  });
});
