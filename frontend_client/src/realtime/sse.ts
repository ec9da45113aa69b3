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

import type { RealtimeError } from "../errors.js";
import { planGroups } from "../internal/groups.js";
import { callListener } from "../internal/report.js";
import { EventStream, type Member, type StreamHost } from "./sse-stream.js";
import type { ChannelListener, ChannelState, RealtimeAdapter, RealtimeContext, RealtimeFactory, Unsubscribe } from "./types.js";

export interface SseOptions {
  /** The events URL; default: `events_endpoint` of the server's realtime config. */
  url?: string;
  /** First reconnect delay in ms (doubles up to `maxRetryDelay`); default 500. */
  retryDelay?: number;
  maxRetryDelay?: number;
}

const EVENT_ID = /^([0-9A-Za-z]+)-(\d{1,15})$/;

/** `realtime: sseRealtime()` — use Server-Sent Events whatever the server's config says. */
export function sseRealtime(options: SseOptions = {}): RealtimeFactory {
  return (context) => new SseAdapter(context, options);
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
