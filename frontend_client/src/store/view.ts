/**
 * The public snapshot of a store state: messages in order with their widget and attachments, each
 * agent message's parts (its text cut where its tool steps and widgets sit), the steps awaiting an
 * approval, the phase and `busy`. A pure function of the state; the store builds it once per state
 * it shows.
 */

import { ApprovalStatus, MessageType, ProcessingStatus } from "../constants.js";
import type { FileRow, Json, JsonObject, MessageRow, ToolApproval, ToolStepError, WidgetRow } from "../types.js";
import type { ConversationMessage, ConversationPhase, ConversationState, MessagePart, StoredMessage, StoreState, ToolStep } from "./state.js";

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
    const { local, sendError, operationId: _op, attachmentsToSend: _files, placeholder: _placeholder, ...rest } = row;
    void _op;
    void _files;
    void _placeholder;
    // A reply counts the versions of the user message it answers.
    const versionOf = row.message_type === MessageType.USER ? row.id : row.reply_to;
    const versioned = versionOf ? state.rows.get(versionOf) : undefined;
    return {
      ...rest,
      parts: [],
      step: row.message_type === MessageType.TOOL ? toolStep(row, state.answering) : null,
      partOf: null,
      files: row.files ?? [],
      widget: widgetsByMessage.get(row.id) ?? null,
      attachments: (row.files ?? []).map((id) => state.files.get(id)).filter((f): f is FileRow => !!f),
      streaming: row.processing_status === ProcessingStatus.STREAMING,
      local: !!local,
      sendError: sendError ?? null,
      versionIndex: positive(versioned?.version_index),
      versionCount: positive(versioned?.version_count),
      versionOf: versionOf ?? null,
    };
  });
  placeParts(messages);
  const pendingApprovals = messages.flatMap((m) => (m.step?.awaitingApproval ? [m.step] : []));
  const streaming = messages.find((m) => m.streaming) ?? null;
  const waiting = messages.some((m) => m.message_type === MessageType.USER && !m.local && BUSY_USER.has(m.processing_status));
  const awaiting =
    pendingApprovals.length > 0 || messages.some((m) => m.message_type === MessageType.USER && m.processing_status === ProcessingStatus.AWAITING_APPROVAL);
  const sending = messages.some((m) => m.local && !m.sendError) || state.uploads.some((u) => u.status === "uploading");
  // A step awaiting approval outranks waiting: a message sent meanwhile waits for the answer too.
  const phase: ConversationPhase = !state.loaded
    ? "loading"
    : streaming
      ? "streaming"
      : sending
        ? "sending"
        : awaiting
          ? "awaiting_approval"
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
    pendingApprovals,
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

/** The tool step of a `tool` row (its `component_data`, read defensively: it is the server's JSON). */
function toolStep(row: StoredMessage, answering: ReadonlySet<string>): ToolStep {
  const d = row.component_data ?? {};
  const approval = isObject(d.approval) ? (d.approval as unknown as ToolApproval) : null;
  const status = row.processing_status;
  return {
    id: row.placeholder ? null : row.id,
    reply_to: row.reply_to ?? "",
    status,
    call_id: typeof d.call_id === "string" ? d.call_id : "",
    name: typeof d.name === "string" ? d.name : row.component_type,
    arguments: isObject(d.arguments) ? d.arguments : {},
    round: typeof d.round === "number" ? d.round : 0,
    index: typeof d.index === "number" ? d.index : 0,
    text_offset: typeof d.text_offset === "number" ? d.text_offset : 0,
    result: d.result ?? null,
    error: isObject(d.error) ? (d.error as unknown as ToolStepError) : null,
    duration_ms: typeof d.duration_ms === "number" ? d.duration_ms : null,
    approval,
    content: row.content,
    timestamp: row.timestamp,
    awaitingApproval: status === ProcessingStatus.AWAITING_APPROVAL && (!approval || approval.status === ApprovalStatus.PENDING),
    answering: !row.placeholder && answering.has(row.id),
  };
}

/** A version number of a row (1 when the row has none: the server does not send it, or a local message). */
function positive(value: unknown): number {
  return typeof value === "number" && value >= 1 ? value : 1;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Fill each agent message's `parts` with its reply's tool and widget messages (the same
 * `reply_to`), placed in its text by their `text_offset` (UTF-16 units, what `String.length`
 * counts; a widget's is its row's `text_offset`). Equal offsets keep the calls' (round, index)
 * order, else the rows' timestamps. A widget without an offset (the bridge does not send a
 * message's `metadata`) sits where the last step made before it sits (a tool showed it while it
 * ran: the model writes no text meanwhile); with no such step, before the text when it was made
 * before the agent message, else after it.
 */
function placeParts(messages: ConversationMessage[]): void {
  const agents = new Map<string, ConversationMessage>();
  for (const m of messages) {
    if (m.message_type === MessageType.AGENT && m.reply_to && !agents.has(m.reply_to)) agents.set(m.reply_to, m);
  }
  const items = new Map<string, { message: ConversationMessage; offset: number }[]>();
  const steps = new Map<string, ToolStep[]>();
  for (const m of messages) if (m.step && m.reply_to) steps.set(m.reply_to, [...(steps.get(m.reply_to) ?? []), m.step]);
  for (const m of messages) {
    if (m.message_type !== MessageType.TOOL && m.message_type !== MessageType.WIDGET) continue;
    const agent = m.reply_to ? agents.get(m.reply_to) : undefined;
    if (!agent) continue;
    m.partOf = agent.id;
    const text = agent.content.length;
    const declared = m.step ? m.step.text_offset : m.text_offset;
    const offset = typeof declared === "number" ? declared : undeclaredOffset(m, agent, steps.get(agent.reply_to ?? "") ?? []);
    const list = items.get(agent.id) ?? [];
    list.push({ message: m, offset: Math.max(0, Math.min(text, offset)) });
    items.set(agent.id, list);
  }
  for (const agent of agents.values()) {
    const placed = (items.get(agent.id) ?? []).sort((a, b) => {
      if (a.offset !== b.offset) return a.offset - b.offset;
      const x = a.message.step;
      const y = b.message.step;
      if (x && y && (x.round !== y.round || x.index !== y.index)) return x.round - y.round || x.index - y.index;
      return microseconds(a.message.timestamp) - microseconds(b.message.timestamp);
    });
    const text = agent.content;
    const parts: MessagePart[] = [];
    const keys = new Set<string>();
    let at = 0;
    for (const { message, offset } of placed) {
      if (offset > at) parts.push({ type: "text", key: `${agent.id}:text:${at}`, text: text.slice(at, offset) });
      at = Math.max(at, offset);
      if (message.step) {
        // A model may reuse a call id in a later round (ids like "call_0" per response): such a
        // step's key adds its round and index, so keys stay unique within the reply.
        let key = `${message.step.reply_to}:${message.step.call_id}`;
        if (keys.has(key)) key += `:${message.step.round}:${message.step.index}`;
        keys.add(key);
        parts.push({ type: "tool", key, step: message.step });
      } else parts.push({ type: "widget", key: message.id, message, widget: message.widget });
    }
    if (at < text.length) parts.push({ type: "text", key: `${agent.id}:text:${at}`, text: text.slice(at) });
    agent.parts = parts;
  }
}

/** Where a widget without a `text_offset` goes (see `placeParts`). */
function undeclaredOffset(widget: ConversationMessage, agent: ConversationMessage, steps: ToolStep[]): number {
  const made = microseconds(widget.timestamp);
  let before: ToolStep | null = null;
  for (const step of steps) {
    const at = microseconds(step.timestamp);
    if (at <= made && (!before || at >= microseconds(before.timestamp))) before = step;
  }
  if (before) return before.text_offset;
  return made < microseconds(agent.timestamp) ? 0 : agent.content.length;
}

/**
 * An ISO timestamp in microseconds since the epoch: the server keeps microseconds, and two
 * messages of one turn are often less than a millisecond apart (Date.parse stops at milliseconds).
 */
export function microseconds(iso: string): number {
  const ms = Date.parse(iso);
  const fraction = /T[\d:]+\.(\d+)/.exec(iso)?.[1] ?? "";
  return ms * 1000 + Number((fraction.slice(3, 6) || "0").padEnd(3, "0"));
}

/** At the same instant: the user's message, then the agent's, then its widget. */
function typeRank(row: MessageRow): number {
  return row.message_type === MessageType.USER ? 0 : row.message_type === MessageType.WIDGET ? 2 : 1;
}
