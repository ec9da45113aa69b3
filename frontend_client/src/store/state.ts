/**
 * The conversation store's state: what the reducer (`reducer.ts`) keeps, and the public snapshot
 * types (`ConversationState` and its parts) that `view.ts` derives from it.
 *
 * The store state holds rows in maps keyed by id and never changes in place: every transition
 * returns a new object (the reducer copies what it changes), so a state can be kept, compared and
 * replayed. The `StreamAssembler` of each streaming message is part of it and is copied before
 * the reducer changes it.
 */

import type { ConversationClientError } from "../errors.js";
import type { ChannelState } from "../realtime/types.js";
import type { StreamAssembler } from "../stream.js";
import type { ProcessingStatus } from "../constants.js";
import type { FileRow, MessageRow, SessionRow, ToolStepData, WidgetRow } from "../types.js";

/**
 * One tool call of an agent's reply (a `tool` message; docs/tools.md, "Tool steps"): the row's
 * `component_data` (`ToolStepData`) plus what the store knows of it.
 */
export interface ToolStep extends ToolStepData {
  /**
   * The tool message's id; `null` while the call is only known from `tool_call_start` (the model
   * is still writing it, no row exists yet).
   */
  id: string | null;
  /** The user message the reply answers. */
  reply_to: string;
  /**
   * The step's `processing_status`: `processing` (running), `awaiting_approval` (waiting for the
   * user), `pending` (approved, runs when the turn resumes; also a call still being written),
   * then `completed`, `failed` (tool error, invalid arguments, rejected, expired) or `cancelled`.
   */
  status: ProcessingStatus;
  /** What the model was told (the row's `content`): the result as text, or the error's JSON. */
  content: string;
  timestamp: string;
  /** The step waits for the user's answer: offer `approve()` / `reject()`. */
  awaitingApproval: boolean;
  /** This store is sending an answer (`approve()` / `reject()`) for the step. */
  answering: boolean;
}

/**
 * A piece of an agent's reply, in order (docs/sdk.md, "Parts of a reply"): the reply's text cut
 * where its tool steps and widgets sit (their `text_offset`). `key` is stable while the reply
 * changes (a UI's list key).
 */
export type MessagePart =
  | { type: "text"; key: string; text: string }
  | { type: "tool"; key: string; step: ToolStep }
  | { type: "widget"; key: string; message: ConversationMessage; widget: WidgetRow | null };

/** A message as the store shows it. */
export interface ConversationMessage extends MessageRow {
  /**
   * An agent message's reply in order: text, tool steps and widgets (the tool and widget
   * messages answering the same user message). Empty for the other messages.
   */
  parts: MessagePart[];
  /** The tool step of a `tool` message; null for the other messages. */
  step: ToolStep | null;
  /**
   * The agent message whose `parts` show this tool or widget message; null when it shows on its
   * own (other kinds, or a reply that has no agent message yet: its steps come first).
   */
  partOf: string | null;
  /** The widget of a `widget` message, once known. */
  widget: WidgetRow | null;
  /** The file rows of the message that the store knows. */
  attachments: FileRow[];
  /** True while the agent streams this message's text. */
  streaming: boolean;
  /** True for a user message shown before the server confirmed it. */
  local: boolean;
  /** Why a local message could not be sent (it stays, so nothing typed is lost). */
  sendError: ConversationClientError | null;
  /**
   * The versions this message belongs to, for a "< k/n >" picker (docs/sdk.md, "Versions"): a
   * user message's own (`version_index`, `version_count`); for a reply (agent, tool and widget
   * messages) those of the user message it answers. 1 and 1 when there is no other version.
   */
  versionIndex: number;
  versionCount: number;
  /**
   * The user message whose versions `versionIndex`/`versionCount` count: the message itself for a
   * user message, the one it answers for a reply (`reply_to`); pass it to `versions()` to list
   * them. Null for a message that answers none (a greeting).
   */
  versionOf: string | null;
}

export interface UploadState {
  /** A local key for the upload. */
  key: string;
  filename: string;
  size: number;
  loaded: number;
  total: number;
  status: "uploading" | "uploaded" | "failed";
  /** The file row once uploaded; its `extraction_status` follows the server. */
  file: FileRow | null;
  error: ConversationClientError | null;
}

/**
 * - `loading`: the first read is running;
 * - `idle`: nothing is happening;
 * - `sending`: a message or its files are being sent;
 * - `waiting`: the server has the message, the agent has not started streaming yet;
 * - `streaming`: the agent is streaming its reply;
 * - `awaiting_approval`: the reply waits for the user to approve or reject a tool call
 *   (`pendingApprovals`); no turn runs meanwhile (`busy` is false unless a message sent
 *   meanwhile waits for its turn).
 */
export type ConversationPhase = "loading" | "idle" | "sending" | "waiting" | "streaming" | "awaiting_approval";

export interface ConversationState {
  sessionId: string;
  session: SessionRow | null;
  messages: ConversationMessage[];
  widgets: Record<string, WidgetRow>;
  files: Record<string, FileRow>;
  uploads: UploadState[];
  phase: ConversationPhase;
  /**
   * A turn is running, or a message is being sent or waits for its turn (the stop button's
   * condition); false while a reply only waits for an approval (no turn runs).
   */
  busy: boolean;
  /** The agent message being streamed, if any. */
  streamingMessageId: string | null;
  /** Tool steps waiting for the user's answer, in order (`approve()` / `reject()`). */
  pendingApprovals: ToolStep[];
  /** The realtime state of the conversation's channel. */
  connection: ChannelState;
  /** The last error (loading, sending, realtime); cleared by `clearError()`. */
  error: ConversationClientError | null;
  loaded: boolean;
}

/** A file to send: a Blob/File to upload, or an uploaded file (row or id). */
export type Attachment = Blob | FileRow | string;

/** A message row as the store keeps it: a local one carries what sending it again needs. */
export interface StoredMessage extends MessageRow {
  local?: boolean;
  sendError?: ConversationClientError | null;
  operationId?: string;
  /** What `retry()` sends again: the attachments, uploaded ones by their id. */
  attachmentsToSend?: Attachment[];
  /** A tool step known only from `tool_call_start`: no row yet (its id is the store's own). */
  placeholder?: boolean;
}

export interface StoreState {
  readonly sessionId: string;
  readonly session: SessionRow | null;
  readonly rows: ReadonlyMap<string, StoredMessage>;
  readonly widgets: ReadonlyMap<string, WidgetRow>;
  readonly files: ReadonlyMap<string, FileRow>;
  readonly uploads: readonly UploadState[];
  /** Streaming messages (and chunks of messages not read yet), rebuilt by offset. */
  readonly streams: ReadonlyMap<string, StreamAssembler>;
  /** Operation ids of this store's sends: their `model_change` echo is recognised. */
  readonly ownOperations: ReadonlySet<string>;
  /** Confirmed pk -> the local message it replaces once its row is read. */
  readonly adoptions: ReadonlyMap<string, string>;
  /** Tool steps this store is answering (`approve()` / `reject()` sent, no answer yet). */
  readonly answering: ReadonlySet<string>;
  /**
   * Messages that left the conversation's active path (another version was chosen), by id: the
   * `updated_at` of the row that said so (null when a read of the active path no longer returned
   * it). Events of such a message or of its reply (a superseded turn still ending) do not bring it
   * back; a row read later that is active again and not older does.
   */
  readonly offPath: ReadonlyMap<string, string | null>;
  readonly connection: ChannelState;
  readonly error: ConversationClientError | null;
  /** The first full read is done. */
  readonly loaded: boolean;
}

/** The state of a store that has read nothing yet. */
export function initialState(sessionId: string): StoreState {
  return {
    sessionId,
    session: null,
    rows: new Map(),
    widgets: new Map(),
    files: new Map(),
    uploads: [],
    streams: new Map(),
    ownOperations: new Set(),
    adoptions: new Map(),
    answering: new Set(),
    offPath: new Map(),
    connection: "connecting",
    error: null,
    loaded: false,
  };
}
