export { createClient } from "./client.js";
export type { Client, ClientOptions, StartOptions } from "./client.js";

export { Conversation } from "./conversation.js";
export type { ConversationOptions } from "./conversation.js";
export type { Attachment, ConversationMessage, ConversationPhase, ConversationState, MessagePart, ToolStep, UploadState } from "./store/state.js";
export type { SendOptions } from "./store/sends.js";
export type { EditOptions, Rating, VersionOptions } from "./store/versions.js";

export { ModelManager, QuerySet } from "./queryset.js";
export type { WriteOptions } from "./queryset.js";
export type { LiveOptions, LiveSnapshot } from "./live.js";
export { FileManager } from "./files.js";
export type { UploadOptions } from "./files.js";
export type { CsrfOptions, FetchLike, HeaderMap, TransportOptions, UploadProgress } from "./http.js";

export { autoRealtime, RealtimeHub } from "./realtime/hub.js";
export type { RealtimeOption } from "./realtime/hub.js";
export { sseRealtime, SseAdapter } from "./realtime/sse.js";
export type { SseOptions } from "./realtime/sse.js";
export { pusherRealtime, PusherAdapter } from "./realtime/pusher.js";
export type { PusherAdapterOptions, PusherChannelLike, PusherConstructor, PusherLike } from "./realtime/pusher.js";
export type {
  ChannelListener,
  ChannelState,
  RealtimeAdapter,
  RealtimeContext,
  RealtimeFactory,
  Unsubscribe,
} from "./realtime/types.js";

export {
  ApiError,
  AuthenticationError,
  ConflictError,
  ConversationClientError,
  NetworkError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitedError,
  RealtimeError,
  ServerError,
  UnsupportedFileTypeError,
  UsageError,
  ValidationError,
  isApiError,
  isConflict,
  isConversationClientError,
  isNetworkError,
  isNotFound,
  isPayloadTooLarge,
  isPermissionDenied,
  isRateLimited,
  isRealtimeError,
  isServerError,
  isUnsupportedFileType,
  isUsageError,
  isValidationError,
} from "./errors.js";
export type { ErrorDetail } from "./errors.js";

export { StreamAssembler } from "./stream.js";
export type { StreamChunk, StreamRow } from "./stream.js";

export {
  ApprovalStatus,
  BridgeAction,
  BuiltinModel,
  ConcurrencyPolicy,
  EVENT_BASE_FIELDS,
  EVENT_PAYLOAD_FIELDS,
  EventName,
  ExtractionStatus,
  FeedbackRating,
  FINISHED_STATUSES,
  MessageRevision,
  MessageType,
  ModelOperation,
  OWNER_CHANNEL_PREFIX,
  ProcessingStatus,
  SESSION_CHANNEL_PREFIX,
  SessionStatus,
} from "./constants.js";

export type {
  AgentInfo,
  BuiltinRows,
  CancelResult,
  EventPayloads,
  FileRow,
  FieldSchema,
  FieldType,
  Filter,
  FilterScalar,
  FilterValue,
  Json,
  JsonObject,
  MessageRow,
  MessageStatusEvent,
  ModelChangeEvent,
  ModelSchema,
  Normalized,
  Pk,
  QueryMeta,
  QueryResult,
  RealtimeConfig,
  RealtimeEvent,
  Row,
  Schema,
  SessionRow,
  StartedConversation,
  StreamEndEvent,
  StreamStartEvent,
  TextChunkEvent,
  WidgetEvent,
  ToolApproval,
  ToolCallArgumentsEvent,
  ToolCallResultEvent,
  ToolCallStartEvent,
  ToolStepData,
  ToolStepError,
  WidgetRow,
  WidgetUpdateEvent,
  WireTypes,
} from "./types.js";
