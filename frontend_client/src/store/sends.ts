/**
 * The store's sends. A message shows at once as a local copy, its files are uploaded, and then it
 * is created on the server. Messages reach the server in the order `send()` was called, whatever
 * each one uploads first: a create waits for the creates of the sends before it (one promise
 * chain). `stop()` (the store's `cancel()`) aborts the sends that have not started their create and
 * waits for all of them to settle.
 */

import { ErrorCode, MessageType, ProcessingStatus } from "../constants.js";
import { toClientError, UsageError } from "../errors.js";
import type { FileRow, MessageRow } from "../types.js";
import type { StoreHost } from "./host.js";
import type { Attachment, StoredMessage, UploadState } from "./state.js";
import type { Uploader } from "./uploads.js";

export interface SendOptions {
  files?: Attachment[];
  signal?: AbortSignal;
  onUploadProgress?: (upload: UploadState) => void;
}

interface PendingSend {
  controller: AbortController;
  /** The create request is on its way: the server may have the message already. */
  creating: boolean;
  /** Resolves when the send is over, whatever its outcome. */
  settled: Promise<void>;
}

export class Sender {
  private readonly pending = new Set<PendingSend>();
  /** Settles when the last send so far has created its message (or failed). */
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly host: StoreHost,
    private readonly uploader: Uploader,
    /** Read the conversation again (after a send, when no channel tells the store what followed). */
    private readonly sync: () => void,
  ) {}

  /** Send `text` with `options.files` under `operationId` (a new one, or the first try's for a retry). */
  async send(text: string, options: SendOptions, operationId: string): Promise<MessageRow> {
    if (typeof text !== "string" || !text.trim()) {
      // The code the server gives an empty message: a page checks one code, whoever refused it.
      throw new UsageError("Type a message first.", { code: ErrorCode.INVALID_MESSAGE, field: "content" });
    }
    const localId = `local-${operationId}`;
    const previous = this.queue;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.queue = previous.then(() => mine);
    const pending: PendingSend = { controller: new AbortController(), creating: false, settled: mine };
    const signal = pending.controller.signal;
    const unlink = linkSignal(pending.controller, options.signal);
    this.pending.add(pending);
    this.host.dispatch({ type: "sendStarted", row: localRow(this.host.sessionId, localId, text, operationId) });
    try {
      const fileIds: string[] = [];
      // Kept on the local row for retry(): the uploaded files by id, the others as given.
      const toSend: Attachment[] = [...(options.files ?? [])];
      const keep = () => this.host.dispatch({ type: "sendFiles", localId, files: fileIds, attachmentsToSend: toSend });
      keep();
      for (const [index, item] of (options.files ?? []).entries()) {
        if (typeof item === "string") fileIds.push(item);
        else if (isRow(item)) fileIds.push(item.id);
        else {
          const uploaded = await this.uploader.upload(item, {
            signal,
            ...(options.onUploadProgress ? { onProgress: options.onUploadProgress } : {}),
          });
          fileIds.push(uploaded.id);
          toSend[index] = uploaded.id;
        }
        keep();
      }
      await previous;
      if (signal.aborted) throw new DOMException("The message was not sent.", "AbortError");
      const body: Record<string, unknown> = { session: this.host.sessionId, content: text };
      if (fileIds.length) body.files = fileIds;
      // From here on stop() waits for the answer and then the turn is cancelled.
      pending.creating = true;
      const row = await this.host.deps.messages.create(body as Partial<MessageRow>, {
        operationId,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      this.host.dispatch({ type: "sent", localId, row });
      if (!this.host.deps.realtime.enabled || this.host.state().connection === "failed") this.sync();
      return row;
    } catch (error) {
      const wrapped = toClientError(error);
      this.host.dispatch({ type: "sendFailed", localId, error: wrapped });
      throw wrapped;
    } finally {
      this.pending.delete(pending);
      unlink();
      done();
    }
  }

  /** Abort the sends that have not started their create; resolves once every send has settled. */
  async stop(): Promise<void> {
    const pending = [...this.pending];
    for (const send of pending) if (!send.creating) send.controller.abort();
    await Promise.all(pending.map((send) => send.settled));
  }
}

function localRow(sessionId: string, localId: string, text: string, operationId: string): StoredMessage {
  return {
    id: localId,
    session: sessionId,
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
}

/** Abort `own` with the caller's `signal` too; returns the function that unlinks them. */
function linkSignal(own: AbortController, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => undefined;
  const abort = () => own.abort(signal.reason);
  if (signal.aborted) abort();
  else signal.addEventListener("abort", abort, { once: true });
  return () => signal.removeEventListener("abort", abort);
}

function isRow(value: unknown): value is FileRow {
  return typeof value === "object" && value !== null && typeof (value as { id?: unknown }).id === "string" && !(value instanceof Blob);
}
