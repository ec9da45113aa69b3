/**
 * pusher-js adapter: hosted Pusher or any Pusher-protocol server (soketi, self-hosted).
 *
 * Private channels are authorised through the project's `realtime/auth/` endpoint with the
 * client's own headers (session cookie + CSRF token, or the anonymous id of a stateless client).
 * pusher-js is an optional peer dependency: pass the constructor (`pusherRealtime({ Pusher })`),
 * or let the adapter import `pusher-js` when it is installed.
 */

import { EventName } from "../constants.js";
import { isApiError, RealtimeError } from "../errors.js";
import { callListener } from "../internal/report.js";
import type { RealtimeEvent } from "../types.js";
import type { ChannelListener, ChannelState, RealtimeAdapter, RealtimeContext, RealtimeFactory, Unsubscribe } from "./types.js";

/** The part of pusher-js's API the adapter uses. */
export interface PusherLike {
  subscribe(channel: string): PusherChannelLike;
  unsubscribe(channel: string): void;
  disconnect(): void;
  connection: { bind(event: string, callback: (data: unknown) => void): void; state?: string };
}
export interface PusherChannelLike {
  bind_global(callback: (event: string, data: unknown) => void): void;
  unbind_global(callback?: (event: string, data: unknown) => void): void;
}
export type PusherConstructor = new (key: string, options: Record<string, unknown>) => PusherLike;

export interface PusherAdapterOptions {
  /** The pusher-js constructor; default: `import("pusher-js")`. */
  Pusher?: PusherConstructor;
  /** Extra pusher-js options, merged over the ones derived from the server's config. */
  options?: Record<string, unknown>;
}

const KNOWN_EVENTS = new Set<string>(Object.values(EventName));

/** `realtime: pusherRealtime({ Pusher })` — use pusher-js with the server's Pusher settings. */
export function pusherRealtime(options: PusherAdapterOptions = {}): RealtimeFactory {
  return async (context) => {
    const Pusher = options.Pusher ?? (await loadPusher());
    return new PusherAdapter(context, Pusher, options.options ?? {});
  };
}

async function loadPusher(): Promise<PusherConstructor> {
  try {
    const name = "pusher-js";
    const mod = (await import(/* @vite-ignore */ name)) as { default?: unknown };
    let ctor: unknown = mod.default ?? mod;
    // CommonJS interop may nest the class one level deeper.
    if (typeof ctor !== "function" && ctor && typeof (ctor as { default?: unknown }).default === "function") {
      ctor = (ctor as { default: unknown }).default;
    }
    if (typeof ctor !== "function") throw new TypeError("pusher-js did not export a constructor");
    return ctor as PusherConstructor;
  } catch (error) {
    throw new RealtimeError(
      "The server uses Pusher but pusher-js could not be loaded: install it (npm install pusher-js) or pass createClient({ realtime: pusherRealtime({ Pusher }) }).",
      { cause: error, code: "pusher_missing" },
    );
  }
}

export class PusherAdapter implements RealtimeAdapter {
  readonly name = "pusher";
  readonly pusher: PusherLike;
  private readonly listeners = new Map<string, ChannelListener>();
  private readonly refused = new Set<string>();

  constructor(
    private readonly context: RealtimeContext,
    Pusher: PusherConstructor,
    extra: Record<string, unknown> = {},
  ) {
    const config = context.config;
    if (!config.key) throw new RealtimeError("The server's realtime config has no Pusher key.", { code: "pusher_misconfigured" });
    const secure = config.force_tls ?? (config.scheme ? ["https", "wss"].includes(config.scheme) : true);
    const options: Record<string, unknown> = {
      cluster: config.cluster || "mt1",
      forceTLS: secure,
      disableStats: true,
      enabledTransports: ["ws", "wss"],
      channelAuthorization: {
        customHandler: (
          params: { socketId: string; channelName: string },
          callback: (error: Error | null, data: { auth: string } | null) => void,
        ) => {
          this.authorize(params.socketId, params.channelName).then(
            (data) => callback(null, data),
            (error: unknown) => callback(error instanceof Error ? error : new Error(String(error)), null),
          );
        },
      },
    };
    if (config.host) {
      options.wsHost = config.host;
      if (config.port) {
        options.wsPort = config.port;
        options.wssPort = config.port;
      }
    }
    this.pusher = new Pusher(config.key, { ...options, ...extra });
    this.pusher.connection.bind("state_change", (change) => {
      const current = (change as { current?: string }).current;
      const state: ChannelState | null =
        current === "connecting" || current === "unavailable" ? "reconnecting" : current === "failed" ? "failed" : null;
      if (!state) return;
      for (const [channel, listener] of this.listeners) {
        if (!this.refused.has(channel)) listener.state?.(state);
      }
    });
  }

  private async authorize(socketId: string, channelName: string): Promise<{ auth: string }> {
    try {
      return await this.context.transport.request<{ auth: string }>("POST", this.context.config.auth_endpoint, {
        body: { socket_id: socketId, channel_name: channelName },
      });
    } catch (error) {
      this.refused.add(channelName);
      const status = isApiError(error) ? error.status : undefined;
      const realtimeError = new RealtimeError(`Subscribing to ${channelName} was refused.`, {
        channel: channelName,
        cause: error,
        ...(status !== undefined ? { status } : {}),
      });
      this.listeners.get(channelName)?.state?.("failed", realtimeError);
      throw realtimeError;
    }
  }

  subscribe(channel: string, listener: ChannelListener): Unsubscribe {
    this.listeners.set(channel, listener);
    this.refused.delete(channel);
    listener.state?.("connecting");
    const handler = (event: string, data: unknown) => {
      if (event === "pusher:subscription_succeeded") {
        listener.state?.("subscribed");
      } else if (event === "pusher:subscription_error") {
        if (!this.refused.has(channel)) {
          this.refused.add(channel);
          const status = (data as { status?: number } | null)?.status;
          listener.state?.(
            "failed",
            new RealtimeError(`Subscribing to ${channel} failed.`, { channel, ...(status ? { status } : {}) }),
          );
        }
      } else if (KNOWN_EVENTS.has(event) && data && typeof data === "object") {
        callListener(listener.event.bind(listener), { name: event, channel, payload: data } as RealtimeEvent);
      }
    };
    const sub = this.pusher.subscribe(channel);
    sub.bind_global(handler);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      sub.unbind_global(handler);
      this.pusher.unsubscribe(channel);
      this.listeners.delete(channel);
      listener.state?.("closed");
    };
  }

  close(): void {
    this.pusher.disconnect();
    for (const listener of this.listeners.values()) listener.state?.("closed");
    this.listeners.clear();
  }
}
