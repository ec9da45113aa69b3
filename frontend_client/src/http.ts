/** The HTTP layer: URLs, headers (CSRF, anonymous id, operation ids), the error envelope, uploads. */

import { apiErrorFrom, NetworkError } from "./errors.js";

export type HeaderMap = Record<string, string>;
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface CsrfOptions {
  /** Cookie Django keeps the token in (`CSRF_COOKIE_NAME`); default `csrftoken`. */
  cookieName?: string;
  /** Header Django reads it from (`CSRF_HEADER_NAME`); default `X-CSRFToken`. */
  headerName?: string;
}

/** How requests reach the server: the part of `ClientOptions` every request uses. */
export interface TransportOptions {
  /** Where the host project mounts `django_ai.conversations.urls`, e.g. `"/api/conversations/"`
   * in a page of the same site, or an absolute URL elsewhere (Node, another origin). */
  baseUrl: string;
  /** Headers sent with every request (e.g. `Authorization`). */
  headers?: HeaderMap;
  /** Headers computed per request (e.g. a fresh token). */
  getHeaders?: () => HeaderMap | Promise<HeaderMap>;
  /** A fetch implementation (default: the global one). Uploads then use it too (no progress). */
  fetch?: FetchLike;
  /** Send Django's CSRF token from its cookie on writes (default true in browsers). */
  csrf?: boolean | CsrfOptions;
  /** fetch credentials; default `"same-origin"` (use `"include"` for another origin). */
  credentials?: RequestCredentials;
  /** The anonymous visitor id of a stateless client (no cookies); `startConversation` sets it. */
  anonymousId?: string | null;
  /** The header the server reads the anonymous id from (`ANONYMOUS_ID_HEADER`). */
  anonymousIdHeader?: string;
}

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | string[] | undefined>;
  signal?: AbortSignal;
  /** Sent as `X-Operation-Id` so the `model_change` echo of this write can be recognised. */
  operationId?: string;
  headers?: HeaderMap;
}

export interface UploadProgress {
  loaded: number;
  total: number;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

let counter = 0;

/** A random id for `X-Operation-Id` (crypto.randomUUID when the page is a secure context). */
export function newOperationId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  counter += 1;
  return `op-${Date.now().toString(36)}-${counter.toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function readCookie(name: string): string | null {
  const doc = (globalThis as { document?: { cookie?: string } }).document;
  if (!doc || typeof doc.cookie !== "string") return null;
  for (const part of doc.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/** The transport every part of a client shares; one per `createClient()`. */
export class Transport {
  readonly baseUrl: string;
  anonymousId: string | null;
  private readonly options: TransportOptions;
  private readonly fetchImpl: FetchLike;

  constructor(options: TransportOptions) {
    this.options = options;
    this.baseUrl = resolveBase(options.baseUrl);
    this.anonymousId = options.anonymousId ?? null;
    const f = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) {
      throw new TypeError("No fetch implementation: pass createClient({ fetch }) on runtimes without a global fetch.");
    }
    // Calling a browser's fetch with another `this` throws; bind it once.
    this.fetchImpl = options.fetch ? options.fetch : f.bind(globalThis);
  }

  /** Whether uploads may use XMLHttpRequest (browsers, when no custom fetch was given). */
  get canUseXhr(): boolean {
    return !this.options.fetch && typeof (globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest === "function";
  }

  /** An absolute URL for `path` (relative to the base URL, or absolute-path like `/api/...`). */
  url(path: string, query?: RequestOptions["query"]): string {
    const url = new URL(path, this.baseUrl);
    if (query) {
      for (const [key, value] of Object.entries(query)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
      }
    }
    return url.toString();
  }

  /** Headers for a request: static headers, getHeaders(), anonymous id, CSRF token. */
  async headers(method: string, extra?: HeaderMap): Promise<HeaderMap> {
    const out: HeaderMap = { Accept: "application/json", ...(this.options.headers ?? {}) };
    if (this.options.getHeaders) Object.assign(out, await this.options.getHeaders());
    if (this.anonymousId) out[this.options.anonymousIdHeader ?? "X-Conversation-Anonymous-Id"] = this.anonymousId;
    if (UNSAFE.has(method) && this.options.csrf !== false) {
      const csrf = typeof this.options.csrf === "object" ? this.options.csrf : {};
      const token = readCookie(csrf.cookieName ?? "csrftoken");
      if (token) out[csrf.headerName ?? "X-CSRFToken"] = token;
    }
    return Object.assign(out, extra ?? {});
  }

  get credentials(): RequestCredentials {
    return this.options.credentials ?? "same-origin";
  }

  /** Send a JSON request; the parsed answer, `undefined` for 204, or an ApiError/NetworkError. */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = this.url(path, options.query);
    const extra: HeaderMap = { ...(options.headers ?? {}) };
    if (options.operationId) extra["X-Operation-Id"] = options.operationId;
    const headers = await this.headers(method, extra);
    let body: BodyInit | undefined;
    if (options.body instanceof FormData) {
      body = options.body;
    } else if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const init: RequestInit = { method, headers, credentials: this.credentials };
    if (body !== undefined) init.body = body;
    if (options.signal) init.signal = options.signal;
    let response: Response;
    try {
      response = await this.fetchImpl(url, init);
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new NetworkError(url, error);
    }
    return this.parse<T>(response, method, url);
  }

  /** Open a streaming GET (Server-Sent Events); the raw Response when it is OK. */
  async openStream(url: string, options: { signal: AbortSignal; headers?: HeaderMap }): Promise<Response> {
    const headers = await this.headers("GET", { Accept: "text/event-stream", ...(options.headers ?? {}) });
    let response: Response;
    try {
      response = await this.fetchImpl(url, { method: "GET", headers, credentials: this.credentials, signal: options.signal, cache: "no-store" });
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new NetworkError(url, error);
    }
    if (!response.ok) await this.parse(response, "GET", url);
    return response;
  }

  /** POST a multipart form, reporting upload progress (XMLHttpRequest in browsers). */
  async upload<T>(
    path: string,
    form: FormData,
    options: { onProgress?: (progress: UploadProgress) => void; signal?: AbortSignal; total?: number } = {},
  ): Promise<T> {
    const url = this.url(path);
    if (!this.canUseXhr) {
      // fetch cannot report upload progress: report the start and the end.
      const total = options.total ?? 0;
      options.onProgress?.({ loaded: 0, total });
      const result = await this.request<T>("POST", path, { body: form, signal: options.signal });
      options.onProgress?.({ loaded: total, total });
      return result;
    }
    const headers = await this.headers("POST");
    return new Promise<T>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.withCredentials = this.credentials === "include";
      for (const [key, value] of Object.entries(headers)) xhr.setRequestHeader(key, value);
      xhr.upload.onprogress = (event) => {
        options.onProgress?.({ loaded: event.loaded, total: event.lengthComputable ? event.total : options.total ?? 0 });
      };
      xhr.onerror = () => reject(new NetworkError(url));
      xhr.onabort = () => reject(new DOMException("The upload was aborted.", "AbortError"));
      xhr.onload = () => {
        let body: unknown = undefined;
        const type = xhr.getResponseHeader("Content-Type") ?? "";
        if (xhr.responseText && type.includes("json")) {
          try {
            body = JSON.parse(xhr.responseText);
          } catch {
            body = undefined;
          }
        }
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve(body as T);
        } else {
          reject(apiErrorFrom({ status: xhr.status, body, method: "POST", url, retryAfter: xhr.getResponseHeader("Retry-After") }));
        }
      };
      if (options.signal) {
        if (options.signal.aborted) {
          reject(new DOMException("The upload was aborted.", "AbortError"));
          return;
        }
        options.signal.addEventListener("abort", () => xhr.abort(), { once: true });
      }
      xhr.send(form);
    });
  }

  private async parse<T>(response: Response, method: string, url: string): Promise<T> {
    if (response.status === 204) return undefined as T;
    const type = response.headers.get("Content-Type") ?? "";
    let body: unknown = undefined;
    if (type.includes("json")) {
      try {
        body = await response.json();
      } catch {
        body = undefined;
      }
    } else {
      // Drain the body so the connection can be reused.
      await response.text().catch(() => "");
    }
    if (!response.ok) {
      throw apiErrorFrom({ status: response.status, body, method, url, retryAfter: response.headers.get("Retry-After") });
    }
    return body as T;
  }
}

function resolveBase(base: string): string {
  const withSlash = base.endsWith("/") ? base : `${base}/`;
  try {
    return new URL(withSlash).toString();
  } catch {
    const loc = (globalThis as { location?: { href?: string } }).location;
    if (loc?.href) return new URL(withSlash, loc.href).toString();
    throw new TypeError(
      `baseUrl ${JSON.stringify(base)} is relative and there is no page to resolve it against: pass an absolute URL, e.g. "http://127.0.0.1:8000/api/conversations/".`,
    );
  }
}

export function isAbort(error: unknown): boolean {
  return typeof error === "object" && error !== null && (error as { name?: string }).name === "AbortError";
}
