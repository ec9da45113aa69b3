/**
 * One Server-Sent Events stream of the SSE adapter (`sse.ts`, whose docstring records the
 * decisions): the request carrying a set of channels, its replacement when the set changes, the
 * refusal narrowed down to one channel, reconnects, and the `text/event-stream` parser.
 */

import { EventName } from "../constants.js";
import { isApiError, RealtimeError } from "../errors.js";
import { isAbort, type Transport } from "../http.js";
import { callListener } from "../internal/report.js";
import type { RealtimeEvent } from "../types.js";
import type { ChannelListener, ChannelState } from "./types.js";

const KNOWN_EVENTS = new Set<string>(Object.values(EventName));
/** Answers that will not change by asking again: the channel is refused for good. */
const REFUSED_STATUSES = new Set([400, 401, 403, 404]);

/** One followed channel. */
export interface Member {
  readonly channel: string;
  readonly listener: ChannelListener;
  /** Events numbered up to this were delivered, or came before the channel was subscribed. */
  floor: number | null;
  /** A stream that carried it was accepted (see the refusal rule above). */
  accepted: boolean;
  state: ChannelState;
}

/** What a stream needs of its adapter. */
export interface StreamHost {
  readonly transport: Transport;
  readonly url: string;
  readonly retryDelay: number;
  readonly maxRetryDelay: number;
  member(channel: string): Member | undefined;
  tell(member: Member, state: ChannelState, error?: RealtimeError): void;
  fail(member: Member, error: RealtimeError): void;
  position(id: string): number | null;
  resumeId(channels: readonly string[]): string | null;
}

/** One request to the events endpoint. */
interface Connection {
  readonly channels: ReadonlySet<string>;
  readonly controller: AbortController;
  aborted: boolean;
}

/**
 * One event stream and the channels placed on it. At most two requests exist at a time: the
 * stream being read (`live`) and the one replacing it (`opening`); events are read from `live`
 * only, so no channel is delivered from two places.
 */
export class EventStream {
  channels: string[] = [];
  private live: Connection | null = null;
  private opening: Connection | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private delay: number;
  /** Channels left out of the next request while a refusal is narrowed down. */
  private readonly held = new Set<string>();
  /** The last event id, for a server whose ids are not `<epoch>-<n>` (no floors then). */
  private lastId: string | null = null;
  private closed = false;

  constructor(private readonly host: StreamHost) {
    this.delay = host.retryDelay;
  }

  setChannels(channels: string[]): void {
    this.channels = channels;
    for (const channel of [...this.held]) if (!channels.includes(channel)) this.held.delete(channel);
    this.update();
  }

  /** For good: the adapter was closed. */
  close(): void {
    this.closed = true;
    this.stop();
  }

  /** Close the requests (no channel is left); `setChannels()` may open new ones. */
  private stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const connection of [this.live, this.opening]) if (connection) abort(connection);
    this.live = null;
    this.opening = null;
    this.delay = this.host.retryDelay;
  }

  /** Open a request for the channels the stream should read, unless one is on its way or the
   * stream being read already carries them. */
  private update(): void {
    if (this.closed) return;
    if (!this.channels.length) {
      this.stop();
      return;
    }
    if (this.opening || this.timer) return;
    let wanted = this.channels.filter((channel) => !this.held.has(channel));
    const live = this.live;
    const carries = (channels: string[]) =>
      live !== null && channels.length === live.channels.size && channels.every((channel) => live.channels.has(channel));
    if (this.held.size && carries(wanted)) {
      // The suspect that was refused has failed: try the channels held back again.
      this.held.clear();
      wanted = [...this.channels];
    }
    if (carries(wanted)) {
      // Carried already (e.g. unsubscribed and subscribed again in one tick).
      for (const channel of wanted) {
        const member = this.host.member(channel);
        if (!member) continue;
        member.accepted = true;
        if (member.state !== "subscribed") this.host.tell(member, "subscribed");
      }
      return;
    }
    void this.open(wanted);
  }

  private async open(channels: string[]): Promise<void> {
    const connection: Connection = { channels: new Set(channels), controller: new AbortController(), aborted: false };
    this.opening = connection;
    const url = new URL(this.host.url);
    for (const channel of channels) url.searchParams.append("channel", channel);
    const headers: Record<string, string> = {};
    const resume = this.host.resumeId(channels) ?? this.lastId;
    if (resume) headers["Last-Event-ID"] = resume;
    let response: Response;
    try {
      response = await this.host.transport.openStream(url.toString(), { signal: connection.controller.signal, headers });
    } catch (error) {
      if (this.opening === connection) this.opening = null;
      if (connection.aborted || this.closed || isAbort(error)) return;
      if (isApiError(error) && REFUSED_STATUSES.has(error.status)) {
        this.refused(connection, error);
        this.update();
        return;
      }
      // The server is unreachable, failing or full (429 too_many_streams): try again later.
      // Channels the stream being read carries keep their events meanwhile.
      const reason = new RealtimeError(`The event stream could not be opened: ${errorMessage(error)}`, {
        cause: error,
        code: isApiError(error) ? error.code : "realtime_unavailable",
        ...(isApiError(error) ? { status: error.status } : {}),
      });
      for (const channel of channels) {
        const member = this.host.member(channel);
        if (member && this.channels.includes(channel) && !this.live?.channels.has(channel)) {
          this.host.tell(member, "reconnecting", reason);
        }
      }
      this.retryLater();
      return;
    }
    if (this.opening === connection) this.opening = null;
    if (connection.aborted || this.closed) {
      void response.body?.cancel().catch(() => undefined);
      return;
    }
    const previous = this.live;
    this.live = connection;
    if (previous) abort(previous);
    this.delay = this.host.retryDelay;
    this.held.clear();
    for (const channel of channels) {
      const member = this.host.member(channel);
      if (!member || !this.channels.includes(channel)) continue;
      member.accepted = true;
      if (member.state !== "subscribed") this.host.tell(member, "subscribed");
    }
    void this.read(connection, response);
    this.update();
  }

  /**
   * The server refused the stream of `connection`: narrow it down to one channel (see the module
   * docstring). Without another stream meanwhile, the channels it would have carried wait.
   */
  private refused(connection: Connection, error: unknown): void {
    const tried = [...connection.channels].filter((channel) => this.channels.includes(channel) && this.host.member(channel));
    let suspects = tried.filter((channel) => !this.host.member(channel)?.accepted);
    if (!suspects.length) {
      // All were accepted before (a permission was withdrawn, a conversation deleted): try
      // them again as strangers.
      suspects = tried;
      for (const channel of tried) (this.host.member(channel) as Member).accepted = false;
    }
    if (suspects.length > 1) {
      for (const channel of suspects.slice(Math.ceil(suspects.length / 2))) this.held.add(channel);
      return;
    }
    const channel = suspects[0];
    if (channel === undefined) return;
    const member = this.host.member(channel) as Member;
    this.channels = this.channels.filter((c) => c !== channel);
    this.held.delete(channel);
    const status = isApiError(error) ? error.status : undefined;
    this.host.fail(
      member,
      new RealtimeError(`Subscribing to ${channel} was refused: ${errorMessage(error)}`, {
        channel,
        cause: error,
        ...(status !== undefined ? { status } : {}),
        ...(isApiError(error) ? { code: error.code } : {}),
      }),
    );
  }

  private retryLater(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.update();
    }, this.delay);
    this.delay = Math.min(this.delay * 2, this.host.maxRetryDelay);
  }

  private async read(connection: Connection, response: Response): Promise<void> {
    try {
      await readEvents(
        response,
        (name, data, id) => this.dispatch(connection, name, data, id),
        (retry) => {
          if (!connection.aborted) this.delay = retry;
        },
      );
    } catch {
      // Dropped: handled below like the end of the stream.
    }
    if (connection.aborted || this.closed) return;
    abort(connection);
    if (this.live === connection) this.live = null;
    for (const channel of connection.channels) {
      const member = this.host.member(channel);
      if (member && this.channels.includes(channel) && member.state === "subscribed") this.host.tell(member, "reconnecting");
    }
    // A request already on its way replaces this stream when it answers.
    if (!this.opening) this.retryLater();
  }

  private dispatch(connection: Connection, name: string, raw: string, id: string | null): void {
    if (connection.aborted) return;
    const seq = id === null ? null : this.host.position(id);
    if (id !== null) this.lastId = id;
    if (KNOWN_EVENTS.has(name)) {
      let payload: unknown;
      try {
        payload = JSON.parse(raw);
      } catch {
        payload = undefined;
      }
      if (payload && typeof payload === "object") {
        const named = (payload as { channel?: unknown }).channel;
        const channel = typeof named === "string" ? named : connection.channels.size === 1 ? [...connection.channels][0] : undefined;
        const member = channel === undefined ? undefined : this.carried(connection, channel);
        if (member && (seq === null || member.floor === null || seq > member.floor)) {
          // The listener's own error must not end the stream (and lose the events after it).
          callListener(member.listener.event.bind(member.listener), { name, channel, payload } as RealtimeEvent);
        }
      }
    }
    if (seq === null) return;
    // Everything numbered up to here of every channel this stream carries has come.
    for (const channel of connection.channels) {
      const member = this.carried(connection, channel);
      if (member && (member.floor === null || seq > member.floor)) member.floor = seq;
    }
  }

  /** The member `channel` delivers to from `connection`, if it still belongs to this stream. */
  private carried(connection: Connection, channel: string): Member | undefined {
    if (!connection.channels.has(channel) || !this.channels.includes(channel)) return undefined;
    return this.host.member(channel);
  }
}

function abort(connection: Connection): void {
  connection.aborted = true;
  connection.controller.abort();
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Parse a `text/event-stream` body, calling `onEvent` per event and `onRetry` per `retry:`. */
async function readEvents(
  response: Response,
  onEvent: (name: string, data: string, id: string | null) => void,
  onRetry: (delay: number) => void,
): Promise<void> {
  if (!response.body) throw new RealtimeError("The events response has no body.");
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
        if (data.length) onEvent(event || "message", data.join("\n"), id);
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
      else if (field === "retry" && /^\d+$/.test(text)) onRetry(Number(text));
    }
  }
}

function nextLineEnd(buffer: string): number {
  const r = buffer.indexOf("\r");
  const n = buffer.indexOf("\n");
  if (r < 0) return n;
  if (n < 0) return r === buffer.length - 1 ? -1 : r; // a lone trailing \r may be half of \r\n
  return Math.min(r, n);
}
