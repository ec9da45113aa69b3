/**
 * The public snapshot of a store state: messages in order with their widget and attachments, the
 * phase and `busy`. A pure function of the state; the store builds it once per state it shows.
 */

import { MessageType, ProcessingStatus } from "../constants.js";
import type { FileRow, MessageRow, WidgetRow } from "../types.js";
import type { ConversationMessage, ConversationPhase, ConversationState, StoreState } from "./state.js";

const BUSY_USER = new Set<string>([ProcessingStatus.PENDING, ProcessingStatus.PROCESSING]);

/** The snapshot listeners get. */
export function view(state: StoreState): ConversationState {
  const widgetsByMessage = new Map<string, WidgetRow>();
  for (const widget of state.widgets.values()) if (widget.message) widgetsByMessage.set(widget.message, widget);
  const stored = [...state.rows.values()];
  stored.sort((a, b) => {
    // Local messages (not confirmed yet) come last, in the order they were sent.
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
      attachments: (row.files ?? []).map((id) => state.files.get(id)).filter((f): f is FileRow => !!f),
      streaming: row.processing_status === ProcessingStatus.STREAMING,
      local: !!local,
      sendError: sendError ?? null,
    };
  });
  const streaming = messages.find((m) => m.streaming) ?? null;
  const waiting = messages.some((m) => m.message_type === MessageType.USER && !m.local && BUSY_USER.has(m.processing_status));
  const sending = messages.some((m) => m.local && !m.sendError) || state.uploads.some((u) => u.status === "uploading");
  const phase: ConversationPhase = !state.loaded
    ? "loading"
    : streaming
      ? "streaming"
      : sending
        ? "sending"
        : waiting
          ? "waiting"
          : "idle";
  return {
    sessionId: state.sessionId,
    session: state.session,
    messages,
    widgets: Object.fromEntries(state.widgets),
    files: Object.fromEntries(state.files),
    uploads: [...state.uploads],
    phase,
    busy: !!streaming || waiting || sending,
    streamingMessageId: streaming?.id ?? null,
    connection: state.connection,
    error: state.error,
    loaded: state.loaded,
  };
}

/** A one-line picture of a state, for timeouts and logs. */
export function summarize(state: ConversationState): string {
  const messages = state.messages
    .map((m) => `${m.message_type}:${m.processing_status}${m.local ? ":local" : ""}${m.widget ? `:${m.widget.widget_type}` : ""}(${m.content.length})`)
    .join(" ");
  const uploads = state.uploads.map((u) => `${u.filename}:${u.status}:${u.file?.extraction_status ?? "-"}`).join(" ");
  return `phase=${state.phase} busy=${state.busy} connection=${state.connection} error=${state.error?.code ?? "none"} messages=[${messages}] uploads=[${uploads}]`;
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

/** At the same instant: the user's message, then the agent's, then its widget. */
function typeRank(row: MessageRow): number {
  return row.message_type === MessageType.USER ? 0 : row.message_type === MessageType.WIDGET ? 2 : 1;
}
