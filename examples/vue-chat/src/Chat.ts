// One conversation: its messages as the store shows them (the reply streams in), the composer,
// and Stop while a turn runs.
import { useClient, useConversation } from "django-ai-first-client/vue";
import { defineComponent, h, type PropType, ref } from "vue";

import { MessageItem } from "./MessageItem";

export const Chat = defineComponent({
  name: "Chat",
  props: {
    sessionId: { type: String, required: true },
    agentName: { type: Function as PropType<(path: string) => string>, required: true },
  },
  setup(props) {
    // A shallow ref of the store's snapshot with its actions, replaced at most once per frame while
    // a reply streams; a getter, so it follows the prop. Components showing the same id share the store.
    const client = useClient();
    const conversation = useConversation(() => props.sessionId);
    const text = ref("");

    function submit(event: Event) {
      event.preventDefault();
      const message = text.value.trim();
      if (!message || !conversation.value) return;
      text.value = "";
      // A message that cannot be sent stays in the list with its error (Retry / Discard there).
      const { session } = conversation.value;
      conversation.value.send(message).catch(() => undefined);
      // The first message names the conversation: a write through the bridge, which the live list hears.
      if (!session?.title) client.sessions.update(props.sessionId, { title: message.slice(0, 60) }).catch(() => undefined);
    }

    return () => {
      const view = conversation.value;
      if (!view) return null;
      return h("main", { class: "chat", "data-session": props.sessionId, "data-phase": view.phase }, [
        h("header", [
          h("strong", view.session ? props.agentName(view.session.agent_path) : "…"),
          view.phase === "awaiting_approval" ? h("span", { class: "muted" }, "Waiting for your approval") : null,
          h("span", { class: "connection", "data-state": view.connection }, view.connection),
        ]),
        h(
          "ol",
          { class: "messages" },
          // Tool steps and widgets of a reply show inside its agent message (partOf).
          view.messages
            .filter((message) => message.partOf === null)
            .map((message) => h(MessageItem, { key: message.id, message, conversation: view })),
        ),
        // The store's last error: a refused approve / reject (answered in another tab, expired), a
        // failed read or realtime. It stays until cleared, so the user can dismiss it.
        view.error
          ? h("p", { class: "error" }, [
              `${view.error.message} `,
              h("button", { type: "button", class: "dismiss", onClick: () => view.clearError() }, "Dismiss"),
            ])
          : null,
        h("form", { class: "composer", onSubmit: submit }, [
          h("input", {
            "aria-label": "Message",
            placeholder: "Write a message",
            value: text.value,
            onInput: (e: Event) => (text.value = (e.target as HTMLInputElement).value),
          }),
          h("button", { type: "submit", class: "send", disabled: !text.value.trim() }, "Send"),
          view.busy ? h("button", { type: "button", class: "stop", onClick: () => void view.cancel() }, "Stop") : null,
        ]),
      ]);
    };
  },
});
