/**
 * A live queryset as the React and Vue bindings show it: its rows, whether the first read is still
 * running, the last error, and `refetch()`. Nothing starts until a component subscribes (a render
 * has no side effect); the live result stops when the last one unsubscribes.
 *
 * Which queryset is "the same" from one render to the next (a component builds a new queryset
 * object every time it renders) is decided by `liveKey()`: the client it belongs to, its model, its
 * query (`toJSON()`, the body the bridge receives, compared as JSON text) and the live options
 * (`channel`, `batchWindow`, `key`). A source that is not a queryset (anything with a `live()`
 * method) is the same only while it is the same object.
 */

import { ConversationClientError } from "../errors.js";
import type { LiveOptions, LiveSnapshot } from "../live.js";
import type { ChannelState, Unsubscribe } from "../realtime/types.js";
import type { QueryMeta, QueryResult, Row } from "../types.js";
import { FrameValue } from "./frame.js";

/** What `useLive()` takes: a queryset (`client.sessions.filter(...)`), or any object with the same
 * `live()` method. With `fetchPage()` too, `refetch()` reads it directly. */
export interface LiveInput<T extends Row = Row> {
  live(listener: (snapshot: LiveSnapshot<T>) => void, options?: LiveOptions): Unsubscribe;
  fetchPage?(options: { signal?: AbortSignal }): Promise<QueryResult<T>>;
  readonly modelName?: string;
  toJSON?(): unknown;
}

/** `useLive()`'s options: `LiveOptions` without `onError` (the error is in the result), plus `key`. */
export interface UseLiveOptions {
  /** The channel to listen on (see `LiveOptions.channel`). */
  channel?: string;
  /** Milliseconds a burst of changes is gathered before one refetch; default 40. */
  batchWindow?: number;
  /** Added to the source's identity: a new key starts a new live result even for the same query. */
  key?: string;
}

/** What `useLive()` gives. */
export interface LiveView<T extends Row = Row> {
  /** The rows of the last read (empty until the first one). */
  rows: T[];
  meta: QueryMeta & Record<string, unknown>;
  /** Related rows by model name and pk (see `include()`). */
  included: Record<string, Record<string, Row>>;
  /** The realtime state of the channel the result listens on. */
  connection: ChannelState;
  /** True until the first read has answered (or failed). */
  loading: boolean;
  /** The last failure (a read, the realtime connection); the last good rows stay. Cleared by the
   * next good read. */
  error: ConversationClientError | null;
  /** Read the rows again now (e.g. after a write made with realtime off). */
  refetch: () => Promise<void>;
}

/** Client contexts numbered, so a key can tell two clients' identical querysets apart. */
const contexts = new WeakMap<object, number>();
let lastContext = 0;

/** The identity of a live source from one render to the next (see the module's docstring). */
export function liveKey(source: LiveInput, options: UseLiveOptions = {}): string | LiveInput {
  if (typeof source?.toJSON !== "function" || typeof source.modelName !== "string") return source;
  // A queryset's client: its `ctx` (transport and realtime hub), protected in `QuerySet`.
  const ctx = (source as unknown as { ctx?: unknown }).ctx;
  let client = 0;
  if (ctx && typeof ctx === "object") {
    client = contexts.get(ctx) ?? 0;
    if (!client) contexts.set(ctx, (client = ++lastContext));
  }
  return JSON.stringify([client, source.modelName, source.toJSON(), options.channel ?? null, options.batchWindow ?? null, options.key ?? null]);
}

function asClientError(error: unknown): ConversationClientError {
  return error instanceof ConversationClientError ? error : new ConversationClientError(String(error), { code: "live_query_failed", cause: error });
}

/** One live source shown by one component. */
export class LiveBinding<T extends Row = Row> {
  readonly value: FrameValue<LiveView<T>>;
  private state: LiveView<T>;
  private stop: Unsubscribe | null = null;
  private users = 0;
  /** Bumped by every answer applied: a `refetch()` overtaken by a live read does not apply. */
  private version = 0;

  constructor(
    private readonly source: LiveInput<T>,
    private readonly options: UseLiveOptions = {},
  ) {
    this.state = { rows: [], meta: {}, included: {}, connection: "connecting", loading: true, error: null, refetch: () => this.refetch() };
    this.value = new FrameValue(() => this.state);
  }

  private set(patch: Partial<LiveView<T>>): void {
    this.state = { ...this.state, ...patch };
    this.value.changed();
  }

  /** Start the live result with the first subscriber, stop it after the last. */
  subscribe(listener: () => void): () => void {
    const stopValue = this.value.subscribe(listener);
    this.users += 1;
    if (this.users === 1) this.start();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      stopValue();
      this.users -= 1;
      if (this.users === 0) {
        this.stop?.();
        this.stop = null;
      }
    };
  }

  private start(): void {
    const { channel, batchWindow } = this.options;
    const options: LiveOptions = {
      onError: (error) => this.set({ error, loading: false }),
      ...(channel !== undefined ? { channel } : {}),
      ...(batchWindow !== undefined ? { batchWindow } : {}),
    };
    try {
      this.stop = this.source.live((snapshot) => {
        this.version += 1;
        const { rows, meta, included, connection } = snapshot;
        this.set({ rows, meta, included, connection, loading: false, error: null });
      }, options);
    } catch (error) {
      this.set({ error: asClientError(error), loading: false });
    }
  }

  private async refetch(): Promise<void> {
    if (typeof this.source.fetchPage !== "function") {
      // Not a queryset: start the live result again; it reads at once.
      if (this.users > 0) {
        this.stop?.();
        this.start();
      }
      return;
    }
    const version = this.version;
    try {
      const { rows, meta, included } = await this.source.fetchPage({});
      if (version !== this.version) return;
      this.version += 1;
      this.set({ rows, meta, included, loading: false, error: null });
    } catch (error) {
      const wrapped = asClientError(error);
      this.set({ error: wrapped, loading: false });
      throw wrapped;
    }
  }
}
