/** Rows of the built-in models and realtime event payloads, as the server sends them. */

import type {
  ApprovalStatus,
  ErrorCode,
  EVENT_BASE_FIELDS,
  EVENT_PAYLOAD_FIELDS,
  EventName,
  ExtractionStatus,
  FeedbackRating,
  MessageRevision,
  MessageType,
  ModelOperation,
  ProcessingStatus,
  SessionStatus,
} from "./constants.js";

/** A JSON value. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/**
 * A primary key as the bridge sends it: a number for an integer pk (a string of digits beyond
 * ±(2^53 − 1)), a string for UUIDs and text. Any of those forms finds the row again.
 */
export type Pk = string | number;

/**
 * Any row: fields the caller may read, keyed by name; foreign keys are the related pk. The pk is
 * the field `schema().models[name].primary_key` names (`id` for the built-in models, e.g. `code`
 * for a model of yours). Type your model's rows with its field types, as `WireTypes` maps them:
 * `interface OrderRow extends Row { id: number; total: string }`.
 */
export interface Row {
  [field: string]: unknown;
}

/**
 * How the values of each field type of `schema/` travel (docs/protocol.md, "Values"): what a JSON
 * number cannot carry exactly is a string. Filters and writes accept the same forms.
 */
export interface WireTypes {
  uuid: string;
  string: string;
  /** A number; beyond ±(2^53 − 1) a string of digits, which a number would round (`BigInt()` takes both). */
  integer: number | string;
  /** `FloatField`. */
  number: number;
  /** A string with the field's decimal places, as DRF sends it (`"99.00"`): keep it a string or give it to a decimal library. */
  decimal: string;
  boolean: boolean;
  /** ISO 8601 strings. */
  datetime: string;
  date: string;
  time: string;
  /** ISO 8601 (`"P1DT02H03M04.500000S"`); filters also take Django's `"1 02:03:04"`. */
  duration: string;
  json: Json;
  /** The related row's pk. */
  relation: Pk;
  relations: Pk[];
}

/** The field types `schema/` names. */
export type FieldType = keyof WireTypes;

/** `session` rows. Fields the bridge does not expose to the caller are absent. */
export interface SessionRow extends Row {
  id: string;
  agent_path: string;
  title: string;
  /** `active`, `completed` or `archived`. A `deleted` conversation (its owner deleted it) is
   * answered as missing (404) and never listed, so rows read through the bridge do not have it. */
  status: SessionStatus;
  created_at: string;
  updated_at: string;
  last_message_at: string | null;
  metadata?: JsonObject;
}

/** `message` rows. */
export interface MessageRow extends Row {
  id: string;
  session: string;
  message_type: MessageType;
  content: string;
  component_type: string;
  component_data: JsonObject;
  files: string[];
  processing_status: ProcessingStatus;
  reply_to: string | null;
  stream_sequence: number;
  /** Tool steps and widgets: where the row sits in its reply's text (UTF-16 units); null otherwise. */
  text_offset?: number | null;
  timestamp: string;
  updated_at?: string;
  metrics?: JsonObject;
  metadata?: JsonObject;
  /**
   * Versions (docs/versions.md, docs/sdk.md "Versions"). The row is on the conversation's active
   * path: list queries of messages answer only such rows unless they name `active`,
   * `version_group` or `id`; the conversation store shows only them.
   */
  active?: boolean;
  /** A user message: the user message before it on its path (null on the first, and on messages
   * sent since the last version change: the server fills it in lazily). Null on other rows. */
  parent?: string | null;
  /** A user message with other versions: the id of the first version, shared by all of them
   * (`filter({ version_group })` finds them); null while it has none. */
  version_group?: string | null;
  /** A user message: which version it is (1 for the original, in the order they were made). */
  version_index?: number;
  /** A user message: how many versions its group has (1 when none other). */
  version_count?: number;
  /** How a user message came to be: `original` (sent), `regenerate` or `edit`. */
  revision?: MessageRevision;
  /** An agent reply: its owner's rating (`up`, `down`, or "" when none). */
  feedback?: FeedbackRating | "";
  /** An agent reply: the comment given with the rating ("" when none). */
  feedback_comment?: string;
}

/** `widget` rows. `display_data` is presentation state a client may change. */
export interface WidgetRow extends Row {
  id: string;
  session: string;
  message: string | null;
  widget_type: string;
  data: JsonObject;
  display_data: JsonObject;
  created_at: string;
  updated_at?: string;
}

/** `file` rows. */
export interface FileRow extends Row {
  id: string;
  session: string | null;
  filename: string;
  content_type: string;
  size: number;
  extraction_status: ExtractionStatus;
  /** Why extraction failed, in words a person understands; empty unless `extraction_status` is `failed`. */
  extraction_error: string;
  extracted_at?: string | null;
  extracted_text?: string;
  extracted_text_truncated?: boolean;
  extractor?: string;
  extraction_duration_ms?: number | null;
  created_at: string;
  updated_at?: string;
}

/** Row types of the built-in models, by model name. */
export interface BuiltinRows {
  session: SessionRow;
  message: MessageRow;
  widget: WidgetRow;
  file: FileRow;
}

/** A normalized answer of the bridge: `data` is a pk or a list of them, `included` rows keyed by `String(pk)`. */
export interface Normalized<D = Pk | Pk[]> {
  data: D;
  included: Record<string, Record<string, Row>>;
  meta: QueryMeta & Record<string, unknown>;
}

/** One page of results with the related rows the server included. */
export interface QueryResult<T extends Row> {
  rows: T[];
  meta: QueryMeta & Record<string, unknown>;
  /** Related rows by model name and pk (see `include()`). */
  included: Record<string, Record<string, Row>>;
}

export interface QueryMeta {
  limit?: number;
  offset?: number;
  has_more?: boolean;
  count?: number;
}

/** Scalar filter values, or lists of them for `__in`. */
export type FilterScalar = string | number | boolean | null;
export type FilterValue = FilterScalar | FilterScalar[];
export type Filter = Record<string, FilterValue>;

/** What `POST start/` answers. */
export interface StartedConversation {
  session_id: string;
  status: SessionStatus;
  agent_path: string;
  anonymous_id: string | null;
  title: string;
  created_at: string;
}

export interface AgentInfo {
  path: string;
  name: string;
  description: string;
  /** JSON Schema of the start parameters a client may send to `start/` (null: none). */
  start_params: Record<string, unknown> | null;
}

/** A field of an exposed model in `GET schema/`. */
export interface FieldSchema {
  type: FieldType;
  null: boolean;
  primary_key?: boolean;
  max_length?: number;
  choices?: string[];
  /** For relations: the related model's name. */
  related?: string;
  [key: string]: unknown;
}

/** One exposed model in `GET schema/`, as the current caller sees it. */
export interface ModelSchema {
  /** The name of the primary key field (`id`, or e.g. `code`); its `fields` entry has its type. */
  primary_key: string;
  fields: Record<string, FieldSchema>;
  default_fields: string[];
  create_fields: string[];
  update_fields: string[];
  /** Filterable paths and their lookups. */
  filters: Record<string, string[]>;
  orderings: string[];
  default_ordering: string[];
  /** Includable relations and the model they lead to. */
  relations: Record<string, string>;
  default_limit: number;
  max_limit: number;
  /** What the caller may do: `read`, `create`, `update`, `delete`. */
  actions: string[];
  [key: string]: unknown;
}

export interface Schema {
  models: Record<string, ModelSchema>;
  agents: AgentInfo[];
  events: string[];
  /** `max_size`: the largest upload in bytes (`MAX_UPLOAD_SIZE`); larger files get a 413. */
  uploads: { max_size: number };
}

/** What `GET realtime/config/` answers. */
export interface RealtimeConfig {
  backend: "pusher" | "local";
  key?: string;
  cluster?: string;
  host?: string;
  port?: number;
  scheme?: string;
  force_tls?: boolean;
  auth_endpoint: string;
  events_endpoint?: string | null;
  session_channel_prefix: string;
  owner_channel_prefix?: string;
  /** The caller's session-list channel; null until the caller is known (signed in or started a conversation). */
  owner_channel: string | null;
}

/** What `POST cancel/` answers. */
export interface CancelResult {
  status: "cancelling" | "idle";
  cancelled: string[];
}

interface BaseEvent {
  /** Unique per event (every coalesced or split `text_chunk` too): safe to de-duplicate by. */
  id: string;
  session_id: string | null;
  timestamp: string;
  /**
   * Set by a transport with a size limit (Pusher: 10 KB per event) on an event it could not carry
   * whole: only the envelope and the ids are left (for widgets: `widget_id`, `message_id`,
   * `widget_type`; no `data` or `display_data`). Read the row it names through the bridge
   * (docs/protocol.md, "Truncated events"); the conversation store does.
   */
  truncated?: true;
}

export interface StreamStartEvent extends BaseEvent {
  message_id: string;
  sequence: number;
  reply_to: string;
}

/**
 * Text of one or more writes of the agent, or part of one long write (docs/protocol.md, "Text
 * chunks"). Order and deduplicate by `offset`, never by `sequence`: the events cut from one long
 * write share `first_sequence` and `sequence`.
 */
export interface TextChunkEvent extends BaseEvent {
  message_id: string;
  /** The write where `text` ends. */
  sequence: number;
  text: string;
  /** The write where `text` starts (absent from the Memory backend's one-write events). */
  first_sequence?: number;
  /**
   * Where `text` starts in the message's streamed text, in UTF-16 code units (`String.length`).
   * Always sent by the Pusher and Local backends; absent only from events recorded by the Memory
   * backend in Python tests (one write each: apply them by `sequence`).
   */
  offset?: number;
}

export interface StreamEndEvent extends BaseEvent {
  message_id: string;
  sequence: number;
}

export interface WidgetEvent extends BaseEvent {
  widget_id: string;
  message_id: string | null;
  widget_type: string;
  /** Absent when `truncated`: read the widget row. */
  data: JsonObject;
  /** Absent when `truncated`: read the widget row. */
  display_data: JsonObject;
}

export type WidgetUpdateEvent = WidgetEvent;

export interface MessageStatusEvent extends BaseEvent {
  message_id: string;
  message_type: MessageType;
  status: ProcessingStatus;
  reason?: string;
}

export interface ModelChangeEvent extends BaseEvent {
  model: string;
  operation: ModelOperation;
  pks: string[];
  operation_id: string | null;
}

/** What a tool step's `approval` says (`component_data.approval` of a tool message). */
export interface ToolApproval {
  status: ApprovalStatus;
  /** The user's reason for a rejection ("expired" / "cancelled" for the other endings). */
  reason: string;
  answered_by: number | string | null;
  answered_at: string | null;
  expires_at: string | null;
}

/** A tool step's error (`component_data.error`): also what the model was told. */
export interface ToolStepError {
  code: ErrorCode | string;
  message: string;
}

/**
 * The `component_data` of a tool message (`message_type: "tool"`): one tool call of the agent's
 * reply (docs/tools.md, "Tool steps"). `arguments` are what the model sent, never injected Context
 * values; `text_offset` is where the call sits in the reply's text (UTF-16 units).
 */
export interface ToolStepData {
  call_id: string;
  name: string;
  arguments: JsonObject;
  round: number;
  index: number;
  text_offset: number;
  result: Json | null;
  error: ToolStepError | null;
  duration_ms: number | null;
  approval: ToolApproval | null;
}

/** A tool call was seen in the model's stream (no row yet): its id and name. */
export interface ToolCallStartEvent extends BaseEvent {
  reply_to: string;
  call_id: string;
  name: string;
  round?: number;
  index?: number;
}

/** The call's arguments are complete: its tool message row exists (`message_id`). */
export interface ToolCallArgumentsEvent extends BaseEvent {
  message_id: string;
  reply_to: string;
  call_id: string;
  name: string;
  /** Absent when `truncated`: read the row. */
  arguments: JsonObject;
  /** `processing` (running now), `awaiting_approval`, or `failed` (refused before it ran; its result follows). */
  status: ProcessingStatus;
  approval?: ToolApproval | null;
  round?: number;
  index?: number;
  text_offset?: number;
}

/** The call ended: `completed`, `failed` (error, rejected, expired) or `cancelled`. */
export interface ToolCallResultEvent extends BaseEvent {
  message_id: string;
  reply_to: string;
  call_id: string;
  name: string;
  status: ProcessingStatus;
  /** Absent when `truncated`: read the row. */
  result?: Json | null;
  error?: ToolStepError | null;
  duration_ms?: number | null;
  approval?: ToolApproval | null;
}

/** Payload type of each event name. */
export interface EventPayloads {
  stream_start: StreamStartEvent;
  text_chunk: TextChunkEvent;
  stream_end: StreamEndEvent;
  widget: WidgetEvent;
  widget_update: WidgetUpdateEvent;
  message_status: MessageStatusEvent;
  model_change: ModelChangeEvent;
  tool_call_start: ToolCallStartEvent;
  tool_call_arguments: ToolCallArgumentsEvent;
  tool_call_result: ToolCallResultEvent;
}

/** An event as adapters deliver it: its name, its payload and the channel it came on. */
export type RealtimeEvent = {
  [N in EventName]: { name: N; channel: string; payload: EventPayloads[N] };
}[EventName];

// Compile-time proof that the payload interfaces and EVENT_PAYLOAD_FIELDS list the same fields.
type Fields<N extends EventName> =
  | (typeof EVENT_PAYLOAD_FIELDS)[N]["required"][number]
  | (typeof EVENT_PAYLOAD_FIELDS)[N]["optional"][number]
  | (typeof EVENT_BASE_FIELDS)[number];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// `truncated` is the transport's marker on a trimmed event of any kind, not a field of one event.
type AllSame = false extends { [N in EventName]: Same<Exclude<keyof EventPayloads[N], "truncated">, Fields<N>> }[EventName] ? false : true;
const _eventFieldsMatch: AllSame = true;
void _eventFieldsMatch;
