// A tiny chat page on the AI SDK's useChat (@ai-sdk/react) against this app's AI SDK endpoint:
// the browser test frontend_client/e2e/ai-sdk.test.ts bundles it with esbuild and serves it at the
// demo server's origin (so the session cookie and the CSRF cookie are the API's). The same page is
// the example of docs/ai-sdk.md.
//
// ?c=<conversation id> opens a conversation again: its messages come from ai-sdk/chat/<id>/messages/
// and `resume: true` re-attaches to a reply still being written (a reload mid-reply).
import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { useState } from "react";
import { createRoot } from "react-dom/client";

const API = "/api/conversations/";
const AGENT = new URLSearchParams(location.search).get("agent") ?? "ai-sdk-test";

/** Django's CSRF token, from the cookie start/ sets: every POST is a write. */
function csrfToken() {
  return /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie)?.[1] ?? "";
}

async function openConversation() {
  const id = new URLSearchParams(location.search).get("c");
  if (id) {
    const response = await fetch(`${API}ai-sdk/chat/${id}/messages/`);
    if (!response.ok) throw new Error(`Cannot open conversation ${id}: ${response.status}`);
    return { id, messages: (await response.json()).messages };
  }
  const response = await fetch(`${API}start/`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
    body: JSON.stringify({ agent_path: AGENT }),
  });
  if (!response.ok) throw new Error(`Cannot start a conversation: ${response.status}`);
  const { session_id } = await response.json();
  history.replaceState(null, "", `?c=${session_id}`);
  return { id: session_id, messages: [] };
}

const transport = new DefaultChatTransport({
  api: `${API}ai-sdk/chat`,
  headers: () => ({ "X-CSRFToken": csrfToken() }),
  // The server ignores earlier messages (its rows are the truth): send only the new one. The trigger
  // and messageId go too: a regenerate() then answers the reply messageId names again.
  prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => ({
    body: { id, messages: messages.slice(-1), trigger, messageId },
  }),
});

function Part({ part }) {
  if (part.type === "text") return <span className="text">{part.text}</span>;
  if (part.type === "data-widget") {
    return (
      <div className="widget" data-widget={part.data.widget_type}>
        {JSON.stringify(part.data.data)}
      </div>
    );
  }
  if (part.type.startsWith("tool-")) {
    return (
      <div className="tool" data-state={part.state}>
        {part.type.slice(5)}: {JSON.stringify(part.output ?? part.input ?? null)}
      </div>
    );
  }
  return null;
}

function Chat({ id, initial }) {
  const { messages, sendMessage, status, stop, error } = useChat({ id, messages: initial, transport, resume: true });
  const [input, setInput] = useState("");
  return (
    <main data-status={status}>
      <ol id="messages">
        {messages.map((message) => (
          <li key={message.id} className="message" data-role={message.role} data-id={message.id}>
            {message.parts.map((part, n) => (
              <Part key={n} part={part} />
            ))}
          </li>
        ))}
      </ol>
      {error ? <p id="error">{error.message}</p> : null}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (!input.trim()) return;
          sendMessage({ text: input });
          setInput("");
        }}
      >
        <input id="input" value={input} onChange={(event) => setInput(event.target.value)} />
        <button id="send" type="submit" disabled={status === "streaming" || status === "submitted"}>
          Send
        </button>
        <button id="stop" type="button" onClick={() => stop()} disabled={status !== "streaming" && status !== "submitted"}>
          Stop
        </button>
      </form>
    </main>
  );
}

const root = createRoot(document.getElementById("root"));
openConversation().then(
  ({ id, messages }) => {
    document.body.dataset.conversation = id;
    root.render(<Chat id={id} initial={messages} />);
  },
  (error) => root.render(<p id="error">{String(error)}</p>),
);
