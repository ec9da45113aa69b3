import type { RealtimeError } from "../errors.js";
import type { Transport } from "../http.js";
import type { RealtimeConfig, RealtimeEvent } from "../types.js";

/**
 * State of one channel subscription.
 *
 * `subscribed` is reported on every (re)connection: after a reconnect the events sent while the
 * connection was down may be lost, so listeners re-read what they show when they see it again.
 */
export type ChannelState = "connecting" | "subscribed" | "reconnecting" | "failed" | "closed";

export interface ChannelListener {
  event(event: RealtimeEvent): void;
  state?(state: ChannelState, error?: RealtimeError): void;
}

/** Unsubscribes; calling it twice is harmless. */
export type Unsubscribe = () => void;

/**
 * A realtime transport. Implement it to carry events over something else than Pusher or
 * Server-Sent Events; `subscribe` is called at most once per channel at a time (the client
 * shares one subscription between its listeners).
 */
export interface RealtimeAdapter {
  readonly name: string;
  subscribe(channel: string, listener: ChannelListener): Unsubscribe;
  close(): void;
}

export interface RealtimeContext {
  transport: Transport;
  /** `GET realtime/config/`: which backend the server uses, and how to reach it. */
  config: RealtimeConfig;
}

/** Builds an adapter once the server's realtime configuration is known. */
export type RealtimeFactory = (context: RealtimeContext) => RealtimeAdapter | Promise<RealtimeAdapter>;
