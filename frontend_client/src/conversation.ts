/**
 * One conversation as a store: persisted messages, the reply being streamed, widgets and files
 * (with their extraction progress) merged into one immutable snapshot.
 *
 * Built the nanostores way, state apart from I/O:
 *
 * - `store/reducer.ts`: the pure reducer, `(state, action) -> state` plus the rows to read; every
 *   way an event changes the state is there, tested without a server;
 * - `store/view.ts`: the public snapshot of a state;
 * - effects, each its own module: `store/fetcher.ts` (rows read in batches), `store/sync.ts`
 *   (full reads with events held meanwhile, polling without a channel), `store/sends.ts`
 *   (ordered sends), `store/uploads.ts`, `store/approvals.ts` (answers to tool steps awaiting
 *   approval), `store/versions.ts` (regenerate, edit, switch versions, feedback);
 * - this class wires them to the realtime channel and tells the listeners.
 *
 * How it stays correct (docs/protocol.md, "Resuming a stream"): it subscribes to the session's
 * channel first and holds events, then reads the rows, then applies the held events; the reducer
 * rebuilds each streaming message from its row and its `text_chunk` events by `offset`.
 *
 * It shows the conversation's active path (docs/sdk.md, "Versions"): rows that leave it (another
 * version was chosen, here or elsewhere) leave the snapshot, rows that join it appear in order.
 */

import { SESSION_CHANNEL_PREFIX } from "./constants.js";
import { ConversationClientError, toClientError, UsageError } from "./errors.js";
import { newOperationId } from "./http.js";
import { callListener } from "./internal/report.js";
import type { ChannelState, Unsubscribe } from "./realtime/types.js";
import { answerApproval } from "./store/approvals.js";
import { RowFetcher } from "./store/fetcher.js";
import type { ConversationDeps, StoreHost } from "./store/host.js";
import { reduce, type StoreAction } from "./store/reducer.js";
import { Sender, type SendOptions } from "./store/sends.js";
import { initialState, type ConversationState, type StoreState, type UploadState } from "./store/state.js";
import { Syncer } from "./store/sync.js";
import { Uploader } from "./store/uploads.js";
import { Versions, type EditOptions, type Rating, type VersionOptions } from "./store/versions.js";
import { summarize, view } from "./store/view.js";
import type { CancelResult, FileRow, JsonObject, MessageRow, RealtimeEvent, WidgetRow } from "./types.js";

export interface ConversationOptions {
  /** How many of the latest messages are read; default 200. */
  history?: number;
}

type Listener = (state: ConversationState) => void;

export class Conversation {
  readonly sessionId: string;
  readonly channel: string;
  private readonly host: StoreHost;
  private readonly listeners = new Set<Listener>();
  /** Pending `waitFor()` calls, rejected by `close()`. */
  private readonly waiters = new Set<() => void>();
  private readonly fetcher: RowFetcher;
  private readonly syncer: Syncer;
  private readonly uploader: Uploader;
  private readonly sender: Sender;
  private readonly versionOps: Versions;
  private state: StoreState;
  /** The snapshot of `state`, built when first asked for. */
  private snapshot: ConversationState | null = null;
  private notifyScheduled = false;
  private unsubscribe: Unsubscribe | null = null;
  private closed = false;

  constructor(sessionId: string, deps: ConversationDeps, options: ConversationOptions = {}) {
    if (typeof sessionId !== "string" || !sessionId) throw new TypeError("conversation(sessionId) needs the session id.");
    this.sessionId = sessionId;
    this.channel = `${SESSION_CHANNEL_PREFIX}${sessionId}`;
    this.state = initialState(sessionId);
    this.host = {
      sessionId,
      deps,
      state: () => this.state,
      snapshot: () => this.getState(),
      dispatch: (action) => this.dispatch(action),
      isClosed: () => this.closed,
    };
    this.fetcher = new RowFetcher(this.host);
    this.syncer = new Syncer(this.host, options.history ?? 200);
    this.uploader = new Uploader(this.host);
    this.sender = new Sender(this.host, this.uploader, () => void this.syncer.run());
    this.versionOps = new Versions(this.host, this.uploader);
    this.unsubscribe = deps.realtime.subscribe(this.channel, {
      event: (event) => this.onEvent(event),
      state: (state, error) => this.onChannelState(state, error),
    });
  }

  /** The current snapshot (a new object after every change). */
  getState(): ConversationState {
    if (!this.snapshot) this.snapshot = view(this.state);
    return this.snapshot;
  }

  /**
   * Call `listener` now and after every change; returns the function that stops it. A listener
   * that throws is reported (`reportError`, else `console.error`) and does not keep the other
   * listeners from running; one that throws on this first call is not subscribed.
   */
  subscribe(listener: Listener): Unsubscribe {
    this.listeners.add(listener);
    try {
      listener(this.getState());
    } catch (error) {
      this.listeners.delete(listener);
      throw error;
    }
    return () => {
      this.listeners.delete(listener);
    };
  }

  /**
   * Resolve once `predicate(state)` holds (checked now and after every change). Rejects with the
   * predicate's error if it throws, with code `timeout` after `timeout` ms, and with code `closed`
   * when the store is closed first.
   */
  waitFor(predicate: (state: ConversationState) => boolean, options: { timeout?: number } = {}): Promise<ConversationState> {
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      let settled = false;
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        this.listeners.delete(check);
        this.waiters.delete(onClose);
        fn();
      };
      const onClose = () => finish(() => reject(new ConversationClientError("The conversation was closed.", { code: "closed" })));
      function check(state: ConversationState): void {
        let holds: boolean;
        try {
          holds = predicate(state);
        } catch (error) {
          finish(() => reject(error));
          return;
        }
        if (holds) finish(() => resolve(state));
      }
      check(this.getState());
      if (settled) return;
      if (this.closed) return onClose();
      this.waiters.add(onClose);
      this.listeners.add(check);
      if (options.timeout) {
        timer = setTimeout(
          () => finish(() => reject(new ConversationClientError(`waitFor timed out after ${options.timeout} ms; ${summarize(this.getState())}.`, { code: "timeout" }))),
          options.timeout,
        );
      }
    });
  }

  /**
   * Send a user message, uploading `files` first (progress in `state.uploads`). The message shows
   * at once as `local`; when sending fails it stays with `sendError` so nothing is lost. An empty
   * message is refused with a `UsageError` before anything is sent.
   */
  async send(text: string, options: SendOptions = {}): Promise<MessageRow> {
    return this.sender.send(text, options, newOperationId());
  }

  /**
   * Send again a message that could not be sent (its `sendError` is set), under the operation id
   * of its first try: when the server did store it (only its answer was lost), the bridge answers
   * with that message instead of storing a second one, and no second turn starts. Files already
   * uploaded are not uploaded again.
   */
  async retry(localId: string, options: Omit<SendOptions, "files"> = {}): Promise<MessageRow> {
    const row = this.state.rows.get(localId);
    if (!row?.local || !row.sendError || !row.operationId) {
      throw new UsageError(`No message that could not be sent has the id ${localId}.`, { code: "not_found", field: "localId" });
    }
    this.dispatch({ type: "localRemoved", localId });
    return this.sender.send(row.content, { ...options, files: row.attachmentsToSend ?? row.files }, row.operationId);
  }

  /** Upload a file into this conversation; progress and extraction show in `state.uploads`. */
  upload(file: Blob, options: { signal?: AbortSignal; onProgress?: (upload: UploadState) => void } = {}): Promise<FileRow> {
    return this.uploader.upload(file, options);
  }

  /** Forget finished or failed uploads (e.g. once the message that used them was sent). */
  clearUploads(options: { failedOnly?: boolean } = {}): void {
    this.dispatch({ type: "uploadsCleared", failedOnly: !!options.failedOnly });
  }

  /** Remove a local message that could not be sent (after showing its error). */
  discard(localId: string): void {
    if (this.state.rows.get(localId)?.local) this.dispatch({ type: "localRemoved", localId });
  }

  /**
   * Ask the agent to stop: the running turn ends `cancelled` with its partial text kept. Messages
   * still being sent are stopped too: one still uploading (or waiting for an earlier one) is not
   * sent (it stays with `sendError` code `aborted`, and its send() rejects); one the server is
   * already storing is cancelled once it is stored.
   */
  async cancel(): Promise<CancelResult> {
    await this.sender.stop();
    try {
      return await this.host.deps.transport.request<CancelResult>("POST", "cancel/", { body: { session_id: this.sessionId } });
    } catch (error) {
      const wrapped = toClientError(error);
      this.dispatch({ type: "error", error: wrapped });
      throw wrapped;
    }
  }

  /** Change a widget's presentation state (`display_data`), e.g. the slot a person picked. */
  async updateWidget(widgetId: string, displayData: JsonObject): Promise<WidgetRow> {
    const row = await this.host.deps.widgets.update(widgetId, { display_data: displayData });
    this.dispatch({ type: "widgetSaved", row });
    return row;
  }

  /**
   * Approve a tool step awaiting approval (`state.pendingApprovals`, `step.id`): the server runs
   * the tool when the turn resumes, and the same reply goes on. Resolves with the step's row;
   * rejects with the server's typed error, e.g. a `ConflictError` with code
   * `approval_already_answered` (answered elsewhere, or expired) or `not_awaiting_approval`, a
   * `NotFoundError` for a step that is not the caller's.
   */
  approve(stepId: string): Promise<MessageRow> {
    return answerApproval(this.host, stepId, { approved: true });
  }

  /**
   * Reject a tool step awaiting approval: the tool does not run, the model is told it was refused
   * (with `reason`, up to 2,000 characters) and the reply goes on. Errors as for `approve()`.
   */
  reject(stepId: string, reason?: string): Promise<MessageRow> {
    return answerApproval(this.host, stepId, reason === undefined ? { approved: false } : { approved: false, reason });
  }

  /**
   * Answer a user message again (docs/sdk.md, "Versions"): `messageId` is the user message or its
   * reply (the agent message, a tool step). The server makes a new version of the user message
   * (same text and files) on the active path and runs its turn from the Context the first one
   * started from; the earlier reply stays as the other version. Resolves with the new user
   * message (`pending`); the reply streams in as for a send. Rejects with the typed error: a
   * `ConflictError` `turn_in_progress` (the agent refuses a second turn while one runs) or
   * `session_not_active`, a `ValidationError` `not_a_user_message`, a `NotFoundError` for a
   * message that is not the caller's.
   */
  regenerate(messageId: string, options?: VersionOptions): Promise<MessageRow> {
    return this.versionOps.regenerate(messageId, options);
  }

  /**
   * A new version of the user message `messageId` with `content` (and `options.files`: omitted,
   * it keeps the message's files), answered again from the Context the original's turn started
   * from. Resolves with the new user message; errors as for `regenerate()`. An empty text is
   * refused with a `UsageError` before anything is sent.
   */
  edit(messageId: string, content: string, options?: EditOptions): Promise<MessageRow> {
    return this.versionOps.edit(messageId, content, options);
  }

  /**
   * Every version of the user message `messageId` names (it, or a reply to it), in
   * `version_index` order, whether on the active path or not: one query, none for a message the
   * store shows with `versionCount` 1.
   */
  versions(messageId: string, options?: { signal?: AbortSignal }): Promise<MessageRow[]> {
    return this.versionOps.versions(messageId, options);
  }

  /**
   * Make the version `messageId` (a user message of `versions()`, or a reply to one) the active
   * one: the conversation continues from it, with what followed it when it was last chosen.
   * Resolves with the user message. Refused with a `ConflictError` `turn_in_progress` while a
   * turn of the conversation runs.
   */
  setActiveVersion(messageId: string, options?: VersionOptions): Promise<MessageRow> {
    return this.versionOps.setActiveVersion(messageId, options);
  }

  /**
   * Rate an agent reply: `"up"`, `"down"`, or null to withdraw the rating (and its comment);
   * `comment` up to 2,000 characters. Resolves with the reply's row. A message that is not an
   * agent reply is refused with a `ValidationError` `not_an_agent_reply`.
   */
  feedback(messageId: string, rating: Rating, comment?: string, options?: VersionOptions): Promise<MessageRow> {
    return this.versionOps.feedback(messageId, rating, comment, options);
  }

  /** Re-read everything from the server. */
  refresh(): Promise<void> {
    return this.syncer.run();
  }

  clearError(): void {
    this.dispatch({ type: "error", error: null });
  }

  /**
   * Stop listening; the store keeps its last state. Pending `waitFor()` calls reject (code
   * `closed`); requests already sent still finish but change nothing anyone sees.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    this.fetcher.stop();
    this.syncer.stop();
    this.listeners.clear();
    for (const onClose of [...this.waiters]) onClose();
  }

  /** The one way the state changes: the reducer's next state, the rows it wants read, listeners told. */
  private dispatch(action: StoreAction): void {
    const step = reduce(this.state, action);
    this.state = step.state;
    this.snapshot = null;
    for (const read of step.reads) this.fetcher.want(read);
    this.notify();
  }

  /** Tell the listeners once the current task's changes are all made (one state per microtask). */
  private notify(): void {
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      if (this.closed) return;
      const state = this.getState();
      for (const listener of [...this.listeners]) {
        // One that an earlier listener unsubscribed (or closed the store) is not called any more.
        if (this.listeners.has(listener)) callListener(listener, state);
      }
      this.syncer.poll();
    });
  }

  private onEvent(event: RealtimeEvent): void {
    if (this.closed || this.syncer.hold(event)) return;
    this.dispatch({ type: "event", event });
  }

  private onChannelState(state: ChannelState, error?: ConversationClientError): void {
    this.dispatch({ type: "connection", state, error });
    // The client was closed: read nothing more.
    if (state === "closed" && this.host.deps.realtime.isClosed) return;
    // Not connected yet (the realtime connection cannot start or keeps dropping): still show the
    // conversation; the rows are read again once it is subscribed.
    if (state === "subscribed" || state === "closed" || state === "failed" || (state === "reconnecting" && !this.state.loaded)) {
      void this.syncer.run();
    }
  }
}
