// One conversation: its messages as the store shows them (the reply streams in), the composer,
// and Stop while a turn runs.
import { useClient, useConversation } from "django-ai-first-client/react";
import { type FormEvent, useState } from "react";

import { MessageItem } from "./MessageItem";

export function Chat({ sessionId, agentName }: { sessionId: string; agentName: (path: string) => string }) {
  // The store's snapshot and its actions on one object, a new one (and one render) per frame at
  // most while a reply streams. Other components asking for the same id share the store.
  const client = useClient();
  const conversation = useConversation(sessionId);
  const [text, setText] = useState("");
  if (!conversation) return null;

  function submit(event: FormEvent) {
    event.preventDefault();
    const message = text.trim();
    if (!message || !conversation) return;
    setText("");
    // A message that cannot be sent stays in the list with its error (Retry / Discard there).
    conversation.send(message).catch(() => undefined);
    // The first message names the conversation: a write through the bridge, which the live list hears.
    if (!conversation.session?.title) client.sessions.update(sessionId, { title: message.slice(0, 60) }).catch(() => undefined);
  }

  return (
    <main className="chat" data-session={sessionId} data-phase={conversation.phase}>
      <header>
        <strong>{conversation.session ? agentName(conversation.session.agent_path) : "…"}</strong>
        {conversation.phase === "awaiting_approval" && <span className="muted">Waiting for your approval</span>}
        <span className="connection" data-state={conversation.connection}>
          {conversation.connection}
        </span>
      </header>
      <ol className="messages">
        {/* Tool steps and widgets of a reply show inside its agent message (partOf). */}
        {conversation.messages
          .filter((message) => message.partOf === null)
          .map((message) => (
            <MessageItem key={message.id} message={message} conversation={conversation} />
          ))}
      </ol>
      {/* The store's last error: a refused approve / reject (answered in another tab, expired), a
          failed read or realtime. It stays until cleared, so the user can dismiss it. */}
      {conversation.error && (
        <p className="error">
          {conversation.error.message}{" "}
          <button type="button" className="dismiss" onClick={() => conversation.clearError()}>
            Dismiss
          </button>
        </p>
      )}
      <form className="composer" onSubmit={submit}>
        <input aria-label="Message" placeholder="Write a message" value={text} onChange={(e) => setText(e.target.value)} />
        <button type="submit" className="send" disabled={!text.trim()}>
          Send
        </button>
        {conversation.busy && (
          <button type="button" className="stop" onClick={() => void conversation.cancel()}>
            Stop
          </button>
        )}
      </form>
    </main>
  );
}
