/**
 * Rebuild a streamed message from its row and its `text_chunk` events (docs/protocol.md, "Text
 * chunks" and "Resuming a stream"). The conversation store uses one per streaming message; a
 * client of its own (a custom UI on raw events) can use it the same way:
 *
 * 1. subscribe to the session channel and buffer `text_chunk` events;
 * 2. read the agent message row;
 * 3. feed both to a `StreamAssembler`, in any order. A chunk's `offset` (UTF-16 code units, what
 *    `String.length` counts) says where its text starts, so the assembler appends what extends
 *    the known text, drops what it already has and holds chunks that start beyond it (a gap)
 *    until a fresher row fills the gap. While `needsRow` is true, read the row again after a
 *    short delay (the server saves it every `STREAM_SAVE_INTERVAL` seconds and at the end).
 *
 * Events never carry the same text twice under different offsets, but one long write is split
 * into several events that share `first_sequence`/`sequence`, and a row can be saved in the
 * middle of a coalesced event: that is why it orders and deduplicates by `offset`, never by
 * `sequence`. The Python twin is `django_ai.conversations.realtime.resume.StreamAssembler`.
 */

import { FINISHED_STATUSES, type ProcessingStatus } from "./constants.js";

/** The fields of a `message` row the assembler reads. */
export interface StreamRow {
  content: string;
  stream_sequence?: number;
  processing_status?: ProcessingStatus | string;
}

/** The fields of a `text_chunk` payload the assembler reads. */
export interface StreamChunk {
  message_id: string;
  text: string;
  sequence: number;
  offset?: number;
  first_sequence?: number;
}

export class StreamAssembler {
  readonly messageId: string;
  private known = "";
  private lastSequence = 0;
  private done = false;
  /** Chunks with an offset that start beyond the known text, by offset. */
  private readonly heldByOffset = new Map<number, StreamChunk>();
  /** Chunks without an offset (one write each) that do not follow the known text, by sequence. */
  private readonly heldBySequence = new Map<number, StreamChunk>();

  constructor(messageId: string) {
    this.messageId = String(messageId);
  }

  /**
   * A copy that changes on its own: the conversation store keeps assemblers in states it never
   * changes in place, so it copies one before applying a chunk or a row to it.
   */
  clone(): StreamAssembler {
    const copy = new StreamAssembler(this.messageId);
    copy.known = this.known;
    copy.lastSequence = this.lastSequence;
    copy.done = this.done;
    for (const [offset, chunk] of this.heldByOffset) copy.heldByOffset.set(offset, chunk);
    for (const [sequence, chunk] of this.heldBySequence) copy.heldBySequence.set(sequence, chunk);
    return copy;
  }

  /** The text so far. */
  get text(): string {
    return this.known;
  }

  /** The sequence of the last write whose text (or its first part) is in `text`. */
  get sequence(): number {
    return this.lastSequence;
  }

  /** True once a finished row was applied: its content is the whole truth. */
  get finished(): boolean {
    return this.done;
  }

  /** True while chunks are held for text that only a fresher row can give: read the row again. */
  get needsRow(): boolean {
    return !this.done && (this.heldByOffset.size > 0 || this.heldBySequence.size > 0);
  }

  /**
   * Apply the message row. A finished row (`completed`, `failed`, `cancelled`) replaces
   * everything; a streaming row is taken when it is ahead of what the chunks gave. Returns
   * whether `text` changed.
   */
  applyRow(row: StreamRow): boolean {
    const before = this.known;
    const sequence = Number(row.stream_sequence ?? 0);
    if (row.processing_status && FINISHED_STATUSES.has(row.processing_status as ProcessingStatus)) {
      this.known = row.content;
      this.lastSequence = sequence;
      this.done = true;
      this.heldByOffset.clear();
      this.heldBySequence.clear();
      return this.known !== before;
    }
    if (this.done) return false;
    if (row.content.length > this.known.length) {
      this.known = row.content;
      this.lastSequence = Math.max(this.lastSequence, sequence);
    }
    this.release();
    return this.known !== before;
  }

  /**
   * Apply one `text_chunk` payload. Returns false when it is held (a gap), belongs to another
   * message or arrives after a finished row; true when it was applied or was already known.
   */
  applyChunk(chunk: StreamChunk): boolean {
    if (String(chunk.message_id) !== this.messageId || this.done) return false;
    const text = chunk.text ?? "";
    const sequence = Number(chunk.sequence ?? 0);
    if (typeof chunk.offset !== "number") {
      // A sender without offsets (the Memory backend of Python tests): one write per event.
      if (sequence <= this.lastSequence) return true;
      this.heldBySequence.set(sequence, { ...chunk, text });
      this.release();
      return !this.heldBySequence.has(sequence);
    }
    const offset = chunk.offset;
    this.heldByOffset.set(offset, { ...chunk, text });
    this.release();
    return !this.heldByOffset.has(offset);
  }

  /** Apply held chunks that now touch the known text, in offset (or sequence) order. */
  private release(): void {
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const offset of [...this.heldByOffset.keys()].sort((a, b) => a - b)) {
        if (offset > this.known.length) break; // still a gap
        const chunk = this.heldByOffset.get(offset) as StreamChunk;
        this.heldByOffset.delete(offset);
        progressed = true;
        const end = offset + chunk.text.length;
        if (end <= this.known.length) continue; // already known
        const cut = this.known.length - offset;
        if (splitsPair(chunk.text, cut)) continue; // cannot happen with a consistent server: the row gets re-read
        this.known += chunk.text.slice(cut);
        this.lastSequence = Math.max(this.lastSequence, Number(chunk.sequence ?? 0));
      }
      for (const sequence of [...this.heldBySequence.keys()].sort((a, b) => a - b)) {
        if (sequence <= this.lastSequence) {
          this.heldBySequence.delete(sequence);
          continue;
        }
        if (sequence !== this.lastSequence + 1) break;
        const chunk = this.heldBySequence.get(sequence) as StreamChunk;
        this.heldBySequence.delete(sequence);
        this.known += chunk.text;
        this.lastSequence = sequence;
        progressed = true;
      }
    }
  }
}

/** Whether cutting `text` before index `at` separates the two halves of a surrogate pair. */
function splitsPair(text: string, at: number): boolean {
  if (at <= 0 || at >= text.length) return false;
  const before = text.charCodeAt(at - 1);
  const after = text.charCodeAt(at);
  return before >= 0xd800 && before <= 0xdbff && after >= 0xdc00 && after <= 0xdfff;
}
