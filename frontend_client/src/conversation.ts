/**
 * One conversation as a store: persisted messages, the reply being streamed, widgets and files
 * (with their extraction progress) merged into one immutable snapshot.
 *
 * How it stays correct (docs/protocol.md, "Resuming a stream"): it subscribes to the session's
 * channel first and buffers events, then reads the rows, then rebuilds each streaming message from
 * its row and its `text_chunk` events by `offset` (a `StreamAssembler` per message): known text is
 * dropped, text that extends it is appended (cut where the row ends), and a chunk beyond the known
 * text (a gap) is held while the row is read again, every `GAP_RETRY_DELAY` ms, until it catches
 * up. The same happens after every reconnect. A finished row is the whole truth.
 */

import {
  EventName,
  FINISHED_STATUSES,
  MessageType,
  ModelOperation,
  ProcessingStatus,
  SESSION_CHANNEL_PREFIX,
} from "./constants.js";
import { ConversationClientError, isConversationClientError, isRealtimeError, NetworkError, ValidationError } from "./errors.js";
import { newOperationId, type UploadProgress } from "./http.js";
import { callListener } from "./internal/report.js";
import { StreamAssembler } from "./stream.js";
import type { FileManager } from "./files.js";
import type { ModelManager } from "./queryset.js";
import type { RealtimeHub } from "./realtime/hub.js";
import type { ChannelState, Unsubscribe } from "./realtime/types.js";
import type {
  CancelResult,
  FileRow,
  JsonObject,
  MessageRow,
  RealtimeEvent,
  SessionRow,
  TextChunkEvent,
  WidgetRow,
} from "./types.js";
import type { Transport } from "./http.js";

/** A message as the store shows it. */
export interface ConversationMessage extends MessageRow {
  /** The widget of a `widget` message, once known. */
  widget: WidgetRow | null;
  /** The file rows of the message that the store knows. */
  attachments: FileRow[];
  /** True while the agent streams this message's text. */
  streaming: boolean;
  /** True for a user message shown before the server confirmed it. */
  local: boolean;
  /** Why a local message could not be sent (it stays, so nothing typed is lost). */
  sendError: ConversationClientError | null;
}

export interface UploadState {
  /** A local key for the upload. */
  key: string;
  filename: string;
  size: number;
  loaded: number;
  total: number;
  status: "uploading" | "uploaded" | "failed";
  /** The file row once uploaded; its `extraction_status` follows the server. */
  file: FileRow | null;
  error: ConversationClientError | null;
}

/**
 * - `loading`: the first read is running;
 * - `idle`: nothing is happening;
 * - `sending`: a message or its files are being sent;
 * - `waiting`: the server has the message, the agent has not started streaming yet;
 * - `streaming`: the agent is streaming its reply.
 */
export type ConversationPhase = "loading" | "idle" | "sending" | "waiting" | "streaming";

export interface ConversationState {
  sessionId: string;
  session: SessionRow | null;
  messages: ConversationMessage[];
  widgets: Record<string, WidgetRow>;
  files: Record<string, FileRow>;
  uploads: UploadState[];
  phase: ConversationPhase;
  /** A turn is running or waiting (the stop button's condition). */
  busy: boolean;
  /** The agent message being streamed, if any. */
  streamingMessageId: string | null;
  /** The realtime state of the conversation's channel. */
  connection: ChannelState;
  /** The last error (loading, sending, realtime); cleared by `clearError()`. */
  error: ConversationClientError | null;
  loaded: boolean;
}

/** A file to send: a Blob/File to upload, or an uploaded file (row or id). */
export type Attachment = Blob | FileRow | string;

export interface SendOptions {
  files?: Attachment[];
  signal?: AbortSignal;
  onUploadProgress?: (upload: UploadState) => void;
}

export interface ConversationDeps {
  transport: Transport;
  realtime: RealtimeHub;
  sessions: ModelManager<SessionRow>;
  messages: ModelManager<MessageRow>;
  widgets: ModelManager<WidgetRow>;
  files: FileManager;
}

export interface ConversationOptions {
  /** How many of the latest messages are read; default 200. */
  history?: number;
}

type Listener = (state: ConversationState) => void;

interface StoredMessage extends MessageRow {
  local?: boolean;
  sendError?: ConversationClientError | null;
  operationId?: string;
  /** What `retry()` sends again: the attachments, uploaded ones by their id. */
  attachmentsToSend?: Attachment[];
}

interface PendingSend {
  controller: AbortController;
  /** The create request is on its way: the server may have the message already. */
  creating: boolean;
  /** Resolves when the send is over, whatever its outcome. */
  settled: Promise<void>;
}

const BUSY_USER = new Set<string>([ProcessingStatus.PENDING, ProcessingStatus.PROCESSING]);

/**
 * Milliseconds between re-reads of a streaming row while chunks wait for text that only the row
 * can give (a gap). The server saves the row every `STREAM_SAVE_INTERVAL` (1 s by default) and at
 * the end of each stream, so a gap closes within a few retries.
 */
const GAP_RETRY_DELAY = 500;

export class Conversation {
  readonly sessionId: string;
  readonly channel: string;
  private readonly deps: ConversationDeps;
  private readonly history: number;
  private readonly listeners = new Set<Listener>();
  /** Pending `waitFor()` calls, rejected by `close()`. */
  private readonly waiters = new Set<() => void>();
  private readonly rows = new Map<string, StoredMessage>();
  private readonly widgetRows = new Map<string, WidgetRow>();
  private readonly fileRows = new Map<string, FileRow>();
  private readonly uploadStates: UploadState[] = [];
  private readonly myOperations = new Set<string>();
  /** Sends not finished yet, for cancel(); `sendQueue` keeps their creates in call order. */
  private readonly pendingSends = new Set<PendingSend>();
  private sendQueue: Promise<void> = Promise.resolve();
  /** Streaming messages (and chunks of messages not read yet), rebuilt by offset. */
  private readonly streams = new Map<string, StreamAssembler>();
  private readonly toFetch = { message: new Set<string>(), widget: new Set<string>(), file: new Set<string>(), session: false };
  private fetchTimer: ReturnType<typeof setTimeout> | null = null;
  private fetchDue = 0;
  private pollTimer: ReturnType<typeof setTimeout> | null = null;
  private session: SessionRow | null = null;
  private connection: ChannelState = "connecting";
  private error: ConversationClientError | null = null;
  private loaded = false;
  private syncing = false;
  private syncAgain = false;
  private buffered: RealtimeEvent[] = [];
  private snapshot: ConversationState | null = null;
  private notifyScheduled = false;
  private unsubscribe: Unsubscribe | null = null;
  private closed = false;
  private uploadCounter = 0;

  constructor(sessionId: string, deps: ConversationDeps, options: ConversationOptions = {}) {
    if (typeof sessionId !== "string" || !sessionId) throw new TypeError("conversation(sessionId) needs the session id.");
    this.sessionId = sessionId;
    this.channel = `${SESSION_CHANNEL_PREFIX}${sessionId}`;
    this.deps = deps;
    this.history = options.history ?? 200;
    this.unsubscribe = deps.realtime.subscribe(this.channel, {
      event: (event) => this.onEvent(event),
      state: (state, error) => this.onChannelState(state, error),
    });
  }

  /** The current snapshot (a new object after every change). */
  getState(): ConversationState {
    if (!this.snapshot) this.snapshot = this.build();
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
      const onClose = () => finish(() => reject(closedError()));
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
   * at once as `local`; when sending fails it stays with `sendError` so nothing is lost.
   */
  async send(text: string, options: SendOptions = {}): Promise<MessageRow> {
    return this.deliver(text, options, newOperationId());
  }

  /**
   * Send again a message that could not be sent (its `sendError` is set), under the operation id
   * of its first try: when the server did store it (only its answer was lost), the bridge answers
   * with that message instead of storing a second one, and no second turn starts. Files already
   * uploaded are not uploaded again.
   */
  async retry(localId: string, options: Omit<SendOptions, "files"> = {}): Promise<MessageRow> {
    const row = this.rows.get(localId);
    if (!row?.local || !row.sendError || !row.operationId) {
      throw new ConversationClientError(`No message that could not be sent has the id ${localId}.`, { code: "not_found" });
    }
    this.rows.delete(localId);
    return this.deliver(row.content, { ...options, files: row.attachmentsToSend ?? row.files }, row.operationId);
  }

  private async deliver(text: string, options: SendOptions, operationId: string): Promise<MessageRow> {
    if (typeof text !== "string" || !text.trim()) {
      throw new ValidationError({
        status: 400,
        errors: [{ code: "invalid_message", message: "Type a message first.", field: "content" }],
        method: "LOCAL",
        url: "",
      });
    }
    this.myOperations.add(operationId);
    const localId = `local-${operationId}`;
    // Messages reach the server in the order send() was called, whatever each one uploads first:
    // this one's create waits for the creates of the sends before it.
    const previous = this.sendQueue;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.sendQueue = previous.then(() => mine);
    const pending: PendingSend = { controller: new AbortController(), creating: false, settled: mine };
    const signal = pending.controller.signal;
    const unlink = linkSignal(pending.controller, options.signal);
    this.pendingSends.add(pending);
    const local: StoredMessage = {
      id: localId,
      session: this.sessionId,
      message_type: MessageType.USER,
      content: text,
      component_type: "",
      component_data: {},
      files: [],
      processing_status: ProcessingStatus.PENDING,
      reply_to: null,
      stream_sequence: 0,
      timestamp: new Date().toISOString(),
      local: true,
      sendError: null,
      operationId,
    };
    this.rows.set(localId, local);
    this.changed();
    try {
      const fileIds: string[] = [];
      // Kept on the local row for retry(): the uploaded files by id, the others as given.
      const toSend: Attachment[] = [...(options.files ?? [])];
      const keep = () => {
        const current = this.rows.get(localId);
        if (current) this.rows.set(localId, { ...current, files: [...fileIds], attachmentsToSend: [...toSend] });
      };
      keep();
      for (const [index, item] of (options.files ?? []).entries()) {
        if (typeof item === "string") fileIds.push(item);
        else if (isRow(item)) fileIds.push(item.id);
        else {
          const uploadOptions: { signal?: AbortSignal; onProgress?: (u: UploadState) => void } = { signal };
          if (options.onUploadProgress) uploadOptions.onProgress = options.onUploadProgress;
          const uploaded = await this.upload(item, uploadOptions);
          fileIds.push(uploaded.id);
          toSend[index] = uploaded.id;
        }
        keep();
        this.changed();
      }
      await previous;
      if (signal.aborted) throw new DOMException("The message was not sent.", "AbortError");
      const body: Record<string, unknown> = { session: this.sessionId, content: text };
      if (fileIds.length) body.files = fileIds;
      // From here on cancel() waits for the answer and then cancels the stored message.
      pending.creating = true;
      const row = await this.deps.messages.create(body as Partial<MessageRow>, {
        operationId,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      this.rows.delete(localId);
      this.mergeRow(row);
      this.changed();
      if (!this.deps.realtime.enabled || this.connection === "failed") void this.sync();
      return row;
    } catch (error) {
      const wrapped = toClientError(error);
      const current = this.rows.get(localId);
      if (current) {
        this.rows.set(localId, { ...current, processing_status: ProcessingStatus.FAILED, sendError: wrapped });
      }
      // Stopped on purpose (cancel() or the caller's signal): the message says so, it is no error.
      if (wrapped.code !== "aborted") this.error = wrapped;
      this.changed();
      throw wrapped;
    } finally {
      this.pendingSends.delete(pending);
      unlink();
      done();
    }
  }

  /** Upload a file into this conversation; progress and extraction show in `state.uploads`. */
  async upload(file: Blob, options: { signal?: AbortSignal; onProgress?: (upload: UploadState) => void } = {}): Promise<FileRow> {
    this.uploadCounter += 1;
    const filename = (file as { name?: string }).name || `file-${this.uploadCounter}`;
    const state: UploadState = {
      key: `upload-${this.uploadCounter}`,
      filename,
      size: file.size,
      loaded: 0,
      total: file.size,
      status: "uploading",
      file: null,
      error: null,
    };
    this.uploadStates.push(state);
    // The caller's progress callback: what it throws is reported and does not fail the upload.
    const progress = (upload: UploadState) => {
      if (options.onProgress) callListener(options.onProgress, upload);
    };
    progress(state);
    this.changed();
    const update = (patch: Partial<UploadState>) => {
      const index = this.uploadStates.findIndex((u) => u.key === state.key);
      if (index < 0) return;
      const next = { ...(this.uploadStates[index] as UploadState), ...patch };
      this.uploadStates[index] = next;
      progress(next);
      this.changed();
    };
    try {
      const row = await this.deps.files.upload(file, {
        sessionId: this.sessionId,
        filename,
        onProgress: (p: UploadProgress) => update({ loaded: p.loaded, total: p.total || state.size }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (isNotOlder(row, this.fileRows.get(row.id))) this.fileRows.set(row.id, row);
      update({ status: "uploaded", file: row, loaded: state.size, total: state.size });
      return row;
    } catch (error) {
      const wrapped = toClientError(error);
      update({ status: "failed", error: wrapped });
      if (wrapped.code !== "aborted") this.error = wrapped;
      this.changed();
      throw wrapped;
    }
  }

  /** Forget finished or failed uploads (e.g. once the message that used them was sent). */
  clearUploads(options: { failedOnly?: boolean } = {}): void {
    for (let i = this.uploadStates.length - 1; i >= 0; i--) {
      const u = this.uploadStates[i] as UploadState;
      if (u.status === "failed" || (!options.failedOnly && u.status === "uploaded")) this.uploadStates.splice(i, 1);
    }
    this.changed();
  }

  /** Remove a local message that could not be sent (after showing its error). */
  discard(localId: string): void {
    const row = this.rows.get(localId);
    if (row?.local) {
      this.rows.delete(localId);
      this.changed();
    }
  }

  /**
   * Ask the agent to stop: the running turn ends `cancelled` with its partial text kept. Messages
   * still being sent are stopped too: one still uploading (or waiting for an earlier one) is not
   * sent (it stays with `sendError` code `aborted`, and its send() rejects); one the server is
   * already storing is cancelled once it is stored.
   */
  async cancel(): Promise<CancelResult> {
    const pending = [...this.pendingSends];
    for (const send of pending) if (!send.creating) send.controller.abort();
    await Promise.all(pending.map((send) => send.settled));
    try {
      return await this.deps.transport.request<CancelResult>("POST", "cancel/", { body: { session_id: this.sessionId } });
    } catch (error) {
      this.error = toClientError(error);
      this.changed();
      throw this.error;
    }
  }

  /** Change a widget's presentation state (`display_data`), e.g. the slot a person picked. */
  async updateWidget(widgetId: string, displayData: JsonObject): Promise<WidgetRow> {
    const row = await this.deps.widgets.update(widgetId, { display_data: displayData });
    if (isNotOlder(row, this.widgetRows.get(row.id))) this.widgetRows.set(row.id, row);
    this.changed();
    return row;
  }

  /** Re-read everything from the server. */
  refresh(): Promise<void> {
    return this.sync();
  }

  clearError(): void {
    this.error = null;
    this.changed();
  }

  /**
   * Stop listening; the store keeps its last state. Pending `waitFor()` calls reject (code
   * `closed`); requests already sent still finish but change nothing anyone sees.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    if (this.fetchTimer) clearTimeout(this.fetchTimer);
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.listeners.clear();
    for (const onClose of [...this.waiters]) onClose();
  }

  private onChannelState(state: ChannelState, error?: ConversationClientError): void {
    this.connection = state;
    if (state === "closed" && this.deps.realtime.isClosed) {
      // The client was closed: say so, and read nothing more.
      this.changed();
      return;
    }
    // Not connected yet (the realtime connection cannot start or keeps dropping): still show the
    // conversation; the rows are read again once it is subscribed.
    if (state === "subscribed" || state === "closed" || (state === "reconnecting" && !this.loaded)) void this.sync();
    if (state === "reconnecting" && error) this.error = error;
    if (state === "subscribed" && this.error && isRealtimeError(this.error)) this.error = null;
    if (state === "failed") {
      if (error) this.error = error;
      void this.sync();
    }
    this.changed();
  }

  /** Read session, messages, widgets and files; buffered events are applied afterwards. */
  private async sync(): Promise<void> {
    if (this.closed) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    // Rows that arrive while this read runs (from a refetch) are newer than it: keep them.
    const before = new Set(this.rows.keys());
    try {
      const { sessions, messages, widgets, files } = this.deps;
      const [session, latest, widgetList, fileList] = await Promise.all([
        sessions.get(this.sessionId),
        messages.filter({ session: this.sessionId }).orderBy("-timestamp").limit(this.history).fetch(),
        widgets.filter({ session: this.sessionId }).orderBy("-created_at").limit(this.history).fetch(),
        files.filter({ session: this.sessionId }).orderBy("-created_at").limit(this.history).fetch(),
      ]);
      if (this.closed) return;
      if (isNotOlder(session, this.session)) this.session = session;
      const seen = new Set(latest.map((m) => m.id));
      for (const [id, row] of this.rows) {
        // Rows the server no longer returns are gone, except local ones and live streams.
        if (before.has(id) && !seen.has(id) && !row.local && row.processing_status !== ProcessingStatus.STREAMING) {
          this.rows.delete(id);
          this.streams.delete(id);
        }
      }
      for (const row of latest) this.mergeRow(row);
      for (const row of widgetList) if (isNotOlder(row, this.widgetRows.get(row.id))) this.widgetRows.set(row.id, row);
      for (const row of fileList) if (isNotOlder(row, this.fileRows.get(row.id))) this.fileRows.set(row.id, row);
      this.loaded = true;
      if (this.error && (isNetworkErrorLike(this.error) || this.error.code === "sync_failed")) this.error = null;
    } catch (error) {
      this.error = toClientError(error);
    } finally {
      this.syncing = false;
      const events = this.buffered;
      this.buffered = [];
      for (const event of events) this.apply(event);
      this.changed();
      if (this.syncAgain) {
        this.syncAgain = false;
        void this.sync();
      }
      this.schedulePoll();
    }
  }

  /**
   * Without a working realtime channel, re-read while a turn is running. That includes a channel
   * that is reconnecting: its events are lost until it is back, which can take many seconds.
   */
  private schedulePoll(): void {
    if (this.closed || this.pollTimer) return;
    if (this.connection === "subscribed" || this.connection === "connecting") return;
    if (!this.getState().busy) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      void this.sync();
    }, 1000);
  }

  private onEvent(event: RealtimeEvent): void {
    if (this.closed) return;
    if (event.payload.session_id && event.payload.session_id !== this.sessionId) return;
    if (this.syncing) {
      this.buffered.push(event);
      return;
    }
    this.apply(event);
    this.changed();
  }

  private apply(event: RealtimeEvent): void {
    switch (event.name) {
      case EventName.STREAM_START: {
        const p = event.payload;
        if (!this.rows.has(p.message_id)) {
          this.rows.set(p.message_id, {
            id: p.message_id,
            session: this.sessionId,
            message_type: MessageType.AGENT,
            content: "",
            component_type: "",
            component_data: {},
            files: [],
            processing_status: ProcessingStatus.STREAMING,
            reply_to: p.reply_to ?? null,
            stream_sequence: 0,
            timestamp: p.timestamp,
          });
          // Text written before this stream (another stream of the turn) is in the row: its
          // chunks start beyond the empty text, so they wait for it.
          if (p.sequence !== 0) this.queueFetch("message", p.message_id);
          this.showStream(p.message_id);
        }
        break;
      }
      case EventName.TEXT_CHUNK:
        this.applyChunk(event.payload);
        break;
      case EventName.STREAM_END:
        this.queueFetch("message", event.payload.message_id);
        break;
      case EventName.MESSAGE_STATUS: {
        const p = event.payload;
        const row = this.rows.get(p.message_id);
        if (!row || FINISHED_STATUSES.has(p.status)) {
          // A finished message's final text and status arrive together with its row: until then
          // the store keeps showing it as running, so nobody reads a half-final state.
          this.queueFetch("message", p.message_id, 0);
        } else {
          this.rows.set(p.message_id, { ...row, processing_status: p.status });
        }
        break;
      }
      case EventName.WIDGET:
      case EventName.WIDGET_UPDATE: {
        const p = event.payload;
        if (p.truncated) {
          // Too large for the transport: the event names the widget, its row has the data.
          this.queueFetch("widget", p.widget_id, 0);
          if (p.message_id && !this.rows.has(p.message_id)) this.queueFetch("message", p.message_id);
          break;
        }
        const existing = this.widgetRows.get(p.widget_id);
        this.widgetRows.set(p.widget_id, {
          ...(existing ?? { created_at: p.timestamp }),
          id: p.widget_id,
          session: this.sessionId,
          message: p.message_id,
          widget_type: p.widget_type,
          data: p.data,
          display_data: p.display_data,
          // Sent after the row was saved: a read that started earlier cannot undo it.
          updated_at: p.timestamp,
        } as WidgetRow);
        if (p.message_id && !this.rows.has(p.message_id)) this.queueFetch("message", p.message_id);
        break;
      }
      case EventName.MODEL_CHANGE: {
        const p = event.payload;
        if (p.model !== "message" && p.model !== "widget" && p.model !== "file" && p.model !== "session") break;
        if (p.model === "session") {
          if (p.operation === ModelOperation.DELETE) {
            this.session = null;
          } else {
            this.toFetch.session = true;
            this.scheduleFetch();
          }
          break;
        }
        for (const pk of p.pks) {
          if (p.operation === ModelOperation.DELETE) {
            if (p.model === "message") {
              this.rows.delete(pk);
              this.streams.delete(pk);
            } else if (p.model === "widget") this.widgetRows.delete(pk);
            else this.fileRows.delete(pk);
          } else {
            if (p.model === "message" && p.operation_id && this.myOperations.has(p.operation_id)) {
              // The echo of our own send: the local copy is replaced when the row arrives.
              this.adoptLocal(p.operation_id, pk);
            }
            this.queueFetch(p.model, pk);
          }
        }
        break;
      }
    }
  }

  /**
   * The confirmed pk of a local message: drop the local copy once the row is known. A copy marked
   * failed is adopted too: its answer was lost (the connection dropped) after the server stored
   * it, and keeping it would show the message twice and offer to send it again.
   */
  private adoptLocal(operationId: string, pk: string): void {
    for (const [id, row] of this.rows) {
      if (row.local && row.operationId === operationId) {
        this.pendingAdoption.set(pk, id);
      }
    }
  }
  private readonly pendingAdoption = new Map<string, string>();

  private applyChunk(event: TextChunkEvent): void {
    const row = this.rows.get(event.message_id);
    // A finished row is the whole truth: later chunks (a late transport) change nothing.
    if (row && FINISHED_STATUSES.has(row.processing_status)) return;
    const stream = this.stream(event.message_id);
    stream.applyChunk(event);
    if (row) this.showStream(event.message_id);
    // Not read yet, or a gap: the row gives what came before.
    if (!row) this.queueFetch("message", event.message_id);
    else if (stream.needsRow) this.queueFetch("message", event.message_id, GAP_RETRY_DELAY);
  }

  private stream(messageId: string): StreamAssembler {
    let stream = this.streams.get(messageId);
    if (!stream) {
      stream = new StreamAssembler(messageId);
      this.streams.set(messageId, stream);
    }
    return stream;
  }

  /** Copy a message's assembled text into its row (the row is streaming while it streams). */
  private showStream(messageId: string): void {
    const row = this.rows.get(messageId);
    const stream = this.streams.get(messageId);
    if (!row || !stream || FINISHED_STATUSES.has(row.processing_status)) return;
    if (row.content === stream.text && row.stream_sequence === stream.sequence) return;
    this.rows.set(messageId, { ...row, content: stream.text, stream_sequence: stream.sequence, processing_status: ProcessingStatus.STREAMING });
  }

  /** Take a row from the server, keeping streamed text that is newer than the row's. */
  private mergeRow(row: MessageRow): void {
    const adopted = this.pendingAdoption.get(row.id);
    if (adopted) {
      this.rows.delete(adopted);
      this.pendingAdoption.delete(row.id);
    }
    const existing = this.rows.get(row.id);
    if (existing && !existing.local && !isNotOlder(row, existing)) return;
    this.rows.set(row.id, { ...row });
    if (row.processing_status !== ProcessingStatus.STREAMING) {
      // Finished (the whole truth), or not streaming at all.
      this.streams.delete(row.id);
      return;
    }
    const stream = this.stream(row.id);
    stream.applyRow(row);
    this.showStream(row.id);
    // Still a gap: the row is saved at an interval; read it again shortly.
    if (stream.needsRow) this.queueFetch("message", row.id, GAP_RETRY_DELAY);
  }

  private queueFetch(model: "message" | "widget" | "file", pk: string, delay = 25): void {
    if (pk.startsWith("local-")) return;
    this.toFetch[model].add(pk);
    this.scheduleFetch(delay);
  }

  private scheduleFetch(delay = 25): void {
    if (this.closed) return;
    const due = Date.now() + delay;
    if (this.fetchTimer) {
      // One timer for every pending read; a sooner request (a finished message) moves it earlier.
      if (due >= this.fetchDue) return;
      clearTimeout(this.fetchTimer);
    }
    this.fetchDue = due;
    this.fetchTimer = setTimeout(() => {
      this.fetchTimer = null;
      void this.runFetch();
    }, delay);
  }

  private async runFetch(): Promise<void> {
    const messages = [...this.toFetch.message];
    const widgets = [...this.toFetch.widget];
    const files = [...this.toFetch.file];
    const session = this.toFetch.session;
    this.toFetch.message.clear();
    this.toFetch.widget.clear();
    this.toFetch.file.clear();
    this.toFetch.session = false;
    try {
      const [messageRows, widgetRows, fileRows, sessionRow] = await Promise.all([
        messages.length ? this.deps.messages.filter({ id__in: messages }).limit(messages.length).fetch() : [],
        widgets.length ? this.deps.widgets.filter({ id__in: widgets }).limit(widgets.length).fetch() : [],
        files.length ? this.deps.files.filter({ id__in: files }).limit(files.length).fetch() : [],
        session ? this.deps.sessions.get(this.sessionId) : null,
      ]);
      if (this.closed) return;
      for (const row of messageRows) {
        if (row.session === this.sessionId) this.mergeRow(row);
      }
      for (const row of widgetRows) if (isNotOlder(row, this.widgetRows.get(row.id))) this.widgetRows.set(row.id, row);
      for (const row of fileRows) {
        if (!isNotOlder(row, this.fileRows.get(row.id))) continue;
        this.fileRows.set(row.id, row);
        const index = this.uploadStates.findIndex((u) => u.file?.id === row.id);
        if (index >= 0) this.uploadStates[index] = { ...(this.uploadStates[index] as UploadState), file: row };
      }
      if (sessionRow && isNotOlder(sessionRow, this.session)) this.session = sessionRow;
    } catch (error) {
      this.error = toClientError(error);
      // Try again later: what we show may be stale.
      for (const pk of messages) this.toFetch.message.add(pk);
      for (const pk of widgets) this.toFetch.widget.add(pk);
      for (const pk of files) this.toFetch.file.add(pk);
      this.toFetch.session ||= session;
      this.scheduleFetch(2000);
    }
    this.changed();
  }

  private changed(): void {
    this.snapshot = null;
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
      this.schedulePoll();
    });
  }

  private build(): ConversationState {
    const widgetsByMessage = new Map<string, WidgetRow>();
    for (const widget of this.widgetRows.values()) if (widget.message) widgetsByMessage.set(widget.message, widget);
    const stored = [...this.rows.values()];
    stored.sort((a, b) => {
      if (!!a.local !== !!b.local) return a.local ? 1 : -1;
      const t = microseconds(a.timestamp) - microseconds(b.timestamp);
      if (t) return t;
      return typeRank(a) - typeRank(b);
    });
    const messages: ConversationMessage[] = stored.map((row) => {
      const { local, sendError, operationId: _op, attachmentsToSend: _files, ...rest } = row;
      void _op;
      void _files;
      return {
        ...rest,
        files: row.files ?? [],
        widget: widgetsByMessage.get(row.id) ?? null,
        attachments: (row.files ?? []).map((id) => this.fileRows.get(id)).filter((f): f is FileRow => !!f),
        streaming: row.processing_status === ProcessingStatus.STREAMING,
        local: !!local,
        sendError: sendError ?? null,
      };
    });
    const streaming = messages.find((m) => m.streaming) ?? null;
    const waiting = messages.some((m) => m.message_type === MessageType.USER && !m.local && BUSY_USER.has(m.processing_status));
    const sending =
      messages.some((m) => m.local && !m.sendError) || this.uploadStates.some((u) => u.status === "uploading");
    const phase: ConversationPhase = !this.loaded
      ? "loading"
      : streaming
        ? "streaming"
        : sending
          ? "sending"
          : waiting
            ? "waiting"
            : "idle";
    return {
      sessionId: this.sessionId,
      session: this.session,
      messages,
      widgets: Object.fromEntries(this.widgetRows),
      files: Object.fromEntries(this.fileRows),
      uploads: [...this.uploadStates],
      phase,
      busy: !!streaming || waiting || sending,
      streamingMessageId: streaming?.id ?? null,
      connection: this.connection,
      error: this.error,
      loaded: this.loaded,
    };
  }
}

/**
 * Whether `row` may replace `existing`: reads can finish out of order (a refetch started before a
 * change may answer after one started after it), so an older copy never replaces a newer one.
 */
function isNotOlder(row: { updated_at?: unknown }, existing: { updated_at?: unknown } | undefined | null): boolean {
  if (!existing || typeof existing.updated_at !== "string" || typeof row.updated_at !== "string") return true;
  return Date.parse(row.updated_at) >= Date.parse(existing.updated_at);
}

/**
 * An ISO timestamp in microseconds since the epoch: the server keeps microseconds, and two
 * messages of one turn are often less than a millisecond apart (Date.parse stops at milliseconds).
 */
function microseconds(iso: string): number {
  const ms = Date.parse(iso);
  const fraction = /T[\d:]+\.(\d+)/.exec(iso)?.[1] ?? "";
  return ms * 1000 + Number((fraction.slice(3, 6) || "0").padEnd(3, "0"));
}

/** Abort `own` with the caller's `signal` too; returns the function that unlinks them. */
function linkSignal(own: AbortController, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => undefined;
  const abort = () => own.abort(signal.reason);
  if (signal.aborted) abort();
  else signal.addEventListener("abort", abort, { once: true });
  return () => signal.removeEventListener("abort", abort);
}

function closedError(): ConversationClientError {
  return new ConversationClientError("The conversation was closed.", { code: "closed" });
}

/** A one-line picture of a state, for timeouts and logs. */
function summarize(state: ConversationState): string {
  const messages = state.messages
    .map((m) => `${m.message_type}:${m.processing_status}${m.local ? ":local" : ""}${m.widget ? `:${m.widget.widget_type}` : ""}(${m.content.length})`)
    .join(" ");
  const uploads = state.uploads.map((u) => `${u.filename}:${u.status}:${u.file?.extraction_status ?? "-"}`).join(" ");
  return `phase=${state.phase} busy=${state.busy} connection=${state.connection} error=${state.error?.code ?? "none"} messages=[${messages}] uploads=[${uploads}]`;
}

function typeRank(row: MessageRow): number {
  return row.message_type === MessageType.USER ? 0 : row.message_type === MessageType.WIDGET ? 2 : 1;
}

function isRow(value: unknown): value is FileRow {
  return typeof value === "object" && value !== null && typeof (value as { id?: unknown }).id === "string" && !(value instanceof Blob);
}

function isNetworkErrorLike(error: ConversationClientError): boolean {
  return error instanceof NetworkError || error.code === "network_error";
}

function toClientError(error: unknown): ConversationClientError {
  if (isConversationClientError(error)) return error;
  if (typeof error === "object" && error && (error as { name?: string }).name === "AbortError") {
    return new ConversationClientError("Cancelled.", { code: "aborted", cause: error });
  }
  return new ConversationClientError(error instanceof Error ? error.message : String(error), { code: "unexpected", cause: error });
}
