/**
 * Server-Sent Events adapter for the Local backend (`GET realtime/events/?channel=a&channel=b`).
 *
 * Built on fetch streaming rather than `EventSource`, so it can send headers (the anonymous id of
 * a stateless client, `getHeaders()` tokens) and works in Node.
 *
 * All the channels of a client share one stream (ceil(n / 10) beyond 10 channels: the server
 * reads at most 10 per stream), because the server caps the streams a visitor holds open
 * (`SSE_MAX_STREAMS_PER_VISITOR`). Decisions:
 *
 * - Subscribing or unsubscribing reopens the stream with the new channel set; the changes made
 *   in one tick make one reopen. The new stream is requested while the old one is still read,
 *   and the old one is closed only once the new one has answered: the channels it already
 *   carried keep their events (and their `subscribed` state) if the new request fails, e.g.
 *   with 429 `too_many_streams` while the server has not yet noticed an earlier stream is gone.
 * - Event ids are `<epoch>-<n>`, numbered across all channels of the server process, so each
 *   channel remembers the last `n` it was given (its floor). A stream asks for the events after
 *   the lowest floor of its channels (`Last-Event-ID`), and an event at or below its channel's
 *   floor was delivered already and is dropped: nothing is lost or repeated across a reopen or
 *   a channel moving to another stream. A new channel starts at the highest `n` the client has
 *   seen, so the replay brings it none of the events from before it was subscribed that the
 *   client knows to be older.
 * - A refused stream (400/401/403/404) does not say which channel was refused. Channels that
 *   have never been on an accepted stream are the suspects (all of them, when every channel
 *   was accepted before); the stream is tried again with half of them held back until one
 *   suspect is left, which fails alone; the others carry on.
 * - A stream that drops, or cannot be opened (network, 5xx, 429), is tried again after a
 *   growing delay, resuming from the floors.
 */

import { EventName } from "../constants.js";
import { isApiError, RealtimeError } from "../errors.js";
import { isAbort, type Transport } from "../http.js";
import { planGroups } from "../internal/groups.js";
import { callListener } from "../internal/report.js";
import type { RealtimeEvent } from "../types.js";
import type {
  ChannelListener,
  ChannelState,
  RealtimeAdapter,
  RealtimeContext,
  RealtimeFactory,
  Unsubscribe,
} from "./types.js";

export interface SseOptions {
  /** The events URL; default: `events_endpoint` of the server's realtime config. */
  url?: string;
  /** First reconnect delay in ms (doubles up to `maxRetryDelay`); default 500. */
  retryDelay?: number;
  maxRetryDelay?: number;
}

const KNOWN_EVENTS = new Set<string>(Object.values(EventName));
/** Answers that will not change by asking again: the channel is refused for good. */
const REFUSED_STATUSES = new Set([400, 401, 403, 404]);
const EVENT_ID = /^([0-9A-Za-z]+)-(\d{1,15})$/;

/** `realtime: sseRealtime()` — use Server-Sent Events whatever the server's config says. */
export function sseRealtime(options: SseOptions = {}): RealtimeFactory {
  return (context) => new SseAdapter(context, options);
}

/** One followed channel. */
interface Member {
  readonly channel: string;
  readonly listener: ChannelListener;
  /** Events numbered up to this were delivered, or came before the channel was subscribed. */
  floor: number | null;
  /** A stream that carried it was accepted (see the refusal rule above). */
  accepted: boolean;
  state: ChannelState;
}

export class SseAdapter implements RealtimeAdapter {
  readonly name = "sse";
  private readonly members = new Map<string, Member>();
  private streams: EventStream[] = [];
  private arrangeTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  /** The epoch of the event ids seen, and the highest number seen in it. */
  private epoch: string | null = null;
  private latest: number | null = null;
  /** What its streams need of the adapter. */
  private readonly host: StreamHost;

  constructor(context: RealtimeContext, options: SseOptions = {}) {
    const endpoint = options.url ?? context.config.events_endpoint ?? "realtime/events/";
    const url = context.transport.url(endpoint);
    this.host = {
      transport: context.transport,
      url,
      retryDelay: options.retryDelay ?? 500,
      maxRetryDelay: options.maxRetryDelay ?? 10_000,
      member: (channel) => this.members.get(channel),
      tell: (member, state, error) => this.tell(member, state, error),
      fail: (member, error) => this.drop(member, "failed", error),
      position: (id) => this.position(id),
      resumeId: (channels) => this.resumeId(channels),
    };
  }

  subscribe(channel: string, listener: ChannelListener): Unsubscribe {
    if (this.closed) {
      callListener(() => listener.state?.("closed"));
      return () => undefined;
    }
    const previous = this.members.get(channel);
    if (previous) this.drop(previous, "closed");
    const member: Member = { channel, listener, floor: this.latest, accepted: false, state: "connecting" };
    this.members.set(channel, member);
    this.tell(member, "connecting");
    this.schedule();
    return () => {
      if (this.members.get(channel) !== member) return;
      this.drop(member, "closed");
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.arrangeTimer) clearTimeout(this.arrangeTimer);
    for (const stream of this.streams) stream.close();
    this.streams = [];
    for (const member of [...this.members.values()]) this.drop(member, "closed");
  }

  /** Stop delivering to `member` and tell it `state` ("closed", or "failed" with the reason). */
  private drop(member: Member, state: ChannelState, error?: RealtimeError): void {
    if (this.members.get(member.channel) === member) this.members.delete(member.channel);
    this.tell(member, state, error);
    if (!this.closed) this.schedule();
  }

  /** Re-place the channels on streams once the current tick's changes are all made. */
  private schedule(): void {
    if (this.arrangeTimer || this.closed) return;
    this.arrangeTimer = setTimeout(() => {
      this.arrangeTimer = null;
      this.arrange();
    }, 0);
  }

  private arrange(): void {
    if (this.closed) return;
    const plan = planGroups(
      this.streams.map((stream) => stream.channels),
      this.members.keys(),
    );
    const streams: EventStream[] = [];
    plan.forEach((channels, index) => {
      const stream = this.streams[index] ?? new EventStream(this.host);
      stream.setChannels(channels);
      if (channels.length) streams.push(stream);
    });
    this.streams = streams;
  }

  private tell(member: Member, state: ChannelState, error?: RealtimeError): void {
    member.state = state;
    const listener = member.listener;
    if (listener.state) callListener(listener.state.bind(listener), state, error);
  }

  /** The number of event `id` (null when it is not `<epoch>-<n>`); a new epoch (the server
   * restarted) forgets every floor, which counted in the old one. */
  private position(id: string): number | null {
    const match = EVENT_ID.exec(id);
    if (!match) return null;
    const epoch = match[1] as string;
    const seq = Number(match[2]);
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.latest = null;
      for (const member of this.members.values()) member.floor = null;
    }
    if (this.latest === null || seq > this.latest) this.latest = seq;
    return seq;
  }

  /** The `Last-Event-ID` a stream of `channels` resumes from: the lowest floor among them. */
  private resumeId(channels: readonly string[]): string | null {
    let lowest: number | null = null;
    for (const channel of channels) {
      const floor = this.members.get(channel)?.floor ?? null;
      if (floor !== null && (lowest === null || floor < lowest)) lowest = floor;
    }
    return lowest === null || this.epoch === null ? null : `${this.epoch}-${lowest}`;
  }
}

interface StreamHost {
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
class EventStream {
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
