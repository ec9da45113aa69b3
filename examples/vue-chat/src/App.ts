// The page: the agents to start a conversation with, the visitor's conversations (live), and the
// open conversation. Which one is open lives in the URL (#/c/<id>), so a reload keeps it.
// Render functions (h) keep the example free of a template compiler; a Vite app would use .vue files.
import type { AgentInfo } from "django-ai-first-client";
import { useClient, useLive } from "django-ai-first-client/vue";
import { defineComponent, h, onBeforeUnmount, onMounted, ref } from "vue";

import { Chat } from "./Chat";

function openId(): string | null {
  return /^#\/c\/([0-9a-f-]{36})$/.exec(location.hash)?.[1] ?? null;
}

export const App = defineComponent({
  name: "App",
  setup() {
    const client = useClient();
    const agents = ref<AgentInfo[]>([]);
    const agent = ref("");
    const sessionId = ref(openId());
    const starting = ref(false);
    const error = ref<string | null>(null);
    const sessions = useLive(client.sessions.orderBy("-updated_at").limit(30));

    const follow = () => (sessionId.value = openId());
    onMounted(() => {
      window.addEventListener("hashchange", follow);
      client.agents().then(
        (list) => {
          agents.value = list;
          agent.value ||= list[0]?.path ?? "";
        },
        (reason: unknown) => (error.value = String(reason)),
      );
    });
    onBeforeUnmount(() => window.removeEventListener("hashchange", follow));

    async function start(event: Event) {
      event.preventDefault();
      starting.value = true;
      error.value = null;
      try {
        const started = await client.startConversation(agent.value);
        // <Chat> opens its own store for the id (useConversation); this one is not needed.
        started.close();
        location.hash = `#/c/${started.sessionId}`;
      } catch (reason) {
        error.value = String(reason);
      } finally {
        starting.value = false;
      }
    }

    const agentName = (path: string) => agents.value.find((a) => a.path === path)?.name ?? path;

    return () =>
      h("div", { class: "chat-app", "data-ready": agents.value.length > 0 ? "" : undefined }, [
        h("aside", { class: "sidebar" }, [
          h("h1", "Vue chat"),
          h("form", { class: "new-chat", onSubmit: start }, [
            h(
              "select",
              {
                class: "agent-select",
                "aria-label": "Agent",
                value: agent.value,
                onChange: (e: Event) => (agent.value = (e.target as HTMLSelectElement).value),
              },
              agents.value.map((a) => h("option", { key: a.path, value: a.path }, a.name)),
            ),
            h("button", { type: "submit", class: "start", disabled: !agent.value || starting.value }, "New chat"),
          ]),
          error.value ? h("p", { class: "error" }, error.value) : null,
          sessions.error.value ? h("p", { class: "error" }, sessions.error.value.message) : null,
          h(
            "ul",
            { class: "conversation-list", "aria-label": "Your conversations" },
            sessions.rows.value.map((row) =>
              h("li", { key: row.id, "data-session": row.id, class: row.id === sessionId.value ? "active" : undefined }, [
                h("button", { type: "button", onClick: () => (location.hash = `#/c/${row.id}`) }, [
                  row.title || "New conversation",
                  h("span", { class: "agent" }, agentName(row.agent_path)),
                ]),
              ]),
            ),
          ),
          sessions.loading.value ? h("p", { class: "muted" }, "Loading…") : null,
        ]),
        sessionId.value
          ? h(Chat, { key: sessionId.value, sessionId: sessionId.value, agentName })
          : h("main", { class: "chat" }, [h("p", { class: "empty" }, "Start a conversation, or pick one.")]),
      ]);
  },
});
