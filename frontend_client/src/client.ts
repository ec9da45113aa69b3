/** `createClient()`: one instance per backend, no global state. */

import { Conversation, type ConversationOptions } from "./conversation.js";
import { FileManager } from "./files.js";
import { BuiltinModel } from "./constants.js";
import { Transport, type TransportOptions } from "./http.js";
import { ModelManager, type ModelContext } from "./queryset.js";
import { RealtimeHub, type RealtimeOption } from "./realtime/hub.js";
import type {
  AgentInfo,
  CancelResult,
  JsonObject,
  MessageRow,
  RealtimeConfig,
  Row,
  Schema,
  SessionRow,
  StartedConversation,
  WidgetRow,
} from "./types.js";

/**
 * `createClient()`'s options: the transport's (base URL, headers, fetch, CSRF, credentials,
 * anonymous id; see `TransportOptions`) plus the realtime choice.
 */
export interface ClientOptions extends TransportOptions {
  /** `"auto"` (default: follow the server), `"sse"`, `"pusher"`, `"none"`, or a factory such as
   * `pusherRealtime({ Pusher })`. */
  realtime?: RealtimeOption;
}

export interface StartOptions {
  title?: string;
  /** Options of the returned conversation store. */
  conversation?: ConversationOptions;
}

export interface Client {
  readonly sessions: ModelManager<SessionRow>;
  readonly messages: ModelManager<MessageRow>;
  readonly widgets: ModelManager<WidgetRow>;
  readonly files: FileManager;
  /** A model the project exposes itself: `client.model<MyRow>("invoice")`. */
  model<T extends Row = Row>(name: string): ModelManager<T>;
  /** `GET schema/`: exposed models, registered agents, event names. */
  schema(): Promise<Schema>;
  /** The agents a conversation can be started with. */
  agents(): Promise<AgentInfo[]>;
  /** `GET realtime/config/`. */
  realtimeConfig(): Promise<RealtimeConfig>;
  /** Start a conversation with `agentPath`. `startParams` are the start parameters the agent declares
   * (its `StartParams`, listed as `start_params` by `agents()`); any other key is refused (400
   * `start_param_not_allowed`). They reach the agent's `create_context`. */
  startConversation(agentPath: string, startParams?: JsonObject, options?: StartOptions): Promise<Conversation>;
  /** The store of an existing conversation; it starts loading at once. */
  conversation(sessionId: string, options?: ConversationOptions): Conversation;
  /** Stop the running turn of a conversation. */
  cancel(sessionId: string): Promise<CancelResult>;
  /** The anonymous visitor id this client sends (stateless clients). */
  anonymousId: string | null;
  readonly baseUrl: string;
  readonly realtime: RealtimeHub;
  /** Close realtime connections. */
  close(): void;
}

/** Create a client for one backend. */
export function createClient(options: ClientOptions): Client {
  if (!options || typeof options.baseUrl !== "string") {
    throw new TypeError('createClient({ baseUrl }) needs the API base URL, e.g. createClient({ baseUrl: "/api/conversations/" }).');
  }
  const transport = new Transport(options);
  const realtime = new RealtimeHub(transport, options.realtime ?? "auto");
  const ctx: ModelContext = { transport, realtime };
  const sessions = new ModelManager<SessionRow>(ctx, BuiltinModel.SESSION);
  const messages = new ModelManager<MessageRow>(ctx, BuiltinModel.MESSAGE);
  const widgets = new ModelManager<WidgetRow>(ctx, BuiltinModel.WIDGET);
  const files = new FileManager(ctx);
  const deps = { transport, realtime, sessions, messages, widgets, files };
  let schemaPromise: Promise<Schema> | null = null;

  const client: Client = {
    sessions,
    messages,
    widgets,
    files,
    model<T extends Row = Row>(name: string) {
      if (typeof name !== "string" || !name) throw new TypeError("client.model(name) needs the model's name.");
      return new ModelManager<T>(ctx, name);
    },
    schema() {
      if (!schemaPromise) {
        schemaPromise = transport.request<Schema>("GET", "schema/");
        schemaPromise.catch(() => {
          schemaPromise = null;
        });
      }
      return schemaPromise;
    },
    async agents() {
      return (await client.schema()).agents ?? [];
    },
    realtimeConfig() {
      return realtime.config();
    },
    async startConversation(agentPath, startParams = {}, startOptions = {}) {
      const body: Record<string, unknown> = { agent_path: agentPath, context: startParams };
      if (startOptions.title) body.title = startOptions.title;
      const started = await transport.request<StartedConversation>("POST", "start/", { body });
      if (started.anonymous_id && !transport.anonymousId) {
        transport.anonymousId = started.anonymous_id;
        // The owner channel depends on who we are.
        realtime.resetConfig();
      }
      return new Conversation(started.session_id, deps, startOptions.conversation);
    },
    conversation(sessionId, conversationOptions) {
      return new Conversation(sessionId, deps, conversationOptions);
    },
    cancel(sessionId) {
      return transport.request<CancelResult>("POST", "cancel/", { body: { session_id: sessionId } });
    },
    get anonymousId() {
      return transport.anonymousId;
    },
    set anonymousId(value: string | null) {
      transport.anonymousId = value;
      realtime.resetConfig();
    },
    baseUrl: transport.baseUrl,
    realtime,
    close() {
      realtime.close();
    },
  };
  return client;
}
