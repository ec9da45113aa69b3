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
  DELETED: "deleted",
} as const;
export type SessionStatus = (typeof SessionStatus)[keyof typeof SessionStatus];

export const MessageType = {
  USER: "user",
  AGENT: "agent",
  SYSTEM: "system",
  WIDGET: "widget",
  TOOL: "tool",
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const ProcessingStatus = {
  PENDING: "pending",
  PROCESSING: "processing",
  STREAMING: "streaming",
  COMPLETED: "completed",
  FAILED: "failed",
  CANCELLED: "cancelled",
  AWAITING_APPROVAL: "awaiting_approval",
} as const;
export type ProcessingStatus = (typeof ProcessingStatus)[keyof typeof ProcessingStatus];

export const MessageRevision = {
  ORIGINAL: "original",
  REGENERATE: "regenerate",
  EDIT: "edit",
} as const;
export type MessageRevision = (typeof MessageRevision)[keyof typeof MessageRevision];

export const FeedbackRating = {
  UP: "up",
  DOWN: "down",
} as const;
export type FeedbackRating = (typeof FeedbackRating)[keyof typeof FeedbackRating];

export const ExtractionStatus = {
  PENDING: "pending",
  PROCESSING: "processing",
  DONE: "done",
  FAILED: "failed",
} as const;
export type ExtractionStatus = (typeof ExtractionStatus)[keyof typeof ExtractionStatus];

export const ApprovalStatus = {
  PENDING: "pending",
  APPROVED: "approved",
  REJECTED: "rejected",
  EXPIRED: "expired",
  CANCELLED: "cancelled",
} as const;
export type ApprovalStatus = (typeof ApprovalStatus)[keyof typeof ApprovalStatus];

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
  TOOL_CALL_START: "tool_call_start",
  TOOL_CALL_ARGUMENTS: "tool_call_arguments",
  TOOL_CALL_RESULT: "tool_call_result",
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
  tool_call_start: { required: ["reply_to", "call_id", "name"], optional: ["round", "index"] },
  tool_call_arguments: { required: ["message_id", "reply_to", "call_id", "name", "arguments", "status"], optional: ["approval", "round", "index", "text_offset"] },
  tool_call_result: { required: ["message_id", "reply_to", "call_id", "name", "status"], optional: ["result", "error", "duration_ms", "approval"] },
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

/**
 * Every `code` the server sends: in an error envelope entry (`ApiError.code`, `ApiError.errors`),
 * in `metadata.code` of the system message telling why a turn failed, and in
 * `metadata.extraction.error_code` of a failed file. Codes the SDK makes itself (`network_error`,
 * `aborted`, `closed`...) are not listed: they are never sent by the server.
 */
export const ErrorCode = {
  // Generic (ConversationError, InvalidInput, DRF ValidationError) and HTTP-level answers.
  INVALID: "invalid",
  REQUIRED: "required",
  BAD_REQUEST: "bad_request",
  PARSE_ERROR: "parse_error",
  REQUEST_TOO_LARGE: "request_too_large",
  TOO_MANY_FIELDS: "too_many_fields",
  TOO_MANY_FILES: "too_many_files",
  NOT_AUTHENTICATED: "not_authenticated",
  AUTHENTICATION_FAILED: "authentication_failed",
  PERMISSION_DENIED: "permission_denied",
  NOT_FOUND: "not_found",
  METHOD_NOT_ALLOWED: "method_not_allowed",
  NOT_ACCEPTABLE: "not_acceptable",
  UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
  THROTTLED: "throttled",
  ERROR: "error",

  // DRF field validation (a write's field values).
  NULL: "null",
  BLANK: "blank",
  MAX_LENGTH: "max_length",
  MIN_LENGTH: "min_length",
  MAX_VALUE: "max_value",
  MIN_VALUE: "min_value",
  INVALID_CHOICE: "invalid_choice",
  DOES_NOT_EXIST: "does_not_exist",
  INCORRECT_TYPE: "incorrect_type",
  UNIQUE: "unique",

  // Conversations, messages, widgets, files (the seed API and the start view).
  AGENT_NOT_FOUND: "agent_not_found",
  SESSION_NOT_FOUND: "session_not_found",
  FILE_NOT_FOUND: "file_not_found",
  WIDGET_NOT_FOUND: "widget_not_found",
  INVALID_CONTEXT: "invalid_context",
  START_PARAM_NOT_ALLOWED: "start_param_not_allowed",
  INVALID_MESSAGE: "invalid_message",
  SESSION_NOT_ACTIVE: "session_not_active",
  TURN_IN_PROGRESS: "turn_in_progress",
  NO_ACTIVE_CONVERSATION: "no_active_conversation",

  // Why a turn failed (`metadata["code"]` of its system message).
  AGENT_ERROR: "agent_error",
  TURN_TIMEOUT: "turn_timeout",
  TURN_INTERRUPTED: "turn_interrupted",
  UNKNOWN_TOOL: "unknown_tool",
  INVALID_TOOL_CALL: "invalid_tool_call",
  INVALID_TOOL_ARGUMENTS: "invalid_tool_arguments",
  TOOL_ERROR: "tool_error",
  TOOL_TIMEOUT: "tool_timeout",
  TOOL_REJECTED: "tool_rejected",
  APPROVAL_EXPIRED: "approval_expired",
  TOOL_ROUNDS_EXCEEDED: "tool_rounds_exceeded",
  NOT_A_TOOL_STEP: "not_a_tool_step",
  APPROVAL_ALREADY_ANSWERED: "approval_already_answered",
  NOT_AWAITING_APPROVAL: "not_awaiting_approval",

  // Versions and feedback (regenerate, edit, activate, feedback row actions on a message).
  NOT_A_USER_MESSAGE: "not_a_user_message",
  NOT_AN_AGENT_REPLY: "not_an_agent_reply",

  // The bridge.
  INVALID_REQUEST: "invalid_request",
  UNKNOWN_MODEL: "unknown_model",
  INVALID_QUERY: "invalid_query",
  INVALID_BODY: "invalid_body",
  UNKNOWN_KEY: "unknown_key",
  UNKNOWN_FILTER: "unknown_filter",
  INVALID_LIMIT: "invalid_limit",
  INVALID_OFFSET: "invalid_offset",
  FIELD_NOT_ALLOWED: "field_not_allowed",
  TOO_MANY_VALUES: "too_many_values",
  EMPTY_UPDATE: "empty_update",
  INVALID_STATUS: "invalid_status",
  OPERATION_NOT_ALLOWED: "operation_not_allowed",
  INVALID_ANONYMOUS_ID: "invalid_anonymous_id",
  OPERATION_ID_REUSED: "operation_id_reused",

  // Uploads.
  FILE_TOO_LARGE: "file_too_large",
  UNSUPPORTED_FILE_TYPE: "unsupported_file_type",
  INVALID_UPLOAD: "invalid_upload",
  NO_OWNER: "no_owner",

  // Text extraction (`metadata["extraction"]["error_code"]` of a failed file).
  EXTRACTION_FAILED: "extraction_failed",
  EXTRACTOR_UNAVAILABLE: "extractor_unavailable",
  EXTRACTOR_BUSY: "extractor_busy",
  ENCRYPTED: "encrypted",
  CORRUPT: "corrupt",
  UNSUPPORTED: "unsupported",
  OCR_UNAVAILABLE: "ocr_unavailable",
  TIMEOUT: "timeout",
  TOO_COMPLEX: "too_complex",
  EMPTY_FILE: "empty_file",
  MISSING_FILE: "missing_file",

  // Realtime (channel authorization and the Server-Sent Events view).
  INVALID_CHANNEL: "invalid_channel",
  CHANNEL_FORBIDDEN: "channel_forbidden",
  INVALID_SOCKET_ID: "invalid_socket_id",
  TOO_MANY_CHANNELS: "too_many_channels",
  TOO_MANY_STREAMS: "too_many_streams",
  NOT_AVAILABLE: "not_available",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];
