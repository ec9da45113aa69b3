/**
 * The store's version operations and feedback (docs/sdk.md, "Versions"): the row actions
 * `regenerate`, `edit`, `activate` and `feedback` of a message (`POST
 * models/message/<pk>/<action>/`), and the versions of a user message (one query on its
 * `version_group`).
 *
 * Each request carries an `X-Operation-Id` as a send does; regenerate and edit start a turn, and
 * the server answers a repeated one with the version the first made. An answer lost to the network
 * (the server may have done it) is asked for once more under the same id, so a version is never
 * made twice (switching or rating again is harmless); a caller that retries later passes the
 * `operationId` of the first call.
 *
 * The row the server answers with goes to the reducer at once (`messageSaved`): a new or chosen
 * version takes the place of the one the store showed; the rows that joined the path come with
 * the server's `model_change`.
 */

import { BuiltinModel, ErrorCode, FeedbackRating, MessageType } from "../constants.js";
import { ConversationClientError, isNetworkError, toClientError, UsageError } from "../errors.js";
import { newOperationId } from "../http.js";
import type { MessageRow } from "../types.js";
import { rowOf } from "./approvals.js";
import type { StoreHost } from "./host.js";
import type { Attachment, UploadState } from "./state.js";
import type { Uploader } from "./uploads.js";

/** Options of `regenerate()`, `setActiveVersion()` and `feedback()`. */
export interface VersionOptions {
  /** Sent as `X-Operation-Id`: the id of an earlier call to make the same request again (the
   * server answers with what that call made instead of making it twice); a new one by default. */
  operationId?: string;
  signal?: AbortSignal;
}

/** Options of `edit()`. */
export interface EditOptions extends VersionOptions {
  /**
   * The new version's files: Blobs/Files to upload, uploaded files (rows or ids). Omitted, the
   * version keeps the files of the message it replaces; `[]` sends it without any.
   */
  files?: Attachment[];
  onUploadProgress?: (upload: UploadState) => void;
}

/** The rating of `feedback()`: thumbs up, thumbs down, or null to withdraw it. */
export type Rating = FeedbackRating | null;

const RATINGS = new Set<unknown>([FeedbackRating.UP, FeedbackRating.DOWN, null]);

export class Versions {
  constructor(
    private readonly host: StoreHost,
    private readonly uploader: Uploader,
  ) {}

  async regenerate(messageId: string, options: VersionOptions = {}): Promise<MessageRow> {
    checkId(messageId, "regenerate");
    return this.act(messageId, "regenerate", {}, options);
  }

  async edit(messageId: string, content: string, options: EditOptions = {}): Promise<MessageRow> {
    checkId(messageId, "edit");
    if (typeof content !== "string" || !content.trim()) {
      // The code the server gives an empty message, as send() does.
      throw new UsageError("Type a message first.", { code: ErrorCode.INVALID_MESSAGE, field: "content" });
    }
    if (options.files !== undefined && !Array.isArray(options.files)) {
      throw new UsageError("edit()'s files must be a list (of Blobs, file rows or file ids).", { code: ErrorCode.INVALID, field: "files" });
    }
    const body: Record<string, unknown> = { content };
    if (options.files) {
      const ids: string[] = [];
      try {
        for (const item of options.files) {
          if (typeof item === "string") ids.push(item);
          else if (item instanceof Blob) {
            const row = await this.uploader.upload(item, {
              ...(options.signal ? { signal: options.signal } : {}),
              ...(options.onUploadProgress ? { onProgress: options.onUploadProgress } : {}),
            });
            ids.push(row.id);
          } else ids.push(item.id);
        }
      } catch (error) {
        throw toClientError(error);
      }
      body.files = ids;
    }
    return this.act(messageId, "edit", body, options);
  }

  async setActiveVersion(messageId: string, options: VersionOptions = {}): Promise<MessageRow> {
    checkId(messageId, "setActiveVersion");
    return this.act(messageId, "activate", {}, options);
  }

  async feedback(messageId: string, rating: Rating, comment?: string, options: VersionOptions = {}): Promise<MessageRow> {
    checkId(messageId, "feedback");
    if (!RATINGS.has(rating)) {
      throw new UsageError('feedback()\'s rating must be "up", "down" or null.', { code: ErrorCode.INVALID, field: "rating" });
    }
    if (comment !== undefined && typeof comment !== "string") {
      throw new UsageError("feedback()'s comment must be a string.", { code: ErrorCode.INVALID, field: "comment" });
    }
    const body: Record<string, unknown> = { rating };
    if (comment !== undefined) body.comment = comment;
    return this.act(messageId, "feedback", body, options);
  }

  /**
   * Every version of the user message `messageId` names (it, or a reply to it), in
   * `version_index` order. A message with no other version answers itself, without a request
   * when the store shows it.
   */
  async versions(messageId: string, options: { signal?: AbortSignal } = {}): Promise<MessageRow[]> {
    checkId(messageId, "versions");
    const messages = this.host.deps.messages;
    const read = async (id: string): Promise<MessageRow> => {
      const shown = this.host.state().rows.get(id);
      if (shown && !shown.local && !shown.placeholder) return shown;
      // By id: every version, on the active path or not (the bridge's default scope does not apply).
      return messages.get({ id }, options);
    };
    let row = await read(messageId);
    if (row.message_type !== MessageType.USER) {
      if (!row.reply_to) {
        throw new UsageError("This message answers no user message: it has no versions.", { code: ErrorCode.NOT_A_USER_MESSAGE, field: "messageId" });
      }
      row = await read(row.reply_to);
    }
    if (!row.version_group && (row.version_count ?? 1) <= 1) return [plain(row)];
    const group = row.version_group ?? row.id;
    const found: MessageRow[] = [];
    const query = messages.filter({ version_group: group }).orderBy("timestamp");
    for (;;) {
      const page = await query.offset(found.length).fetchPage(options);
      found.push(...page.rows);
      if (!page.meta.has_more || page.rows.length === 0) break;
    }
    return found.sort((a, b) => (a.version_index ?? 1) - (b.version_index ?? 1));
  }

  /** `POST models/message/<pk>/<action>/`: the row it answers, given to the reducer; the typed error otherwise. */
  private async act(messageId: string, action: string, body: Record<string, unknown>, options: VersionOptions): Promise<MessageRow> {
    const operationId = options.operationId ?? newOperationId();
    const path = `models/${BuiltinModel.MESSAGE}/${encodeURIComponent(messageId)}/${action}/`;
    const request = () =>
      this.host.deps.transport.request<unknown>("POST", path, { body, operationId, ...(options.signal ? { signal: options.signal } : {}) });
    try {
      let reply: unknown;
      try {
        reply = await request();
      } catch (error) {
        // The answer was lost: the server may have done it. The same request under the same
        // operation id gets what it did, never a second version.
        if (!isNetworkError(error) || options.signal?.aborted) throw error;
        reply = await request();
      }
      const row = rowOf(reply);
      if (!row) throw new ConversationClientError("The server's answer does not include the message row.", { code: "malformed_answer" });
      this.host.dispatch({ type: "messageSaved", row });
      return row;
    } catch (error) {
      const wrapped = toClientError(error);
      if (wrapped.code !== "aborted") this.host.dispatch({ type: "error", error: wrapped });
      throw wrapped;
    }
  }
}

function checkId(messageId: unknown, method: string): void {
  if (typeof messageId !== "string" || !messageId) {
    throw new UsageError(`${method}() needs the message's id.`, { code: ErrorCode.INVALID, field: "messageId" });
  }
  if (messageId.startsWith("local-") || messageId.startsWith("tool-call:")) {
    throw new UsageError(`${method}(): this message is not stored yet.`, { code: ErrorCode.INVALID, field: "messageId" });
  }
}

/** A row as the server sent it, without what the store adds to its own copy. */
function plain(row: MessageRow): MessageRow {
  const { local: _l, sendError: _s, operationId: _o, attachmentsToSend: _a, placeholder: _p, ...rest } = row as MessageRow & Record<string, unknown>;
  void _l;
  void _s;
  void _o;
  void _a;
  void _p;
  return rest as MessageRow;
}
