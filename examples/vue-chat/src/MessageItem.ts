// One message of the conversation: the user's, a system notice, or an agent's reply in its parts
// (its text cut where its tool steps and widgets sit; docs/sdk.md, "Parts of a reply"). A tool
// step waiting for approval has Approve / Reject.
import type { ConversationMessage, MessagePart, ToolStep } from "django-ai-first-client";
import type { ConversationView } from "django-ai-first-client/vue";
import { defineComponent, h, type PropType, type VNodeChild } from "vue";

const ENDINGS: Record<string, string> = { cancelled: "Stopped", failed: "Failed" };

function widget(type: string, data: unknown): VNodeChild {
  return h("div", { class: "widget-part" }, [h("strong", type), h("pre", JSON.stringify(data, null, 2))]);
}

function approval(stepId: string, answering: boolean, conversation: ConversationView): VNodeChild {
  // Nothing to do with a failure here: the store sets every refusal of an answer (answered in
  // another tab, expired, the network) as the snapshot's `error`, which <Chat> shows.
  const answer = (approved: boolean) => (approved ? conversation.approve(stepId) : conversation.reject(stepId)).catch(() => undefined);
  return h("span", { class: "approval" }, [
    h("button", { type: "button", class: "approve", disabled: answering, onClick: () => void answer(true) }, "Approve"),
    h("button", { type: "button", class: "reject", disabled: answering, onClick: () => void answer(false) }, "Reject"),
  ]);
}

function step(s: ToolStep, conversation: ConversationView): VNodeChild {
  return h("div", { class: "step", "data-status": s.status, "data-call": s.call_id }, [
    h("span", ["Tool ", h("code", s.name), " · ", h("span", { class: "step-status" }, s.status.replace("_", " "))]),
    h("pre", JSON.stringify(s.arguments ?? {}, null, 2)),
    s.error ? h("span", { class: "note error" }, s.error.message) : null,
    s.result != null ? h("pre", { class: "result" }, JSON.stringify(s.result, null, 2)) : null,
    s.awaitingApproval && s.id ? approval(s.id, s.answering, conversation) : null,
  ]);
}

function part(p: MessagePart, conversation: ConversationView): VNodeChild {
  if (p.type === "text") return h("span", { class: "text", key: p.key }, p.text);
  if (p.type === "tool") return h("div", { key: p.key }, [step(p.step, conversation)]);
  return h("div", { key: p.key }, [widget(p.message.component_type, p.widget?.display_data ?? p.message.component_data)]);
}

export const MessageItem = defineComponent({
  name: "MessageItem",
  props: {
    message: { type: Object as PropType<ConversationMessage>, required: true },
    conversation: { type: Object as PropType<ConversationView>, required: true },
  },
  setup(props) {
    return () => {
      const { message, conversation } = props;
      const status = message.processing_status;
      const body: VNodeChild =
        message.message_type === "agent"
          ? message.parts.map((p) => part(p, conversation))
          : message.step
            ? // A step of a reply whose agent message does not exist yet (no text so far).
              step(message.step, conversation)
            : message.message_type === "widget"
              ? widget(message.component_type, message.widget?.display_data ?? message.component_data)
              : h("span", { class: "text" }, message.content);
      return h("li", { class: ["message", message.message_type, { streaming: message.streaming }], "data-id": message.id, "data-status": status }, [
        h("div", { class: "body" }, [body]),
        message.message_type === "agent" && ENDINGS[status] ? h("span", { class: "note" }, ENDINGS[status]) : null,
        message.sendError
          ? h("span", { class: "note" }, [
              `Not sent: ${message.sendError.message} `,
              h("button", { type: "button", onClick: () => void conversation.retry(message.id).catch(() => undefined) }, "Retry"),
              " ",
              h("button", { type: "button", onClick: () => conversation.discard(message.id) }, "Discard"),
            ])
          : null,
      ]);
    };
  },
});
