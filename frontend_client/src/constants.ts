/**
 * Names that travel over the wire, mirrored from `conversations/constants.py`.
 *
 * Each enum is a frozen object plus a union type of its values. `tests/test_sdk_constants.py`
 * reads this file and fails when it differs from the Python enums, so keep the one-line
 * `KEY: "value",` layout inside each `export const ... = { ... } as const;` block.
 */

export const SessionStatus = {
  ACTIVE: "active",
  COMPLETED: "completed",
  ARCHIVED: "archived",
} as const;
export type SessionStatus = (typeof SessionStatus)[keyof typeof SessionStatus];

export const MessageType = {
  USER: "user",
  AGENT: "agent",
  SYSTEM: "system",
  WIDGET: "widget",
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const ProcessingStatus = {
  PENDING: "pending",
  PROCESSING: "processing",
  STREAMING: "streaming",
  COMPLETED: "completed",
  FAILED: "failed",
  CANCELLED: "cancelled",
} as const;
export type ProcessingStatus = (typeof ProcessingStatus)[keyof typeof ProcessingStatus];

export const ExtractionStatus = {
  PENDING: "pending",
  PROCESSING: "processing",
  DONE: "done",
  FAILED: "failed",
} as const;
export type ExtractionStatus = (typeof ExtractionStatus)[keyof typeof ExtractionStatus];

export const ConcurrencyPolicy = {
  ENQUEUE: "enqueue",
  REJECT: "reject",
  INTERRUPT: "interrupt",
} as const;
export type ConcurrencyPolicy = (typeof ConcurrencyPolicy)[keyof typeof ConcurrencyPolicy];

export const EventName = {
  STREAM_START: "stream_start",
  TEXT_CHUNK: "text_chunk",
  STREAM_END: "stream_end",
  WIDGET: "widget",
  WIDGET_UPDATE: "widget_update",
  MESSAGE_STATUS: "message_status",
  MODEL_CHANGE: "model_change",
} as const;
export type EventName = (typeof EventName)[keyof typeof EventName];

export const ModelOperation = {
  CREATE: "create",
  UPDATE: "update",
  DELETE: "delete",
} as const;
export type ModelOperation = (typeof ModelOperation)[keyof typeof ModelOperation];

export const BridgeAction = {
  READ: "read",
  CREATE: "create",
  UPDATE: "update",
  DELETE: "delete",
} as const;
export type BridgeAction = (typeof BridgeAction)[keyof typeof BridgeAction];

/** Statuses after which a message no longer changes (Python: `FINISHED_STATUSES`). */
export const FINISHED_STATUSES: ReadonlySet<ProcessingStatus> = new Set<ProcessingStatus>([
  ProcessingStatus.COMPLETED,
  ProcessingStatus.FAILED,
  ProcessingStatus.CANCELLED,
]);

export const SESSION_CHANNEL_PREFIX = "private-conversation-session-";
export const OWNER_CHANNEL_PREFIX = "private-conversation-owner-";

/**
 * Fields of each event payload beyond `id`, `session_id` and `timestamp` (docs/protocol.md).
 * `required` fields are always sent; `optional` ones only sometimes. The Python test runs real
 * turns and checks every payload it captures against this table.
 */
export const EVENT_PAYLOAD_FIELDS = {
  stream_start: { required: ["message_id", "sequence", "reply_to"], optional: [] },
  text_chunk: { required: ["message_id", "sequence", "text"], optional: ["first_sequence", "offset"] },
  stream_end: { required: ["message_id", "sequence"], optional: [] },
  widget: { required: ["widget_id", "message_id", "widget_type", "data", "display_data"], optional: [] },
  widget_update: { required: ["widget_id", "message_id", "widget_type", "data", "display_data"], optional: [] },
  message_status: { required: ["message_id", "message_type", "status"], optional: ["reason"] },
  model_change: { required: ["model", "operation", "pks", "operation_id"], optional: [] },
} as const satisfies Record<EventName, { required: readonly string[]; optional: readonly string[] }>;

/** Fields every event payload carries. */
export const EVENT_BASE_FIELDS = ["id", "session_id", "timestamp"] as const;

/** Built-in model names of the bridge. */
export const BuiltinModel = {
  SESSION: "session",
  MESSAGE: "message",
  WIDGET: "widget",
  FILE: "file",
} as const;
export type BuiltinModel = (typeof BuiltinModel)[keyof typeof BuiltinModel];
