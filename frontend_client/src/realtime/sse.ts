/**
 * Server-Sent Events adapter for the Local backend (`GET realtime/events/?channel=...`).
 *
 * Built on fetch streaming rather than `EventSource`, so it can send headers (the anonymous id of
 * a stateless client, `getHeaders()` tokens) and works in Node. One connection per channel; it
 * reconnects with `Last-Event-ID` and a growing delay, and stops on 401/403/404.
 */

import { EventName } from "../constants.js";
import { isApiError, RealtimeError } from "../errors.js";
import { isAbort } from "../http.js";
import { callListener } from "../internal/report.js";
import type { RealtimeEvent } from "../types.js";
import type { ChannelListener, RealtimeAdapter, RealtimeContext, RealtimeFactory, Unsubscribe } from "./types.js";

export interface SseOptions {
  /** The events URL; default: `events_endpoint` of the server's realtime config. */
  url?: string;
  /** First reconnect delay in ms (doubles up to `maxRetryDelay`); default 500. */
  retryDelay?: number;
  maxRetryDelay?: number;
}

const KNOWN_EVENTS = new Set<string>(Object.values(EventName));

/** `realtime: sseRealtime()` — use Server-Sent Events whatever the server's config says. */
export function sseRealtime(options: SseOptions = {}): RealtimeFactory {
  return (context) => new SseAdapter(context, options);
}

export class SseAdapter implements RealtimeAdapter {
  readonly name = "sse";
  private readonly url: string;
  private readonly connections = new Set<SseConnection>();

  constructor(
    private readonly context: RealtimeContext,
    private readonly options: SseOptions = {},
  ) {
    const endpoint = options.url ?? context.config.events_endpoint ?? "realtime/events/";
    this.url = context.transport.url(endpoint);
  }

  subscribe(channel: string, listener: ChannelListener): Unsubscribe {
    const connection = new SseConnection(this.context, this.url, channel, listener, this.options);
    this.connections.add(connection);
    connection.start();
    return () => {
      connection.stop();
      this.connections.delete(connection);
    };
  }

  close(): void {
    for (const connection of this.connections) connection.stop();
    this.connections.clear();
  }
}

class SseConnection {
  private controller: AbortController | null = null;
  private stopped = false;
  private lastEventId: string | null = null;
  private delay: number;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly context: RealtimeContext,
    private readonly baseUrl: string,
    private readonly channel: string,
    private readonly listener: ChannelListener,
    private readonly options: SseOptions,
  ) {
    this.delay = options.retryDelay ?? 500;
  }

  start(): void {
    this.listener.state?.("connecting");
    void this.run();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.controller?.abort();
    this.listener.state?.("closed");
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      this.controller = new AbortController();
      const url = new URL(this.baseUrl);
      url.searchParams.set("channel", this.channel);
      try {
        const headers: Record<string, string> = {};
        if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
        const response = await this.context.transport.openStream(url.toString(), { signal: this.controller.signal, headers });
        this.delay = this.options.retryDelay ?? 500;
        this.listener.state?.("subscribed");
        await this.read(response);
      } catch (error) {
        if (this.stopped || isAbort(error)) return;
        if (isApiError(error) && [400, 401, 403, 404].includes(error.status)) {
          this.stopped = true;
          this.listener.state?.(
            "failed",
            new RealtimeError(`Subscribing to ${this.channel} was refused: ${error.message}`, {
              channel: this.channel,
              status: error.status,
              cause: error,
              code: error.code,
            }),
          );
          return;
        }
      }
      if (this.stopped) return;
      this.listener.state?.("reconnecting");
      await new Promise<void>((resolve) => {
        this.timer = setTimeout(resolve, this.delay);
      });
      this.delay = Math.min(this.delay * 2, this.options.maxRetryDelay ?? 10_000);
    }
  }

  private async read(response: Response): Promise<void> {
    if (!response.body) throw new RealtimeError("The events response has no body.", { channel: this.channel });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let event = "";
    let data: string[] = [];
    let id: string | null = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let index: number;
      while ((index = nextLineEnd(buffer)) >= 0) {
        const line = buffer.slice(0, index);
        buffer = buffer.slice(index + (buffer[index] === "\r" && buffer[index + 1] === "\n" ? 2 : 1));
        if (line === "") {
          if (data.length) this.dispatch(event || "message", data.join("\n"), id);
          event = "";
          data = [];
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
        else if (field === "id") id = text;
        else if (field === "retry" && /^\d+$/.test(text)) this.delay = Number(text);
      }
    }
  }

  private dispatch(name: string, raw: string, id: string | null): void {
    if (id !== null) this.lastEventId = id;
    if (!KNOWN_EVENTS.has(name)) return;
    let payload: unknown;
    try {
      payload = JSON.parse(raw);
    } catch {
      return;
    }
    // The listener's own error must not end the connection (and lose the events after it).
    callListener(this.listener.event.bind(this.listener), { name, channel: this.channel, payload } as RealtimeEvent);
  }
}

function nextLineEnd(buffer: string): number {
  const r = buffer.indexOf("\r");
  const n = buffer.indexOf("\n");
  if (r < 0) return n;
  if (n < 0) return r === buffer.length - 1 ? -1 : r; // a lone trailing \r may be half of \r\n
  return Math.min(r, n);
}
