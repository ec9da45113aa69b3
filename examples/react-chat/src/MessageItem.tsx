// One message of the conversation: the user's, a system notice, or an agent's reply in its parts
// (its text cut where its tool steps and widgets sit; docs/sdk.md, "Parts of a reply"). A tool
// step waiting for approval has Approve / Reject.
import type { ConversationMessage, MessagePart, ToolStep } from "django-ai-first-client";
import type { ConversationView } from "django-ai-first-client/react";

const ENDINGS: Record<string, string> = { cancelled: "Stopped", failed: "Failed" };

export function MessageItem({ message, conversation }: { message: ConversationMessage; conversation: ConversationView }) {
  const status = message.processing_status;
  const classes = ["message", message.message_type, message.streaming ? "streaming" : ""].join(" ").trim();
  return (
    <li className={classes} data-id={message.id} data-status={status}>
      <div className="body">
        {message.message_type === "agent" ? (
          message.parts.map((part) => <Part key={part.key} part={part} conversation={conversation} />)
        ) : message.step ? (
          // A step of a reply whose agent message does not exist yet (no text so far).
          <Step step={message.step} conversation={conversation} />
        ) : message.message_type === "widget" ? (
          <Widget type={message.component_type} data={message.widget?.display_data ?? message.component_data} />
        ) : (
          <span className="text">{message.content}</span>
        )}
      </div>
      {message.message_type === "agent" && ENDINGS[status] && <span className="note">{ENDINGS[status]}</span>}
      {message.sendError && (
        <span className="note">
          Not sent: {message.sendError.message}{" "}
          <button type="button" onClick={() => void conversation.retry(message.id).catch(() => undefined)}>
            Retry
          </button>{" "}
          <button type="button" onClick={() => conversation.discard(message.id)}>
            Discard
          </button>
        </span>
      )}
    </li>
  );
}

function Part({ part, conversation }: { part: MessagePart; conversation: ConversationView }) {
  if (part.type === "text") return <span className="text">{part.text}</span>;
  if (part.type === "tool") return <Step step={part.step} conversation={conversation} />;
  return <Widget type={part.message.component_type} data={part.widget?.display_data ?? part.message.component_data} />;
}

function Widget({ type, data }: { type: string; data: unknown }) {
  return (
    <div className="widget-part">
      <strong>{type}</strong>
      <pre>{JSON.stringify(data, null, 2)}</pre>
    </div>
  );
}

function Step({ step, conversation }: { step: ToolStep; conversation: ConversationView }) {
  return (
    <div className="step" data-status={step.status} data-call={step.call_id}>
      <span>
        Tool <code>{step.name}</code> · <span className="step-status">{step.status.replace("_", " ")}</span>
      </span>
      <pre>{JSON.stringify(step.arguments ?? {}, null, 2)}</pre>
      {step.error && <span className="note error">{step.error.message}</span>}
      {step.result != null && <pre className="result">{JSON.stringify(step.result, null, 2)}</pre>}
      {step.awaitingApproval && step.id && <Approval stepId={step.id} answering={step.answering} conversation={conversation} />}
    </div>
  );
}

function Approval({ stepId, answering, conversation }: { stepId: string; answering: boolean; conversation: ConversationView }) {
  // Nothing to do with a failure here: the store sets every refusal of an answer (answered in
  // another tab, expired, the network) as the snapshot's `error`, which <Chat> shows.
  const answer = (approved: boolean) => (approved ? conversation.approve(stepId) : conversation.reject(stepId)).catch(() => undefined);
  return (
    <span className="approval">
      <button type="button" className="approve" disabled={answering} onClick={() => void answer(true)}>
        Approve
      </button>
      <button type="button" className="reject" disabled={answering} onClick={() => void answer(false)}>
        Reject
      </button>
    </span>
  );
}
