/**
 * ORM-style access to the models the server exposes through the bridge.
 *
 * Querysets are immutable: each of `filter`, `exclude`, `orderBy`, `limit`, `offset`, `only`,
 * `include` returns a new one, and nothing is sent until `fetch()`, `get()`, `count()`,
 * `first()`, `update()`, `delete()` or `live()`.
 */

import { BuiltinModel, SESSION_CHANNEL_PREFIX } from "./constants.js";
import { ConversationClientError, NotFoundError, UsageError, ValidationError } from "./errors.js";
import { newOperationId, type Transport } from "./http.js";
import { LiveQuery, type LiveOptions, type LiveSnapshot } from "./live.js";
import type { RealtimeHub } from "./realtime/hub.js";
import type { Unsubscribe } from "./realtime/types.js";
import type { Filter, Normalized, Pk, QueryResult, Row } from "./types.js";

export interface QueryState {
  filter: Filter;
  /** One object per `exclude()` call, each dropped on its own. */
  exclude: Filter[];
  orderBy: string[];
  limit?: number;
  offset?: number;
  fields?: string[];
  include?: string[];
}

export interface WriteOptions {
  signal?: AbortSignal;
  /** Sent as `X-Operation-Id`; one is generated when omitted. */
  operationId?: string;
}

/** What the client gives a queryset. */
export interface ModelContext {
  transport: Transport;
  realtime: RealtimeHub;
}

function isPk(value: unknown): value is Pk {
  return typeof value === "string" || typeof value === "number";
}

function checkFilter(filter: unknown, method: string): Filter {
  if (!filter || typeof filter !== "object" || Array.isArray(filter)) {
    throw new UsageError(`${method}() takes an object of {"path__lookup": value}.`, { code: "invalid_filter", field: method });
  }
  return filter as Filter;
}

export class QuerySet<T extends Row = Row> {
  constructor(
    protected readonly ctx: ModelContext,
    readonly modelName: string,
    protected readonly state: QueryState = { filter: {}, exclude: [], orderBy: [] },
  ) {}

  protected clone(patch: Partial<QueryState>): QuerySet<T> {
    return new QuerySet<T>(this.ctx, this.modelName, { ...this.state, ...patch });
  }

  /** Keep rows matching every `path__lookup: value` (AND, merged with earlier filters). */
  filter(filter: Filter): QuerySet<T> {
    return this.clone({ filter: { ...this.state.filter, ...checkFilter(filter, "filter") } });
  }

  /** Drop rows matching every `path__lookup: value` of this object (Django's `.exclude(a=1, b=2)`).
   * Chained calls each drop their own rows, as Django's `.exclude(a=1).exclude(b=2)` does. */
  exclude(filter: Filter): QuerySet<T> {
    return this.clone({ exclude: [...this.state.exclude, checkFilter(filter, "exclude")] });
  }

  /**
   * Keep rows matching `text` by the model's `search` filter: sessions whose title or whose
   * messages on the active path contain it (`client.sessions.search("invoice")`; full-text words
   * on PostgreSQL; docs/sdk.md, "Searching conversations"). At most 200 characters. A blank
   * `text` drops the search. Models without a `search` filter answer 400 `unknown_filter`.
   */
  search(text: string): QuerySet<T> {
    if (typeof text !== "string") throw new UsageError("search() takes the text to look for.", { code: "invalid_filter", field: "search" });
    const { search: _previous, ...filter } = this.state.filter;
    void _previous;
    return this.clone({ filter: text.trim() ? { ...filter, search: text } : filter });
  }

  /** Order by declared fields; `-` for descending: `orderBy("-timestamp")`. */
  orderBy(...fields: string[]): QuerySet<T> {
    return this.clone({ orderBy: fields });
  }

  limit(limit: number): QuerySet<T> {
    return this.clone({ limit });
  }

  offset(offset: number): QuerySet<T> {
    return this.clone({ offset });
  }

  /** Ask for these fields only (the pk always comes along; `only()` alone asks for the pk only). */
  only(...fields: string[]): QuerySet<T> {
    return this.clone({ fields });
  }

  /** Include declared related rows in `QueryResult.included` (one query per relation). */
  include(...relations: string[]): QuerySet<T> {
    return this.clone({ include: relations });
  }

  /** The query as the bridge receives it. */
  toJSON(): Record<string, unknown> {
    const body: Record<string, unknown> = {
      filter: this.state.filter,
      // One object as is; chained excludes as a list of objects (the bridge takes both).
      exclude: this.state.exclude.length === 1 ? this.state.exclude[0] : this.state.exclude.length ? this.state.exclude : {},
      order_by: this.state.orderBy,
    };
    if (this.state.limit !== undefined) body.limit = this.state.limit;
    if (this.state.offset !== undefined) body.offset = this.state.offset;
    if (this.state.fields) body.fields = this.state.fields;
    if (this.state.include) body.include = this.state.include;
    return body;
  }

  private get path(): string {
    return `models/${encodeURIComponent(this.modelName)}/`;
  }

  /** One page of rows with `meta` (limit, offset, has_more) and included related rows. */
  async fetchPage(options: { signal?: AbortSignal; count?: boolean } = {}): Promise<QueryResult<T>> {
    return rowsOf<T>(await this.query(options), this.modelName);
  }

  private async query(options: { signal?: AbortSignal; count?: boolean }): Promise<Normalized<Pk[]>> {
    const body = this.toJSON();
    if (options.count) body.count = true;
    return this.ctx.transport.request<Normalized<Pk[]>>("POST", `${this.path}query/`, {
      body,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** The rows. */
  async fetch(options: { signal?: AbortSignal } = {}): Promise<T[]> {
    return (await this.fetchPage(options)).rows;
  }

  /** The first row, or null. */
  async first(options: { signal?: AbortSignal } = {}): Promise<T | null> {
    return (await this.limit(1).fetch(options))[0] ?? null;
  }

  /** The row with this pk (a number or a string, whatever the pk field is called), or the only
   * row matching (optionally after one more filter); NotFoundError when none, a ValidationError
   * (`multiple_objects`) when several. */
  async get(pkOrFilter?: Pk | Filter, options: { signal?: AbortSignal } = {}): Promise<T> {
    // `pk` is every model's primary key on the server, whatever its name (docs/protocol.md).
    const filter = isPk(pkOrFilter) ? { pk: pkOrFilter } : pkOrFilter;
    const qs = filter ? this.filter(filter) : this;
    const rows = await qs.limit(2).fetch(options);
    if (rows.length === 0) {
      throw new NotFoundError({
        status: 404,
        errors: [{ code: "not_found", message: `No ${this.modelName} matches the query.` }],
        method: "POST",
        url: this.ctx.transport.url(`${this.path}query/`),
      });
    }
    if (rows.length > 1) {
      throw new ValidationError({
        status: 400,
        errors: [{ code: "multiple_objects", message: `More than one ${this.modelName} matches the query.` }],
        method: "POST",
        url: this.ctx.transport.url(`${this.path}query/`),
      });
    }
    return rows[0] as T;
  }

  /** How many rows match (ignores limit and offset). */
  async count(options: { signal?: AbortSignal } = {}): Promise<number> {
    const page = await this.clone({ limit: 0, offset: 0, fields: [] }).fetchPage({ ...options, count: true });
    const count = page.meta.count;
    if (typeof count !== "number") {
      throw new ConversationClientError("The server did not return a count.", { code: "count_unsupported" });
    }
    return count;
  }

  /**
   * The pks of every row of this queryset: all pages when no `limit()` was set (collected before
   * any write, so writes that move rows out of the filter skip none), else that one page.
   */
  async pks(options: { signal?: AbortSignal } = {}): Promise<Pk[]> {
    // The answer's `data` is the pks, whatever the pk is called; `only()` asks for nothing else.
    const ids = this.only() as QuerySet<T>;
    if (this.state.limit !== undefined) return dataOf(await ids.query(options));
    // Pages of the server's default size; it ends every ordering with the pk, so pages neither
    // overlap nor skip rows.
    const out: Pk[] = [];
    const seen = new Set<string>();
    let offset = this.state.offset ?? 0;
    for (;;) {
      const answer = await ids.offset(offset).query(options);
      const page = dataOf(answer);
      for (const pk of page) {
        if (!seen.has(String(pk))) {
          seen.add(String(pk));
          out.push(pk);
        }
      }
      if (!answer.meta?.has_more || page.length === 0) return out;
      offset += page.length;
    }
  }

  /** Update every row of this queryset (every page, or the page of its `limit()`) with
   * `values`, one request per row under one operation id; the new rows. */
  async update(values: Partial<T> & Record<string, unknown>, options: WriteOptions = {}): Promise<T[]> {
    const pks = await this.pks(options.signal ? { signal: options.signal } : {});
    const operationId = options.operationId ?? newOperationId();
    const out: T[] = [];
    for (const pk of pks) out.push(await updateRow<T>(this.ctx, this.modelName, pk, values, { ...options, operationId }));
    return out;
  }

  /** Delete every row of this queryset (every page, or the page of its `limit()`), one
   * request per row under one operation id; how many were deleted. */
  async delete(options: WriteOptions = {}): Promise<number> {
    const pks = await this.pks(options.signal ? { signal: options.signal } : {});
    const operationId = options.operationId ?? newOperationId();
    for (const pk of pks) await deleteRow(this.ctx, this.modelName, pk, { ...options, operationId });
    return pks.length;
  }

  /**
   * Keep the result current: `listener` gets the rows now and again after every committed change
   * to this model on the channel (bursts are gathered into one refetch, permissions apply on every
   * read). Returns the function that stops it.
   */
  live(listener: (snapshot: LiveSnapshot<T>) => void, options: LiveOptions = {}): Unsubscribe {
    return new LiveQuery<T>(this, this.ctx.realtime, listener, options).start();
  }

  /** The channel `live()` listens on by default. */
  async defaultChannel(): Promise<string | null> {
    const session = this.state.filter.session ?? this.state.filter.session_id ?? this.state.filter["session__id"];
    if (typeof session === "string") return `${SESSION_CHANNEL_PREFIX}${session}`;
    const sessionId = this.state.filter.id ?? this.state.filter.pk;
    if (this.modelName === BuiltinModel.SESSION && typeof sessionId === "string") {
      return `${SESSION_CHANNEL_PREFIX}${sessionId}`;
    }
    return this.ctx.realtime.ownerChannel();
  }
}

/** `client.sessions`, `client.messages`...: a queryset over all rows plus single-row writes. */
export class ModelManager<T extends Row = Row, C = Partial<T>> extends QuerySet<T> {
  constructor(ctx: ModelContext, modelName: string) {
    super(ctx, modelName);
  }

  /** All rows (the caller may see). */
  all(): QuerySet<T> {
    return new QuerySet<T>(this.ctx, this.modelName, this.state);
  }

  /** Create a row; the new row as the server stored it. */
  async create(values: C & Record<string, unknown>, options: WriteOptions = {}): Promise<T> {
    const answer = await this.ctx.transport.request<Normalized<Pk>>("POST", `models/${encodeURIComponent(this.modelName)}/`, {
      body: values,
      operationId: options.operationId ?? newOperationId(),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return singleRow<T>(answer, this.modelName);
  }

  /** Update one row by pk (or, without a pk, every row of the queryset). */
  override update(values: Partial<T> & Record<string, unknown>, options?: WriteOptions): Promise<T[]>;
  override update(pk: Pk, values: Partial<T> & Record<string, unknown>, options?: WriteOptions): Promise<T>;
  override update(a: unknown, b?: unknown, c?: unknown): Promise<T> | Promise<T[]> {
    if (isPk(a)) {
      return updateRow<T>(this.ctx, this.modelName, a, b as Record<string, unknown>, (c as WriteOptions) ?? {});
    }
    return super.update(a as Record<string, unknown> & Partial<T>, (b as WriteOptions) ?? {});
  }

  /** Delete one row by pk (or, without a pk, every row of the queryset). */
  override delete(options?: WriteOptions): Promise<number>;
  override delete(pk: Pk, options?: WriteOptions): Promise<number>;
  override async delete(a?: unknown, b?: unknown): Promise<number> {
    if (isPk(a)) {
      await deleteRow(this.ctx, this.modelName, a, (b as WriteOptions) ?? {});
      return 1;
    }
    return super.delete((a as WriteOptions) ?? {});
  }
}

function rowPath(model: string, pk: Pk): string {
  return `models/${encodeURIComponent(model)}/${encodeURIComponent(String(pk))}/`;
}

async function updateRow<T extends Row>(
  ctx: ModelContext,
  model: string,
  pk: Pk,
  values: Record<string, unknown>,
  options: WriteOptions,
): Promise<T> {
  const answer = await ctx.transport.request<Normalized<Pk>>(
    "PATCH",
    rowPath(model, pk),
    { body: values, operationId: options.operationId ?? newOperationId(), ...(options.signal ? { signal: options.signal } : {}) },
  );
  return singleRow<T>(answer, model);
}

async function deleteRow(ctx: ModelContext, model: string, pk: Pk, options: WriteOptions): Promise<void> {
  await ctx.transport.request<void>("DELETE", rowPath(model, pk), {
    operationId: options.operationId ?? newOperationId(),
    ...(options.signal ? { signal: options.signal } : {}),
  });
}

function dataOf(answer: Normalized<Pk[]>): Pk[] {
  return Array.isArray(answer?.data) ? answer.data : [];
}

/** Rows of a normalized list answer, in the server's order. */
export function rowsOf<T extends Row>(answer: Normalized<Pk[]>, model: string): QueryResult<T> {
  const table = answer.included?.[model] ?? {};
  const pks = dataOf(answer);
  const rows: T[] = [];
  for (const pk of pks) {
    const row = table[String(pk)];
    if (row) rows.push(row as T);
  }
  return { rows, meta: answer.meta ?? {}, included: answer.included ?? {} };
}

/** The row of a normalized single-row answer. */
export function singleRow<T extends Row>(answer: Normalized<Pk>, model: string): T {
  const row = answer?.included?.[model]?.[String(answer.data)];
  if (!row) {
    throw new ConversationClientError(`The server's answer does not include the ${model} row.`, { code: "malformed_answer" });
  }
  return row as T;
}
