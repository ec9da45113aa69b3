/**
 * The Vue bindings (`django-ai-first-client/vue`) with the real Vue 3 rendering into a DOM
 * (happy-dom) in Node, against the real demo server over Server-Sent Events: a streamed reply
 * arrives in a mounted component at most once per animation frame, the conversation follows a
 * ref'd id, unmounting closes every channel subscription, and a live queryset follows changes and
 * starts again only when its query changes.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

// First: the DOM the renderers read when they are imported.
import { closeDom } from "./helpers/dom.js";

import { createApp, createSSRApp, defineComponent, h, ref, type App } from "vue";

import { SESSION_CHANNEL_PREFIX, type Client, type FetchLike, type SessionRow } from "../src/index.js";
import { provideClient, useClient, useConversation, useLive, type ConversationView, type LiveRefs } from "../src/vue/index.js";
import { animationFrames, countingRealtime, waitUntil } from "./helpers/bindings.js";
import { useDemoServer } from "./helpers/fixture.js";

const demo = useDemoServer();

function mount(component: ReturnType<typeof defineComponent>, client: Client): { app: App; container: HTMLElement; unmount: () => void } {
  const container = document.createElement("div");
  document.body.appendChild(container);
  const app = createApp(
    defineComponent({
      setup() {
        provideClient(client);
        return () => h(component);
      },
    }),
  );
  app.mount(container);
  return {
    app,
    container,
    unmount() {
      app.unmount();
      container.remove();
    },
  };
}

const lastAgent = (view: ConversationView | null | undefined) => [...(view?.messages ?? [])].reverse().find((m) => m.message_type === "agent");

/** The owner channel (live session lists), not a conversation's. */
const notASession = (channel: string) => !channel.startsWith(SESSION_CHANNEL_PREFIX);

async function startedId(c: Client, agent: string, title?: string): Promise<string> {
  const started = await c.startConversation(agent, {}, title ? { title } : {});
  started.close();
  return started.sessionId;
}

describe("Vue bindings", () => {
  after(closeDom);

  test("a streamed reply arrives in the component at most once per frame; the id can change; unmount closes", async () => {
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime });
    const first = await startedId(c, "stream-test");
    const second = await startedId(c, "echo");
    const id = ref<string | null>(first);
    const views: ConversationView[] = [];
    let renders = 0;
    const Chat = defineComponent({
      setup() {
        const conversation = useConversation(id);
        return () => {
          renders += 1;
          const view = conversation.value;
          if (view && views.at(-1) !== view) views.push(view);
          return h("section", [h("p", { class: "reply" }, lastAgent(view)?.content ?? ""), h("p", { class: "session" }, view?.sessionId ?? "none")]);
        };
      },
    });
    const frames = animationFrames(150);
    const app = mount(Chat, c);
    try {
      await waitUntil(() => views.at(-1)?.loaded === true && views.at(-1)?.connection === "subscribed", "the conversation to load");
      const rendersBefore = renders;
      const framesBefore = frames.frames();
      await (views.at(-1) as ConversationView).send("burst 60");
      await waitUntil(
        () => lastAgent(views.at(-1))?.processing_status === "completed" && views.at(-1)?.busy === false,
        () => `the reply to complete (phase ${views.at(-1)?.phase})`,
      );
      const reply = lastAgent(views.at(-1));
      assert.ok(reply);
      await waitUntil(() => app.container.querySelector(".reply")?.textContent === reply.content, "the DOM to show the whole reply");
      assert.equal((await c.messages.get(reply.id)).content, reply.content);
      const partial = views.map((v) => lastAgent(v)?.content ?? "").filter((t) => t.length > 0 && t.length < reply.content.length);
      assert.ok(partial.length >= 3, `only ${partial.length} partial renders`);
      const rendered = renders - rendersBefore;
      const framesRun = frames.frames() - framesBefore;
      assert.ok(rendered <= framesRun + 2, `${rendered} renders in ${framesRun} frames`);

      // Another id: the component shows the other conversation, the first store is let go.
      id.value = second;
      await waitUntil(() => app.container.querySelector(".session")?.textContent === second && views.at(-1)?.loaded === true, "the second conversation");
      await waitUntil(() => counting.open() === 1, () => `only the second conversation's channel (${counting.open()} open)`, 10_000);
      id.value = null;
      await waitUntil(() => app.container.querySelector(".session")?.textContent === "none", "no conversation");
    } finally {
      app.unmount();
      frames.remove();
    }
    await waitUntil(() => counting.open() === 0, () => `the channel subscriptions to close (${counting.open()} open)`, 10_000);
  });

  test("useLive follows changes and a getter's query; unmount stops it", async () => {
    let queries = 0;
    const countingFetch: FetchLike = (url, init) => {
      if (url.includes("/models/session/query/")) queries += 1;
      return fetch(url, init);
    };
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime, fetch: countingFetch });
    await startedId(c, "echo", "alpha one");
    await startedId(c, "echo", "beta one");
    const search = ref("alpha");
    const other = ref(0);
    let live: LiveRefs<SessionRow> | null = null;
    const List = defineComponent({
      setup() {
        const client = useClient();
        // `other` is read too: the getter runs again when it changes, with an equal queryset.
        live = useLive(() => (other.value, client.sessions.filter({ title__icontains: search.value }).orderBy("title")));
        return () => h("p", live!.rows.value.map((r) => r.title).join(","));
      },
    });
    const app = mount(List, c);
    const text = () => app.container.textContent;
    try {
      await waitUntil(() => live?.loading.value === false && text() === "alpha one", () => `the first rows (${text()})`);
      // A getter giving an equal queryset does not start the live result again (that would
      // re-open the owner channel); checked once a later change has come through.
      const openedBefore = counting.opened(notASession);
      other.value += 1;
      other.value += 1;
      await startedId(c, "echo", "alpha two");
      await waitUntil(() => text() === "alpha one,alpha two", () => `the new session (${text()})`);
      assert.equal(counting.opened(notASession), openedBefore, "an equal queryset started the live result again");
      search.value = "beta";
      await waitUntil(() => text() === "beta one", () => `the beta rows (${text()})`);
      assert.equal(live!.error.value, null);
      const beforeRefetch = queries;
      await live!.refetch();
      assert.equal(queries, beforeRefetch + 1);
    } finally {
      app.unmount();
    }
    await waitUntil(() => counting.open() === 0, () => `the channel subscriptions to close (${counting.open()} open)`, 10_000);
  });

  test("on a server nothing is made or fetched", async () => {
    let requests = 0;
    const countingFetch: FetchLike = (url, init) => {
      requests += 1;
      return fetch(url, init);
    };
    const counting = countingRealtime();
    const c = demo.client({ realtime: counting.realtime, fetch: countingFetch });
    const id = await startedId(c, "echo");
    const { renderToString } = await import("vue/server-renderer");
    const page = createSSRApp(
      defineComponent({
        setup() {
          provideClient(c);
          const conversation = useConversation(id);
          const live = useLive(() => c.sessions.all());
          return () => h("p", `${conversation.value?.phase ?? "none"} ${live.loading.value} ${live.rows.value.length}`);
        },
      }),
    );
    const requestsBefore = requests;
    const openedBefore = counting.opened();
    const globals = globalThis as Record<string, unknown>;
    const browserWindow = globals.window;
    delete globals.window;
    let html: string;
    try {
      html = await renderToString(page);
    } finally {
      globals.window = browserWindow;
    }
    assert.equal(html, "<p>none true 0</p>");
    assert.equal(requests, requestsBefore);
    assert.equal(counting.opened(), openedBefore);
  });

  test("without a provided client, the composables say what to do", () => {
    const errors: unknown[] = [];
    const container = document.createElement("div");
    const app = createApp(
      defineComponent({
        setup() {
          useConversation("some-id");
          return () => h("p");
        },
      }),
    );
    app.config.errorHandler = (error) => {
      errors.push(error);
    };
    app.mount(container);
    app.unmount();
    assert.equal(errors.length, 1);
    assert.match(String(errors[0]), /provideClient/);
    assert.equal((errors[0] as { code?: string }).code, "no_client");
  });
});
