/**
 * What the store's effects (fetcher, sync, sends, uploads) get from the `Conversation` that wires
 * them: the server parts of the client, the current state, and `dispatch` to move it on.
 */

import type { FileManager } from "../files.js";
import type { Transport } from "../http.js";
import type { ModelManager } from "../queryset.js";
import type { RealtimeHub } from "../realtime/hub.js";
import type { MessageRow, SessionRow, WidgetRow } from "../types.js";
import type { StoreAction } from "./reducer.js";
import type { ConversationState, StoreState } from "./state.js";

/** The parts of a client a conversation store uses. */
export interface ConversationDeps {
  transport: Transport;
  realtime: RealtimeHub;
  sessions: ModelManager<SessionRow>;
  messages: ModelManager<MessageRow>;
  widgets: ModelManager<WidgetRow>;
  files: FileManager;
}

export interface StoreHost {
  readonly sessionId: string;
  readonly deps: ConversationDeps;
  /** The current state (a new object after every dispatch). */
  state(): StoreState;
  /** The public snapshot of the current state. */
  snapshot(): ConversationState;
  /** Apply an action: the reducer's next state, its reads queued, listeners told. */
  dispatch(action: StoreAction): void;
  /** `close()` was called: effects start nothing new and drop what they read. */
  isClosed(): boolean;
}
