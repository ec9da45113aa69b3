/**
 * One error family. Every failure the SDK reports is a `ConversationClientError`:
 *
 * - `ApiError` (and one subclass per status) when the server answered with the error envelope
 *   `{"errors": [{"code", "message", "field"?}]}`;
 * - `NetworkError` when the server could not be reached (down, offline, CORS, DNS);
 * - `RealtimeError` when the realtime connection was refused or failed;
 * - `UsageError` when the client refused a call before sending anything (an empty message, a
 *   filter that is not an object): the server was never asked, so it is no `ApiError`.
 *
 * Use the type guards (`isApiError`, `isRateLimited`...) rather than `instanceof` when errors may
 * cross bundles.
 */

export interface ErrorDetail {
  code: string;
  message: string;
  field?: string;
}

const BRAND = Symbol.for("django-ai-first-client.error");

export class ConversationClientError extends Error {
  readonly [BRAND] = true;
  /** A stable machine-readable code, e.g. `"rate_limited"` or `"network_error"`. */
  readonly code: string;

  constructor(message: string, options: { code: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    // `name` comes from the prototype (set below by a string, not the class's own name, which
    // minifiers rename): isRealtimeError() and logs keep working in production bundles.
    this.code = options.code;
  }
}

/** The server answered with an error status. */
export class ApiError extends ConversationClientError {
  readonly status: number;
  /** Every entry of the envelope; `code`, `message` and `field` repeat the first one. */
  readonly errors: ErrorDetail[];
  readonly field: string | undefined;
  readonly method: string;
  readonly url: string;

  constructor(options: { status: number; errors: ErrorDetail[]; method: string; url: string }) {
    const first = options.errors[0] ?? { code: `http_${options.status}`, message: `The server answered ${options.status}.` };
    super(first.message, { code: first.code });
    this.status = options.status;
    this.errors = options.errors;
    this.field = first.field;
    this.method = options.method;
    this.url = options.url;
  }

  /** Messages by field name (errors without a field are under `""`), for forms. */
  fieldErrors(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const error of this.errors) {
      (out[error.field ?? ""] ??= []).push(error.message);
    }
    return out;
  }
}

/** 400: the request was invalid (see `errors` for each field). */
export class ValidationError extends ApiError {}
/** 401: not authenticated. */
export class AuthenticationError extends ApiError {}
/** 403: not allowed. */
export class PermissionDeniedError extends ApiError {}
/** 404: unknown model, row, agent or conversation. */
export class NotFoundError extends ApiError {}
/** 409: a conflict, e.g. the conversation is not active or a turn is in progress. */
export class ConflictError extends ApiError {}
/** 413: the upload or request is too large. */
export class PayloadTooLargeError extends ApiError {}
/**
 * 415: an upload whose content is not an accepted type (code `unsupported_file_type`). The server
 * decides from the bytes, not the name: an executable named `photo.png` is refused. `message`
 * names the detected type, e.g. "Files of type application/x-executable are not accepted here."
 */
export class UnsupportedFileTypeError extends ApiError {}
/** 429: too many requests; `retryAfter` is in seconds when the server said. */
export class RateLimitedError extends ApiError {
  readonly retryAfter: number | undefined;
  constructor(options: { status: number; errors: ErrorDetail[]; method: string; url: string; retryAfter?: number }) {
    super(options);
    this.retryAfter = options.retryAfter;
  }
}
/** 5xx: the server failed (details are in its logs). */
export class ServerError extends ApiError {}

/** The server could not be reached. */
export class NetworkError extends ConversationClientError {
  readonly url: string;
  constructor(url: string, cause?: unknown) {
    super(`Could not reach the server (${url}).`, { code: "network_error", cause });
    this.url = url;
  }
}

/** The realtime connection failed or a channel was refused. */
export class RealtimeError extends ConversationClientError {
  readonly channel: string | undefined;
  readonly status: number | undefined;
  constructor(message: string, options: { channel?: string; status?: number; cause?: unknown; code?: string } = {}) {
    super(message, { code: options.code ?? "realtime_error", cause: options.cause });
    this.channel = options.channel;
    this.status = options.status;
  }
}

/**
 * The client refused a call before sending anything: an argument it cannot use, e.g. an empty
 * message (code `invalid_message`, field `content`), a filter that is not an object (code
 * `invalid_filter`) or `retry()` of a message that was not refused (code `not_found`). Nothing
 * reached the server; fix the call (or ask the person to type a message).
 */
export class UsageError extends ConversationClientError {
  /** The argument or form field at fault, when there is one. */
  readonly field: string | undefined;
  constructor(message: string, options: { code: string; field?: string; cause?: unknown }) {
    super(message, { code: options.code, cause: options.cause });
    this.field = options.field;
  }
}

// The names by string keys (kept by every minifier), on the prototypes.
for (const [name, cls] of Object.entries({
  ConversationClientError,
  ApiError,
  ValidationError,
  AuthenticationError,
  PermissionDeniedError,
  NotFoundError,
  ConflictError,
  PayloadTooLargeError,
  UnsupportedFileTypeError,
  RateLimitedError,
  ServerError,
  NetworkError,
  RealtimeError,
  UsageError,
})) {
  Object.defineProperty(cls.prototype, "name", { value: name, writable: true, configurable: true, enumerable: false });
}

const BY_STATUS: Record<number, typeof ApiError> = {
  400: ValidationError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  415: UnsupportedFileTypeError,
};

/** Build the right `ApiError` subclass from a status and a parsed body (envelope or not). */
export function apiErrorFrom(options: {
  status: number;
  body: unknown;
  method: string;
  url: string;
  retryAfter?: string | null;
}): ApiError {
  const errors = parseEnvelope(options.body, options.status);
  const base = { status: options.status, errors, method: options.method, url: options.url };
  if (options.status === 429) {
    const seconds = options.retryAfter ? Number(options.retryAfter) : NaN;
    return new RateLimitedError(Number.isFinite(seconds) ? { ...base, retryAfter: seconds } : base);
  }
  if (options.status >= 500) return new ServerError(base);
  const cls = BY_STATUS[options.status] ?? ApiError;
  return new cls(base);
}

function parseEnvelope(body: unknown, status: number): ErrorDetail[] {
  if (body && typeof body === "object" && Array.isArray((body as { errors?: unknown }).errors)) {
    const out: ErrorDetail[] = [];
    for (const item of (body as { errors: unknown[] }).errors) {
      if (item && typeof item === "object") {
        const { code, message, field } = item as Record<string, unknown>;
        const detail: ErrorDetail = {
          code: typeof code === "string" ? code : `http_${status}`,
          message: typeof message === "string" ? message : "The request failed.",
        };
        if (typeof field === "string" && field) detail.field = field;
        out.push(detail);
      }
    }
    if (out.length) return out;
  }
  const fallback: Record<number, string> = {
    401: "Please sign in.",
    403: "You are not allowed to do this.",
    404: "Not found.",
    413: "The request is too large.",
    415: "Files of this type are not accepted.",
    429: "Too many requests; wait a moment and try again.",
  };
  return [
    {
      code: status >= 500 ? "server_error" : `http_${status}`,
      message: fallback[status] ?? (status >= 500 ? "The server failed; try again later." : `The server answered ${status}.`),
    },
  ];
}

function branded(value: unknown): value is ConversationClientError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

export function isConversationClientError(value: unknown): value is ConversationClientError {
  return branded(value);
}
export function isApiError(value: unknown): value is ApiError {
  return branded(value) && typeof (value as ApiError).status === "number" && Array.isArray((value as ApiError).errors);
}
export function isNetworkError(value: unknown): value is NetworkError {
  return branded(value) && value.code === "network_error";
}
export function isRealtimeError(value: unknown): value is RealtimeError {
  return branded(value) && value.name === "RealtimeError";
}
export function isUsageError(value: unknown): value is UsageError {
  return branded(value) && value.name === "UsageError";
}
export function isValidationError(value: unknown): value is ValidationError {
  return isApiError(value) && value.status === 400;
}
export function isPermissionDenied(value: unknown): value is PermissionDeniedError {
  return isApiError(value) && (value.status === 401 || value.status === 403);
}
export function isNotFound(value: unknown): value is NotFoundError {
  return isApiError(value) && value.status === 404;
}
export function isConflict(value: unknown): value is ConflictError {
  return isApiError(value) && value.status === 409;
}
export function isPayloadTooLarge(value: unknown): value is PayloadTooLargeError {
  return isApiError(value) && value.status === 413;
}
export function isUnsupportedFileType(value: unknown): value is UnsupportedFileTypeError {
  return isApiError(value) && value.status === 415;
}
export function isRateLimited(value: unknown): value is RateLimitedError {
  return isApiError(value) && value.status === 429;
}
export function isServerError(value: unknown): value is ServerError {
  return isApiError(value) && value.status >= 500;
}

/**
 * Any failure as a `ConversationClientError`, for the conversation store's `error` and
 * `sendError`: an abort becomes code `aborted`, anything else that is not one of ours `unexpected`.
 */
export function toClientError(error: unknown): ConversationClientError {
  if (isConversationClientError(error)) return error;
  if (typeof error === "object" && error && (error as { name?: string }).name === "AbortError") {
    return new ConversationClientError("Cancelled.", { code: "aborted", cause: error });
  }
  return new ConversationClientError(error instanceof Error ? error.message : String(error), { code: "unexpected", cause: error });
}
