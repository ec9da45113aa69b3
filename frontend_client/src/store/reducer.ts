/**
 * The conversation store's reducer: `reduce(state, action)` is a pure function from a state and
 * one thing that happened (a realtime event, rows read from the server, a send or an upload
 * moving on, the channel's state) to the next state. It does no I/O and keeps no timer, so it is
 * tested without a server (test/reducer.test.ts).
 *
 * Some events say a row changed without carrying it (`model_change`, `stream_end`, a truncated
 * widget) or need the row to close a gap in a stream: the step then also lists the rows to read
 * (`reads`), which the store's fetcher (`fetcher.ts`) reads and hands back as a `read` action.
 *
 * How a streamed message stays right (docs/protocol.md, "Resuming a stream"): each streaming
 * message has a `StreamAssembler` fed by its row and its `text_chunk` events by `offset`; a chunk
 * beyond the known text (a gap) is held and the row is read again every `GAP_RETRY_DELAY` ms until
 * it catches up. A finished row is the whole truth.
 *
 * Tool steps (docs/tools.md, "Tool steps") are `tool` message rows. `tool_call_start` comes before
 * the row exists: the store shows a placeholder step (keyed by the reply and the call id), which
 * the row replaces once an event or a read brings it. `tool_call_arguments` and
 * `tool_call_result` carry the row's fields and are applied at once; a step only moves forward
 * (`awaiting_approval` → `pending` → `processing` → finished), so a late event or a read that
 * started before a change never takes it back. A truncated event reads the row.
 */

import { BuiltinModel, EventName, FINISHED_STATUSES, MessageType, ModelOperation, ProcessingStatus } from "../constants.js";
import { type ConversationClientError, isNetworkError, isRealtimeError } from "../errors.js";
import type { ChannelState } from "../realtime/types.js";
import { StreamAssembler } from "../stream.js";
import type {
  FileRow,
  JsonObject,
  MessageRow,
  ModelChangeEvent,
  RealtimeEvent,
  SessionRow,
  TextChunkEvent,
  ToolCallArgumentsEvent,
  ToolCallResultEvent,
  ToolCallStartEvent,
  WidgetRow,
} from "../types.js";
import type { Attachment, StoredMessage, StoreState, UploadState } from "./state.js";
import { microseconds } from "./view.js";

/**
 * Milliseconds between re-reads of a streaming row while chunks wait for text that only the row
 * can give (a gap). The server saves the row every `STREAM_SAVE_INTERVAL` (1 s by default) and at
 * the end of each stream, so a gap closes within a few retries.
 */
export const GAP_RETRY_DELAY = 500;
/** Milliseconds a read waits for others to join it when nothing urges it. */
export const READ_DELAY = 25;

/** A row the store wants read: the session row, or one message, widget or file by id. */
export type RowRead =
  | { model: typeof BuiltinModel.SESSION; delay: number }
  | { model: typeof BuiltinModel.MESSAGE | typeof BuiltinModel.WIDGET | typeof BuiltinModel.FILE; pk: string; delay: number };

export type StoreAction =
  /** An event of the conversation's channel. */
  | { type: "event"; event: RealtimeEvent }
  /** A full read (first load, reconnect, poll): `known` are the message ids the store had when it started. */
  | { type: "synced"; session: SessionRow; messages: MessageRow[]; widgets: WidgetRow[]; files: FileRow[]; known: ReadonlySet<string> }
  /**
   * Rows read because a step asked for them (`reads`). `asked`: the message ids the read asked
   * for; one the store shows that the answer lacks left the active path (or is gone).
   * `sessionGone`: the session row was asked for and is missing (the conversation was deleted).
   */
  | {
      type: "read";
      session: SessionRow | null;
      messages: MessageRow[];
      widgets: WidgetRow[];
      files: FileRow[];
      asked?: readonly string[];
      sessionGone?: ConversationClientError;
    }
  | { type: "connection"; state: ChannelState; error?: ConversationClientError | undefined }
  /** Set (or, with null, clear) the error the state shows. */
  | { type: "error"; error: ConversationClientError | null }
  /** A send began: its local copy shows at once. */
  | { type: "sendStarted"; row: StoredMessage }
  /** Files of a send were uploaded: the local copy remembers them for `retry()`. */
  | { type: "sendFiles"; localId: string; files: string[]; attachmentsToSend: Attachment[] }
  | { type: "sent"; localId: string; row: MessageRow }
  | { type: "sendFailed"; localId: string; error: ConversationClientError }
  /** A local message removed (discarded, or sent again by `retry()`). */
  | { type: "localRemoved"; localId: string }
  | { type: "uploadStarted"; upload: UploadState }
  | { type: "uploadProgress"; key: string; loaded: number; total: number }
  | { type: "uploaded"; key: string; row: FileRow }
  | { type: "uploadFailed"; key: string; error: ConversationClientError }
  | { type: "uploadsCleared"; failedOnly: boolean }
  /** A widget row this client wrote. */
  | { type: "widgetSaved"; row: WidgetRow }
  /** `approve()` / `reject()` of a tool step was sent. */
  | { type: "answerStarted"; stepId: string }
  /** The answer came back: the step's row as the server stored it (null when it failed). */
  | { type: "answerEnded"; stepId: string; row: MessageRow | null; error?: ConversationClientError }
  /**
   * A message row this client wrote (regenerate, edit, setActiveVersion, feedback answered with
   * it). A user message on the active path takes the place of its other version the store shows,
   * and of everything after that version (they left the path).
   */
  | { type: "messageSaved"; row: MessageRow };

export interface Step {
  state: StoreState;
  /** Rows to read for this state to become complete. */
  reads: RowRead[];
}

/** The next state after `action`, and the rows it needs read. */
export function reduce(state: StoreState, action: StoreAction): Step {
  const draft = new Draft(state);
  switch (action.type) {
    case "event":
      if (!action.event.payload.session_id || action.event.payload.session_id === state.sessionId) applyEvent(draft, action.event);
      break;
    case "synced":
      applySync(draft, action);
      break;
    case "read": {
      const returned = new Set<string>();
      for (const row of action.messages) {
        if (row.session !== state.sessionId) continue;
        returned.add(row.id);
        mergeMessage(draft, row);
      }
      // A read of the active path no longer returns a row the store shows: it left the path (or
      // was deleted). Rows the store does not show are left alone (nothing says what they are).
      for (const pk of action.asked ?? []) {
        const row = draft.rows.get(pk);
        if (!returned.has(pk) && row && !row.local && !row.placeholder) leavePath(draft, pk, null);
      }
      for (const row of action.widgets) mergeWidget(draft, row);
      for (const row of action.files) mergeFile(draft, row);
      if (action.session && isNotOlder(action.session, draft.session)) draft.session = action.session;
      if (action.sessionGone) {
        // Deleted (here or in another tab): the store keeps what it shows and says so.
        draft.session = null;
        draft.error = action.sessionGone;
      }
      break;
    }
    case "messageSaved":
      if (action.row.session !== state.sessionId) break;
      mergeMessage(draft, action.row);
      followVersion(draft, action.row);
      break;
    case "connection":
      draft.connection = action.state;
      if (action.state === "reconnecting" && action.error) draft.error = action.error;
      if (action.state === "subscribed" && draft.error && isRealtimeError(draft.error)) draft.error = null;
      if (action.state === "failed" && action.error) draft.error = action.error;
      break;
    case "error":
      draft.error = action.error;
      break;
    case "sendStarted":
      if (action.row.operationId) draft.ownOperations.add(action.row.operationId);
      draft.rows.set(action.row.id, action.row);
      break;
    case "sendFiles": {
      const local = draft.rows.get(action.localId);
      if (local) draft.rows.set(action.localId, { ...local, files: [...action.files], attachmentsToSend: [...action.attachmentsToSend] });
      break;
    }
    case "sent":
      draft.rows.delete(action.localId);
      mergeMessage(draft, action.row);
      break;
    case "sendFailed": {
      const local = draft.rows.get(action.localId);
      if (local) draft.rows.set(action.localId, { ...local, processing_status: ProcessingStatus.FAILED, sendError: action.error });
      // Stopped on purpose (cancel() or the caller's signal): the message says so, it is no error.
      if (action.error.code !== "aborted") draft.error = action.error;
      break;
    }
    case "localRemoved":
      if (draft.rows.get(action.localId)?.local) draft.rows.delete(action.localId);
      break;
    case "uploadStarted":
      draft.uploads.push(action.upload);
      break;
    case "uploadProgress":
      patchUpload(draft, action.key, { loaded: action.loaded, total: action.total });
      break;
    case "uploaded": {
      mergeFile(draft, action.row);
      const upload = draft.uploads.find((u) => u.key === action.key);
      if (upload) patchUpload(draft, action.key, { status: "uploaded", file: action.row, loaded: upload.size, total: upload.size });
      break;
    }
    case "uploadFailed":
      patchUpload(draft, action.key, { status: "failed", error: action.error });
      if (action.error.code !== "aborted") draft.error = action.error;
      break;
    case "uploadsCleared":
      draft.uploads = draft.uploads.filter((u) => !(u.status === "failed" || (!action.failedOnly && u.status === "uploaded")));
      break;
    case "widgetSaved":
      mergeWidget(draft, action.row);
      break;
    case "answerStarted":
      draft.answering.add(action.stepId);
      break;
    case "answerEnded":
      draft.answering.delete(action.stepId);
      if (action.row && action.row.session === state.sessionId) mergeMessage(draft, action.row);
      if (action.error) {
        draft.error = action.error;
        // Answered elsewhere, expired, or gone: the row says what it is now.
        draft.read(BuiltinModel.MESSAGE, action.stepId, 0);
      }
      break;
  }
  return draft.finish();
}

/** A state being built from `base`: its collections are copies, changed freely, then frozen into a new state. */
class Draft {
  session: SessionRow | null;
  readonly rows: Map<string, StoredMessage>;
  readonly widgets: Map<string, WidgetRow>;
  readonly files: Map<string, FileRow>;
  uploads: UploadState[];
  readonly ownOperations: Set<string>;
  readonly adoptions: Map<string, string>;
  readonly answering: Set<string>;
  readonly offPath: Map<string, string | null>;
  connection: ChannelState;
  error: ConversationClientError | null;
  loaded: boolean;
  readonly reads: RowRead[] = [];
  private readonly streams: Map<string, StreamAssembler>;
  /** Assemblers copied in this step (the others still belong to the base state). */
  private readonly own = new Set<string>();

  constructor(readonly base: StoreState) {
    this.session = base.session;
    this.rows = new Map(base.rows);
    this.widgets = new Map(base.widgets);
    this.files = new Map(base.files);
    this.uploads = [...base.uploads];
    this.streams = new Map(base.streams);
    this.ownOperations = new Set(base.ownOperations);
    this.adoptions = new Map(base.adoptions);
    this.answering = new Set(base.answering);
    this.offPath = new Map(base.offPath);
    this.connection = base.connection;
    this.error = base.error;
    this.loaded = base.loaded;
  }

  get sessionId(): string {
    return this.base.sessionId;
  }

  /** The assembler of a message, safe to change: a new one, or a copy of the base state's. */
  stream(messageId: string): StreamAssembler {
    let stream = this.streams.get(messageId);
    if (!stream) stream = new StreamAssembler(messageId);
    else if (!this.own.has(messageId)) stream = stream.clone();
    this.streams.set(messageId, stream);
    this.own.add(messageId);
    return stream;
  }

  /** The assembler of a message, to read only. */
  peekStream(messageId: string): StreamAssembler | undefined {
    return this.streams.get(messageId);
  }

  /** The message left the active path (or answers one that did): its events change nothing. */
  isOffPath(messageId: string | null | undefined): boolean {
    return !!messageId && this.offPath.has(messageId);
  }

  dropStream(messageId: string): void {
    this.streams.delete(messageId);
  }

  read(model: typeof BuiltinModel.MESSAGE | typeof BuiltinModel.WIDGET | typeof BuiltinModel.FILE, pk: string, delay = READ_DELAY): void {
    // A local message or a placeholder step has no row on the server yet.
    if (pk.startsWith("local-") || pk.startsWith(PLACEHOLDER_PREFIX)) return;
    this.reads.push({ model, pk, delay });
  }

  finish(): Step {
    const state: StoreState = {
      sessionId: this.base.sessionId,
      session: this.session,
      rows: this.rows,
      widgets: this.widgets,
      files: this.files,
      uploads: this.uploads,
      streams: this.streams,
      ownOperations: this.ownOperations,
      adoptions: this.adoptions,
      answering: this.answering,
      offPath: this.offPath,
      connection: this.connection,
      error: this.error,
      loaded: this.loaded,
    };
    return { state, reads: this.reads };
  }
}

function applyEvent(draft: Draft, event: RealtimeEvent): void {
  if (event.name !== EventName.MODEL_CHANGE && isOffPathEvent(draft, event)) return;
  switch (event.name) {
    case EventName.STREAM_START: {
      const p = event.payload;
      const existing = draft.rows.get(p.message_id);
      if (existing) {
        // A reply resumed after an approval: the same message streams on from its text.
        if (!FINISHED_STATUSES.has(existing.processing_status) && existing.processing_status !== ProcessingStatus.STREAMING) {
          draft.rows.set(p.message_id, { ...existing, processing_status: ProcessingStatus.STREAMING });
          seedStream(draft, p.message_id);
          if (p.sequence > existing.stream_sequence) draft.read(BuiltinModel.MESSAGE, p.message_id);
        }
        break;
      }
      draft.rows.set(p.message_id, {
        id: p.message_id,
        session: draft.sessionId,
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
      // Text written before this stream (another stream of the turn) is in the row: its chunks
      // start beyond the empty text, so they wait for it.
      if (p.sequence !== 0) draft.read(BuiltinModel.MESSAGE, p.message_id);
      showStream(draft, p.message_id);
      break;
    }
    case EventName.TEXT_CHUNK:
      applyChunk(draft, event.payload);
      break;
    case EventName.STREAM_END:
      draft.read(BuiltinModel.MESSAGE, event.payload.message_id);
      break;
    case EventName.MESSAGE_STATUS: {
      const p = event.payload;
      const row = draft.rows.get(p.message_id);
      if (!row || FINISHED_STATUSES.has(p.status)) {
        // A finished message's final text and status arrive together with its row: until then
        // the store keeps showing it as running, so nobody reads a half-final state.
        draft.read(BuiltinModel.MESSAGE, p.message_id, 0);
      } else {
        draft.rows.set(p.message_id, { ...row, processing_status: p.status });
      }
      break;
    }
    case EventName.WIDGET:
    case EventName.WIDGET_UPDATE: {
      const p = event.payload;
      if (p.truncated) {
        // Too large for the transport: the event names the widget, its row has the data.
        draft.read(BuiltinModel.WIDGET, p.widget_id, 0);
      } else {
        const existing = draft.widgets.get(p.widget_id);
        draft.widgets.set(p.widget_id, {
          ...(existing ?? { created_at: p.timestamp }),
          id: p.widget_id,
          session: draft.sessionId,
          message: p.message_id,
          widget_type: p.widget_type,
          data: p.data,
          display_data: p.display_data,
          // Sent after the row was saved: a read that started earlier cannot undo it.
          updated_at: p.timestamp,
        } as WidgetRow);
      }
      if (p.message_id && !draft.rows.has(p.message_id) && !draft.isOffPath(p.message_id)) draft.read(BuiltinModel.MESSAGE, p.message_id);
      break;
    }
    case EventName.MODEL_CHANGE:
      applyModelChange(draft, event.payload);
      break;
    case EventName.TOOL_CALL_START:
      applyToolCallStart(draft, event.payload);
      break;
    case EventName.TOOL_CALL_ARGUMENTS:
    case EventName.TOOL_CALL_RESULT:
      applyToolCallEvent(draft, event.payload);
      break;
  }
}

/**
 * An event of a message that left the active path, or of the reply to one (a superseded turn
 * ending, its late chunks): it would bring back what another version replaced. Widget events
 * still update the widget row (shown only with its message).
 */
function isOffPathEvent(draft: Draft, event: RealtimeEvent): boolean {
  switch (event.name) {
    case EventName.STREAM_START:
    case EventName.TOOL_CALL_ARGUMENTS:
    case EventName.TOOL_CALL_RESULT:
      return draft.isOffPath(event.payload.message_id) || draft.isOffPath(event.payload.reply_to);
    case EventName.TOOL_CALL_START:
      return draft.isOffPath(event.payload.reply_to);
    case EventName.TEXT_CHUNK:
    case EventName.STREAM_END:
    case EventName.MESSAGE_STATUS:
      return draft.isOffPath(event.payload.message_id);
    default:
      return false;
  }
}

/** The id of the placeholder of a tool call seen before its row: the store's own, never a row's. */
export const PLACEHOLDER_PREFIX = "tool-call:";
export function placeholderId(replyTo: string, callId: string): string {
  return `${PLACEHOLDER_PREFIX}${replyTo}:${callId}`;
}

/**
 * Where a step or widget moves forward to: a step goes `awaiting_approval` → `pending`
 * (approved) → `processing` → finished, or straight to finished (rejected, expired, cancelled).
 */
function stepRank(status: string): number {
  if (FINISHED_STATUSES.has(status as ProcessingStatus)) return 4;
  if (status === ProcessingStatus.PROCESSING || status === ProcessingStatus.STREAMING) return 3;
  if (status === ProcessingStatus.PENDING) return 2;
  return 1;
}

function isToolRow(row: MessageRow | undefined): boolean {
  return row?.message_type === MessageType.TOOL;
}

function callIdOf(row: MessageRow): string {
  const id = row.component_data?.call_id;
  return typeof id === "string" ? id : "";
}

function roundOf(row: MessageRow): number {
  const round = row.component_data?.round;
  return typeof round === "number" ? round : 0;
}

/**
 * The tool row (not a placeholder) of a call of a reply, if the store has it; of `round` when
 * given (a model may reuse a call id in a later round).
 */
function findToolRow(draft: Draft, replyTo: string, callId: string, round?: number): StoredMessage | undefined {
  for (const row of draft.rows.values()) {
    if (!isToolRow(row) || row.placeholder || row.reply_to !== replyTo || callIdOf(row) !== callId) continue;
    if (round === undefined || roundOf(row) === round) return row;
  }
  return undefined;
}

/** The agent message of a reply (the first, if a reply has several). */
function agentMessageOf(draft: Draft, replyTo: string): StoredMessage | undefined {
  let found: StoredMessage | undefined;
  for (const row of draft.rows.values()) {
    if (row.message_type === MessageType.AGENT && row.reply_to === replyTo && (!found || row.timestamp < found.timestamp)) found = row;
  }
  return found;
}

function applyToolCallStart(draft: Draft, p: ToolCallStartEvent): void {
  const id = placeholderId(p.reply_to, p.call_id);
  if (draft.rows.has(id) || findToolRow(draft, p.reply_to, p.call_id, p.round)) return;
  // No row yet, so no text_offset: the call sits after the text streamed so far.
  const offset = agentMessageOf(draft, p.reply_to)?.content.length ?? 0;
  draft.rows.set(id, {
    id,
    session: draft.sessionId,
    message_type: MessageType.TOOL,
    content: "",
    component_type: p.name,
    component_data: {
      call_id: p.call_id,
      name: p.name,
      arguments: {},
      round: p.round ?? 0,
      index: p.index ?? 0,
      text_offset: offset,
      result: null,
      error: null,
      duration_ms: null,
      approval: null,
    },
    files: [],
    processing_status: ProcessingStatus.PENDING,
    reply_to: p.reply_to,
    stream_sequence: 0,
    timestamp: p.timestamp,
    placeholder: true,
  });
}

/** The fields of a step that never change once the model made the call. */
const CALL_FIELDS: ReadonlySet<string> = new Set(["arguments", "round", "index", "text_offset"]);

function dropPlaceholders(draft: Draft, replyTo: string): void {
  for (const [id, row] of draft.rows) if (row.placeholder && row.reply_to === replyTo) draft.rows.delete(id);
}

/** `tool_call_arguments` or `tool_call_result`: the step's row, with the event's fields. */
function applyToolCallEvent(draft: Draft, p: ToolCallArgumentsEvent | ToolCallResultEvent): void {
  if (p.truncated) {
    // Too large for the transport: the row has the arguments and the result.
    draft.read(BuiltinModel.MESSAGE, p.message_id, 0);
    return;
  }
  const existing = draft.rows.get(p.message_id);
  // A step only moves forward: an event older than what the store has keeps its status and
  // outcome, and gives only what never changes (the call itself).
  const older = !!existing && stepRank(p.status) < stepRank(existing.processing_status);
  const data: JsonObject = { ...(existing?.component_data ?? { arguments: {}, result: null, error: null, duration_ms: null, approval: null }) };
  data.call_id = p.call_id;
  data.name = p.name;
  for (const key of ["arguments", "round", "index", "text_offset", "result", "error", "duration_ms", "approval"] as const) {
    const value = (p as unknown as Record<string, unknown>)[key];
    if (value !== undefined && (!older || CALL_FIELDS.has(key))) data[key] = value as JsonObject[string];
  }
  if (data.text_offset === undefined) data.text_offset = draft.rows.get(placeholderId(p.reply_to, p.call_id))?.component_data.text_offset ?? 0;
  draft.rows.delete(placeholderId(p.reply_to, p.call_id));
  draft.rows.set(p.message_id, {
    ...(existing ?? {
      id: p.message_id,
      session: draft.sessionId,
      message_type: MessageType.TOOL,
      content: "",
      files: [],
      reply_to: p.reply_to,
      stream_sequence: 0,
      timestamp: p.timestamp,
    }),
    component_type: p.name,
    component_data: data,
    processing_status: older ? existing.processing_status : p.status,
  });
  // A result of a step not known yet: its arguments and place are in the row.
  if (!existing && !("arguments" in p)) draft.read(BuiltinModel.MESSAGE, p.message_id);
}

function applyModelChange(draft: Draft, p: ModelChangeEvent): void {
  if (p.model === BuiltinModel.SESSION) {
    if (p.operation === ModelOperation.DELETE) draft.session = null;
    else draft.reads.push({ model: BuiltinModel.SESSION, delay: READ_DELAY });
    return;
  }
  if (p.model !== BuiltinModel.MESSAGE && p.model !== BuiltinModel.WIDGET && p.model !== BuiltinModel.FILE) return;
  for (const pk of p.pks) {
    if (p.operation === ModelOperation.DELETE) {
      if (p.model === BuiltinModel.MESSAGE) {
        draft.rows.delete(pk);
        draft.dropStream(pk);
      } else if (p.model === BuiltinModel.WIDGET) draft.widgets.delete(pk);
      else draft.files.delete(pk);
      continue;
    }
    if (p.model === BuiltinModel.MESSAGE && p.operation_id && draft.ownOperations.has(p.operation_id)) {
      // The echo of our own send: the local copy is replaced once the row is read. A copy marked
      // failed is adopted too: its answer was lost (the connection dropped) after the server
      // stored it, and keeping it would show the message twice and offer to send it again.
      for (const [id, row] of draft.rows) {
        if (row.local && row.operationId === p.operation_id) draft.adoptions.set(pk, id);
      }
    }
    draft.read(p.model, pk);
  }
}

function applyChunk(draft: Draft, event: TextChunkEvent): void {
  const row = draft.rows.get(event.message_id);
  // A finished row is the whole truth: later chunks (a late transport) change nothing.
  if (row && FINISHED_STATUSES.has(row.processing_status)) return;
  if (row) seedStream(draft, event.message_id);
  const stream = draft.stream(event.message_id);
  stream.applyChunk(event);
  // Not read yet, or a gap: the row gives what came before.
  if (!row) {
    draft.read(BuiltinModel.MESSAGE, event.message_id);
    return;
  }
  showStream(draft, event.message_id);
  if (stream.needsRow) draft.read(BuiltinModel.MESSAGE, event.message_id, GAP_RETRY_DELAY);
}

/**
 * Start a message's assembler from its row when it has none: a row that is not streaming (a reply
 * waiting for an approval) gets chunks again when its turn resumes, after the text it has.
 */
function seedStream(draft: Draft, messageId: string): void {
  const row = draft.rows.get(messageId);
  if (!row || draft.peekStream(messageId)) return;
  draft.stream(messageId).applyRow({ content: row.content, stream_sequence: row.stream_sequence, processing_status: ProcessingStatus.STREAMING });
}

/** Copy a message's assembled text into its row (the row is streaming while it streams). */
function showStream(draft: Draft, messageId: string): void {
  const row = draft.rows.get(messageId);
  const stream = draft.peekStream(messageId);
  if (!row || !stream || FINISHED_STATUSES.has(row.processing_status)) return;
  if (row.content === stream.text && row.stream_sequence === stream.sequence) return;
  // The last chunks of a reply that now waits for an approval: its status stays.
  const status = row.processing_status === ProcessingStatus.AWAITING_APPROVAL ? row.processing_status : ProcessingStatus.STREAMING;
  draft.rows.set(messageId, { ...row, content: stream.text, stream_sequence: stream.sequence, processing_status: status });
}

/** Take a message row from the server, keeping streamed text that is newer than the row's. */
function mergeMessage(draft: Draft, row: MessageRow): void {
  const adopted = draft.adoptions.get(row.id);
  if (adopted) {
    draft.rows.delete(adopted);
    draft.adoptions.delete(row.id);
  }
  const existing = draft.rows.get(row.id);
  if (existing && !existing.local && !isNotOlder(row, existing)) return;
  // Off the path since a change this copy is older than (a read that started before it).
  if (draft.offPath.has(row.id) && !isNotOlder(row, { updated_at: draft.offPath.get(row.id) })) return;
  if (row.active === false) {
    leavePath(draft, row.id, row.updated_at ?? null);
    return;
  }
  draft.offPath.delete(row.id);
  if (isToolRow(row)) {
    // A read that started before the step moved on (an event said so) is older than it.
    if (existing && stepRank(row.processing_status) < stepRank(existing.processing_status)) return;
    if (row.reply_to) {
      // Its placeholder, unless that is a later round's call with the same id.
      const id = placeholderId(row.reply_to, callIdOf(row));
      const placeholder = draft.rows.get(id);
      if (placeholder && roundOf(placeholder) <= roundOf(row)) draft.rows.delete(id);
    }
  } else if (FINISHED_STATUSES.has(row.processing_status)) {
    // The reply is over: a call the model began but that got no row (the turn was cancelled or
    // failed meanwhile) never will.
    const reply = row.message_type === MessageType.USER ? row.id : row.message_type === MessageType.AGENT ? row.reply_to : null;
    if (reply) dropPlaceholders(draft, reply);
  }
  draft.rows.set(row.id, { ...row });
  if (row.processing_status !== ProcessingStatus.STREAMING) {
    // Finished (the whole truth), or not streaming at all.
    draft.dropStream(row.id);
    return;
  }
  const stream = draft.stream(row.id);
  stream.applyRow(row);
  showStream(draft, row.id);
  // Still a gap: the row is saved at an interval; read it again shortly.
  if (stream.needsRow) draft.read(BuiltinModel.MESSAGE, row.id, GAP_RETRY_DELAY);
}

/**
 * A message left the active path: it leaves the store, and so does its reply when it is a user
 * message (the rows answering it: agent message, tool steps, widget messages, placeholders). Its
 * events are ignored from then on (`offPath`), until a read brings it back active.
 */
function leavePath(draft: Draft, id: string, updatedAt: string | null): void {
  const row = draft.rows.get(id);
  if (row?.local) return;
  draft.rows.delete(id);
  draft.dropStream(id);
  draft.offPath.set(id, updatedAt ?? stamp(row));
  for (const [replyId, reply] of draft.rows) {
    if (reply.reply_to !== id || reply.local) continue;
    draft.rows.delete(replyId);
    draft.dropStream(replyId);
    if (!reply.placeholder) draft.offPath.set(replyId, stamp(reply));
  }
}

function stamp(row: { updated_at?: unknown } | undefined): string | null {
  return typeof row?.updated_at === "string" ? row.updated_at : null;
}

/**
 * A user message this client made active (a new version, or one switched to): only one version of
 * a message is on the path, so the other version the store shows left it, with every user message
 * after it and their replies (the rest of that path). The server's `model_change` says the same a
 * moment later; this shows it at once.
 */
function followVersion(draft: Draft, row: MessageRow): void {
  if (row.message_type !== MessageType.USER || row.active === false || !draft.rows.has(row.id)) return;
  const group = row.version_group ?? row.id;
  let from: number | null = null;
  for (const other of draft.rows.values()) {
    if (other.local || other.id === row.id || other.message_type !== MessageType.USER || (other.version_group ?? other.id) !== group) continue;
    const t = microseconds(other.timestamp);
    if (from === null || t < from) from = t;
  }
  if (from === null) return;
  for (const other of [...draft.rows.values()]) {
    if (!other.local && other.id !== row.id && other.message_type === MessageType.USER && microseconds(other.timestamp) >= from) {
      leavePath(draft, other.id, null);
    }
  }
}

function mergeWidget(draft: Draft, row: WidgetRow): void {
  if (isNotOlder(row, draft.widgets.get(row.id))) draft.widgets.set(row.id, row);
}

/** Take a file row; an upload of it shows the fresh row too (its extraction status). */
function mergeFile(draft: Draft, row: FileRow): void {
  if (!isNotOlder(row, draft.files.get(row.id))) return;
  draft.files.set(row.id, row);
  draft.uploads = draft.uploads.map((u) => (u.file?.id === row.id ? { ...u, file: row } : u));
}

function patchUpload(draft: Draft, key: string, patch: Partial<UploadState>): void {
  draft.uploads = draft.uploads.map((u) => (u.key === key ? { ...u, ...patch } : u));
}

/** A full read replaces what it covers: rows it no longer returns are gone, except local ones and live streams. */
function applySync(draft: Draft, action: Extract<StoreAction, { type: "synced" }>): void {
  if (isNotOlder(action.session, draft.session)) draft.session = action.session;
  const seen = new Set(action.messages.map((m) => m.id));
  for (const [id, row] of draft.rows) {
    // Rows that arrived while the read ran (from a refetch) are newer than it: they stay.
    if (!action.known.has(id) || seen.has(id) || row.local || row.placeholder) continue;
    if (row.processing_status !== ProcessingStatus.STREAMING) {
      draft.rows.delete(id);
      draft.dropStream(id);
    } else {
      // A live stream the read of the active path lacks: its reply may have left the path while
      // the channel was down (a version made in another tab). Its row says (read by id).
      draft.read(BuiltinModel.MESSAGE, id, 0);
    }
  }
  for (const row of action.messages) mergeMessage(draft, row);
  for (const row of action.widgets) mergeWidget(draft, row);
  for (const row of action.files) {
    if (isNotOlder(row, draft.files.get(row.id))) draft.files.set(row.id, row);
  }
  draft.loaded = true;
  // The read worked: a network error it followed is over.
  if (draft.error && isNetworkError(draft.error)) draft.error = null;
}

/**
 * Whether `row` may replace `existing`: reads can finish out of order (a refetch started before a
 * change may answer after one started after it), so an older copy never replaces a newer one.
 */
export function isNotOlder(row: { updated_at?: unknown }, existing: { updated_at?: unknown } | undefined | null): boolean {
  if (!existing || typeof existing.updated_at !== "string" || typeof row.updated_at !== "string") return true;
  return Date.parse(row.updated_at) >= Date.parse(existing.updated_at);
}
