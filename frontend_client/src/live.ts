/**
 * Live querysets (`queryset.live()`): the rows of a query, fetched again after every committed
 * change of its model on a channel. Events carry primary keys only, so the result is read again
 * through the bridge (permissions apply on every read); a burst of changes makes one refetch.
 */

import { EventName, ModelOperation } from "./constants.js";
import { ConversationClientError } from "./errors.js";
import type { RealtimeHub } from "./realtime/hub.js";
import type { ChannelState, Unsubscribe } from "./realtime/types.js";
import type { QueryResult, Row } from "./types.js";

export interface LiveOptions {
  /** The channel to listen on; default: the conversation's channel when the queryset filters on
   * `session`, else the caller's session-list channel. */
  channel?: string;
  /** Called when a refetch or the realtime connection fails; the last good rows stay. */
  onError?: (error: ConversationClientError) => void;
  /** Milliseconds a burst of changes is gathered before one refetch; default 40. */
  batchWindow?: number;
}

export interface LiveSnapshot<T extends Row> extends QueryResult<T> {
  /** The realtime state of the channel the result listens on. */
  connection: ChannelState;
}

/** What a live result reads: a queryset, as `live()` gives it. */
export interface LiveSource<T extends Row> {
  readonly modelName: string;
  fetchPage(options: { signal?: AbortSignal }): Promise<QueryResult<T>>;
  /** The channel to listen on when `LiveOptions.channel` is not given. */
  defaultChannel(): Promise<string | null>;
}

export class LiveQuery<T extends Row> {
  private stopped = false;
  private unsubscribe: Unsubscribe | null = null;
  private stopIdentity: Unsubscribe | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = false;
  private again = false;
  private connection: ChannelState = "connecting";
  private readonly controller = new AbortController();
  /** The rows the listener had last (null until the first read). */
  private last: QueryResult<T> | null = null;
  /** Bumped by every (re)connection: an older one that resolves late does nothing. */
  private generation = 0;

  constructor(
    private readonly source: LiveSource<T>,
    private readonly hub: RealtimeHub,
    private readonly listener: (snapshot: LiveSnapshot<T>) => void,
    private readonly options: LiveOptions,
  ) {}

  start(): Unsubscribe {
    if (!this.options.channel) {
      // The default channel may be the owner's, which changes when the caller becomes known.
      this.stopIdentity = this.hub.onIdentityChange(() => {
        if (this.stopped) return;
        this.unsubscribe?.();
        this.unsubscribe = null;
        void this.connect();
      });
    }
    void this.connect();
    return () => this.stop();
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    let channel: string | null = this.options.channel ?? null;
    if (!channel && this.hub.enabled) {
      try {
        channel = await this.source.defaultChannel();
      } catch (error) {
        this.fail(error);
      }
    }
    if (this.stopped || generation !== this.generation) return;
    if (!channel) {
      this.connection = "closed";
      this.schedule(0);
      return;
    }
    this.unsubscribe = this.hub.subscribe(channel, {
      event: (event) => {
        if (event.name !== EventName.MODEL_CHANGE || event.payload.model !== this.source.modelName) return;
        if (!Object.values(ModelOperation).includes(event.payload.operation)) return;
        this.schedule(this.options.batchWindow ?? 40);
      },
      state: (state, error) => this.onChannelState(state, error),
    });
  }

  private onChannelState(state: ChannelState, error?: ConversationClientError): void {
    const changed = state !== this.connection;
    this.connection = state;
    let refetch = false;
    if (state === "closed" && this.hub.isClosed) {
      // The client was closed: nothing more will be read.
    } else if (state === "subscribed" || state === "closed") {
      // (Re)subscribed: events may have been missed; fetch now.
      refetch = true;
    } else if (state === "reconnecting" && !this.last) {
      // The channel cannot start yet (the hub tries again): show the rows meanwhile.
      refetch = true;
    } else if (state === "failed") {
      if (error) this.options.onError?.(error);
      refetch = true;
    }
    if (refetch) this.schedule(0);
    // No read coming to carry the new state: tell the listener with the rows it has.
    else if (changed && this.last && !this.stopped) this.listener({ ...this.last, connection: state });
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refetch();
    }, delay);
  }

  private async refetch(): Promise<void> {
    if (this.stopped) return;
    this.inFlight = true;
    this.again = false;
    try {
      const result = await this.source.fetchPage({ signal: this.controller.signal });
      if (this.stopped) return;
      this.last = result;
      this.listener({ ...result, connection: this.connection });
    } catch (error) {
      if (!this.stopped) this.fail(error);
    } finally {
      this.inFlight = false;
      if (this.again && !this.stopped) this.schedule(this.options.batchWindow ?? 40);
    }
  }

  private fail(error: unknown): void {
    if (error instanceof ConversationClientError) this.options.onError?.(error);
    else if (this.options.onError) {
      this.options.onError(new ConversationClientError(String(error), { code: "live_query_failed", cause: error }));
    }
  }

  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.controller.abort();
    this.unsubscribe?.();
    this.stopIdentity?.();
  }
}
