/**
 * The client's realtime hub: reads the server's realtime config once, builds the adapter, and shares
 * one adapter subscription per channel between any number of listeners.
 */

import { isApiError, isNetworkError, RealtimeError } from "../errors.js";
import { callListener } from "../internal/report.js";
import type { Transport } from "../http.js";
import type { RealtimeConfig, RealtimeEvent } from "../types.js";
import { pusherRealtime, type PusherConstructor } from "./pusher.js";
import { sseRealtime } from "./sse.js";
import type { ChannelListener, ChannelState, RealtimeAdapter, RealtimeFactory, Unsubscribe } from "./types.js";

/**
 * `"auto"` (default) follows the server: pusher-js when it uses Pusher, Server-Sent Events for
 * the Local backend. `"none"` (or `false`) turns realtime off: conversations then refresh after
 * your own writes only.
 */
export type RealtimeOption = "auto" | "sse" | "pusher" | "none" | false | RealtimeFactory;

/** Follow the server's config: pusher-js (with this constructor when given) or Server-Sent Events. */
export function autoRealtime(options: { Pusher?: PusherConstructor } = {}): RealtimeFactory {
  return (context) =>
    context.config.backend === "pusher"
      ? pusherRealtime(options.Pusher ? { Pusher: options.Pusher } : {})(context)
      : sseRealtime()(context);
}

interface Entry {
  listeners: Set<ChannelListener>;
  state: ChannelState;
  error: RealtimeError | undefined;
  stop: Unsubscribe | null;
  cancelled: boolean;
  /** A new attempt to start the adapter after a transient failure. */
  retry: ReturnType<typeof setTimeout> | null;
  retryDelay: number;
}

/** First and longest wait (ms) before starting the realtime connection again after a transient failure. */
const START_RETRY_DELAY = 500;
const MAX_START_RETRY_DELAY = 10_000;

/** Whether starting the adapter may work later: the server was unreachable or answered 5xx/429. */
function isTransient(error: unknown): boolean {
  if (isNetworkError(error)) return true;
  return isApiError(error) && (error.status >= 500 || error.status === 429 || error.status === 408);
}

export class RealtimeHub {
  private configPromise: Promise<RealtimeConfig> | null = null;
  private adapterPromise: Promise<RealtimeAdapter | null> | null = null;
  private readonly channels = new Map<string, Entry>();
  private closed = false;

  constructor(
    private readonly transport: Transport,
    private readonly option: RealtimeOption = "auto",
  ) {}

  /** `close()` was called (the client was closed): no channel delivers anything any more. */
  get isClosed(): boolean {
    return this.closed;
  }

  get enabled(): boolean {
    return this.option !== "none" && this.option !== false;
  }

  /** `GET realtime/config/`, fetched once (again after a failure). */
  config(): Promise<RealtimeConfig> {
    if (!this.configPromise) {
      this.configPromise = this.transport.request<RealtimeConfig>("GET", "realtime/config/");
      this.configPromise.catch(() => {
        this.configPromise = null;
      });
    }
    return this.configPromise;
  }

  /** The channel of the caller's live session list (`owner_channel` of the config). */
  async ownerChannel(): Promise<string | null> {
    return (await this.config()).owner_channel ?? null;
  }

  /** Forget the config (e.g. after signing in: the owner channel changes); live results that
   * follow the owner channel move to the new one. */
  resetConfig(): void {
    this.configPromise = null;
    for (const listener of [...this.identityListeners]) listener();
  }

  /** Called after `resetConfig()`; returns the function that stops it. */
  onIdentityChange(listener: () => void): Unsubscribe {
    this.identityListeners.add(listener);
    return () => {
      this.identityListeners.delete(listener);
    };
  }

  private readonly identityListeners = new Set<() => void>();

  adapter(): Promise<RealtimeAdapter | null> {
    if (!this.enabled) return Promise.resolve(null);
    if (!this.adapterPromise) {
      this.adapterPromise = (async () => {
        const config = await this.config();
        const factory = this.factoryFor(config);
        return await factory({ transport: this.transport, config });
      })();
      this.adapterPromise.catch(() => {
        this.adapterPromise = null;
      });
    }
    return this.adapterPromise;
  }

  private factoryFor(_config: RealtimeConfig): RealtimeFactory {
    const option = this.option;
    if (typeof option === "function") return option;
    if (option === "sse") return sseRealtime();
    if (option === "pusher") return pusherRealtime();
    return autoRealtime();
  }

  /** Listen to `channel`; the listener's `state` is told the channel's current state at once. */
  subscribe(channel: string, listener: ChannelListener): Unsubscribe {
    if (this.closed) throw new RealtimeError("This client was closed.", { code: "client_closed" });
    let entry = this.channels.get(channel);
    if (!entry) {
      entry = { listeners: new Set(), state: "connecting", error: undefined, stop: null, cancelled: false, retry: null, retryDelay: START_RETRY_DELAY };
      this.channels.set(channel, entry);
      this.open(channel, entry);
    }
    entry.listeners.add(listener);
    if (listener.state) callListener(listener.state.bind(listener), entry.state, entry.error);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const current = this.channels.get(channel);
      if (!current) return;
      current.listeners.delete(listener);
      if (current.listeners.size === 0) {
        current.cancelled = true;
        if (current.retry) clearTimeout(current.retry);
        current.stop?.();
        this.channels.delete(channel);
      }
    };
  }

  /**
   * Record a channel's state and tell its listeners. A listener that throws is reported and does
   * not keep the others (a conversation store on the same channel) from their events, nor tear the
   * connection down. One unsubscribed by an earlier listener is not called any more.
   */
  private setState(entry: Entry, state: ChannelState, error?: RealtimeError): void {
    entry.state = state;
    entry.error = error;
    for (const l of [...entry.listeners]) if (entry.listeners.has(l) && l.state) callListener(l.state.bind(l), state, error);
  }

  private open(channel: string, entry: Entry): void {
    const setState = (state: ChannelState, error?: RealtimeError) => this.setState(entry, state, error);
    if (!this.enabled) {
      setState("closed");
      return;
    }
    this.adapter().then(
      (adapter) => {
        if (entry.cancelled || !adapter) return;
        entry.stop = adapter.subscribe(channel, {
          event: (event: RealtimeEvent) => {
            for (const l of [...entry.listeners]) if (entry.listeners.has(l)) callListener(l.event.bind(l), event);
          },
          state: (state, error) => {
            if (!entry.cancelled) setState(state, error);
          },
        });
      },
      (error: unknown) => {
        if (entry.cancelled) return;
        const wrapped =
          error instanceof RealtimeError
            ? error
            : new RealtimeError("Could not start the realtime connection.", {
                channel,
                cause: error,
                code: "realtime_unavailable",
                ...(isApiError(error) ? { status: error.status } : {}),
              });
        if (isTransient(error) && !this.closed) {
          // The server could not be reached (down, restarting, offline): try again, like an
          // adapter reconnects, rather than leave this channel dead for good.
          setState("reconnecting", wrapped);
          entry.retry = setTimeout(() => {
            entry.retry = null;
            if (!entry.cancelled && !this.closed) this.open(channel, entry);
          }, entry.retryDelay);
          entry.retryDelay = Math.min(entry.retryDelay * 2, MAX_START_RETRY_DELAY);
          return;
        }
        setState("failed", wrapped);
        // Let a later subscribe() try again.
        this.channels.delete(channel);
      },
    );
  }

  close(): void {
    this.closed = true;
    for (const entry of this.channels.values()) {
      // Listeners (conversation stores, live querysets) learn that nothing more will arrive.
      this.setState(entry, "closed");
      entry.cancelled = true;
      if (entry.retry) clearTimeout(entry.retry);
      entry.stop?.();
    }
    this.channels.clear();
    this.adapterPromise?.then((a) => a?.close(), () => undefined);
    this.adapterPromise = null;
  }
}
