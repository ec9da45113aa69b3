// The page: the agents to start a conversation with, the visitor's conversations (live), and the
// open conversation. Which one is open lives in the URL (#/c/<id>), so a reload keeps it.
import type { AgentInfo } from "django-ai-first-client";
import { useClient, useLive } from "django-ai-first-client/react";
import { type FormEvent, useEffect, useState } from "react";

import { Chat } from "./Chat";

function openId(): string | null {
  return /^#\/c\/([0-9a-f-]{36})$/.exec(location.hash)?.[1] ?? null;
}

export function App() {
  const client = useClient();
  const [agents, setAgents] = useState<AgentInfo[]>([]);
  const [agent, setAgent] = useState("");
  const [sessionId, setSessionId] = useState(openId);
  const [starting, setStarting] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // A new queryset object at each render is the same live result while its query is the same.
  const sessions = useLive(client.sessions.orderBy("-updated_at").limit(30));

  useEffect(() => {
    client.agents().then(
      (list) => {
        setAgents(list);
        setAgent((current) => current || (list[0]?.path ?? ""));
      },
      (reason: unknown) => setError(String(reason)),
    );
  }, [client]);

  useEffect(() => {
    const follow = () => setSessionId(openId());
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);

  async function start(event: FormEvent) {
    event.preventDefault();
    setStarting(true);
    setError(null);
    try {
      const started = await client.startConversation(agent);
      // <Chat> opens its own store for the id (useConversation); this one is not needed.
      started.close();
      location.hash = `#/c/${started.sessionId}`;
    } catch (reason) {
      setError(String(reason));
    } finally {
      setStarting(false);
    }
  }

  const agentName = (path: string) => agents.find((a) => a.path === path)?.name ?? path;
  return (
    <div className="chat-app" data-ready={agents.length > 0 ? "" : undefined}>
      <aside className="sidebar">
        <h1>React chat</h1>
        <form className="new-chat" onSubmit={start}>
          <select className="agent-select" aria-label="Agent" value={agent} onChange={(e) => setAgent(e.target.value)}>
            {agents.map((a) => (
              <option key={a.path} value={a.path}>
                {a.name}
              </option>
            ))}
          </select>
          <button type="submit" className="start" disabled={!agent || starting}>
            New chat
          </button>
        </form>
        {error && <p className="error">{error}</p>}
        {sessions.error && <p className="error">{sessions.error.message}</p>}
        <ul className="conversation-list" aria-label="Your conversations">
          {sessions.rows.map((row) => (
            <li key={row.id} data-session={row.id} className={row.id === sessionId ? "active" : undefined}>
              <button type="button" onClick={() => (location.hash = `#/c/${row.id}`)}>
                {row.title || "New conversation"}
                <span className="agent">{agentName(row.agent_path)}</span>
              </button>
            </li>
          ))}
        </ul>
        {sessions.loading && <p className="muted">Loading…</p>}
      </aside>
      {sessionId ? (
        <Chat key={sessionId} sessionId={sessionId} agentName={agentName} />
      ) : (
        <main className="chat">
          <p className="empty">Start a conversation, or pick one.</p>
        </main>
      )}
    </div>
  );
}
