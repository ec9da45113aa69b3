/**
 * The version methods through the React and Vue bindings, against the real demo server: the view
 * `useConversation()` gives carries `regenerate`, `edit`, `versions`, `setActiveVersion` and
 * `feedback`, bound (they work taken off the view), and a "< k/n >" picker rendered from the
 * messages' `versionIndex` / `versionCount` follows each change.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

// First: the DOM the renderers read when they are imported.
import { closeDom } from "./helpers/dom.js";

import { createElement, type ReactNode } from "react";
import { createRoot } from "react-dom/client";
import { createApp, defineComponent, h } from "vue";

import type { ConversationMessage } from "../src/index.js";
import { ClientProvider, useConversation as useReactConversation, type ConversationView } from "../src/react/index.js";
import { provideClient, useConversation as useVueConversation } from "../src/vue/index.js";
import { waitUntil } from "./helpers/bindings.js";
import { useDemoServer } from "./helpers/fixture.js";

const demo = useDemoServer();

/** A picker under each user message: "text k/n", and each reply's text with its rating. */
function line(m: ConversationMessage): string {
  if (m.message_type === "user") return `${m.content} ${m.versionIndex}/${m.versionCount}`;
  return `${m.content}${m.feedback ? ` [${m.feedback}]` : ""}`;
}

function render(view: ConversationView | null): string {
  return (view?.messages ?? []).map(line).join(" | ");
}

const completed = (view: ConversationView | null) => !!view && !view.busy && view.messages.at(-1)?.processing_status === "completed";

describe("version methods in the bindings", () => {
  after(closeDom);

  test("React: useConversation's regenerate, versions and setActiveVersion, bound, move the picker", async () => {
    const c = demo.client();
    const own = await demo.start(c, "echo");
    let current: ConversationView | null = null;
    function Chat(): ReactNode {
      current = useReactConversation(own);
      return createElement("p", null, render(current));
    }
    const container = document.createElement("div");
    document.body.appendChild(container);
    const root = createRoot(container);
    root.render(createElement(ClientProvider, { client: c }, createElement(Chat)));
    try {
      await waitUntil(() => current !== null, "the view");
      const { send, regenerate, versions, setActiveVersion } = current as unknown as ConversationView;
      const sent = await send("hi");
      await waitUntil(() => container.textContent === "hi 1/1 | You said: hi" && completed(current), () => `the reply; shown: ${container.textContent}`);
      const version = await regenerate(sent.id);
      await waitUntil(
        () => completed(current) && container.textContent === "hi 2/2 | You said: hi" && current!.messages[0]!.id === version.id,
        () => `the second version; shown: ${container.textContent}`,
      );
      const all = await versions(version.id);
      assert.deepEqual(all.map((m) => m.id), [sent.id, version.id]);
      await setActiveVersion(sent.id);
      await waitUntil(
        () => completed(current) && container.textContent === "hi 1/2 | You said: hi" && current!.messages[0]!.id === sent.id,
        () => `the first version again; shown: ${container.textContent}`,
      );
    } finally {
      root.unmount();
      container.remove();
      own.close();
    }
  });

  test("Vue: useConversation's edit and feedback, bound, show in the component", async () => {
    const c = demo.client();
    const own = await demo.start(c, "echo");
    let current: ConversationView | null = null;
    const Chat = defineComponent({
      setup() {
        const conversation = useVueConversation(own);
        return () => {
          current = conversation.value;
          return h("p", render(current));
        };
      },
    });
    const container = document.createElement("div");
    document.body.appendChild(container);
    const app = createApp(
      defineComponent({
        setup() {
          provideClient(c);
          return () => h(Chat);
        },
      }),
    );
    app.mount(container);
    try {
      await waitUntil(() => current !== null, "the view");
      const { send, edit, feedback } = current as unknown as ConversationView;
      const sent = await send("draft");
      await waitUntil(() => completed(current) && container.textContent === "draft 1/1 | You said: draft", () => `the reply; shown: ${container.textContent}`);
      await edit(sent.id, "final");
      await waitUntil(() => completed(current) && container.textContent === "final 2/2 | You said: final", () => `the edit; shown: ${container.textContent}`);
      const reply = current!.messages.at(-1)!;
      await feedback(reply.id, "up");
      await waitUntil(() => container.textContent === "final 2/2 | You said: final [up]", () => `the rating; shown: ${container.textContent}`);
    } finally {
      app.unmount();
      container.remove();
      own.close();
    }
  });
});
