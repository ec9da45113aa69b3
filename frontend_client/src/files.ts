/** `client.files`: the `file` model plus uploads with progress. */

import { BuiltinModel } from "./constants.js";
import type { UploadProgress } from "./http.js";
import { ModelManager, singleRow, type ModelContext } from "./queryset.js";
import type { FileRow, Normalized } from "./types.js";

export interface UploadOptions {
  /** Attach the file to this conversation (its extraction progress then reaches the conversation's channel). */
  sessionId?: string;
  /** The name sent to the server; default: the File's name. */
  filename?: string;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
}

export class FileManager extends ModelManager<FileRow> {
  constructor(ctx: ModelContext) {
    super(ctx, BuiltinModel.FILE);
  }

  /**
   * Upload a file (`POST files/`, field `file`). Text extraction starts on the server; follow it
   * with `client.files.filter({ id: row.id }).live(...)` or in a conversation's state.
   * Browsers report progress through XMLHttpRequest; elsewhere only the start and the end.
   */
  async upload(file: Blob, options: UploadOptions = {}): Promise<FileRow> {
    const form = new FormData();
    const name = options.filename ?? (file as { name?: string }).name ?? "upload";
    form.append("file", file, name);
    if (options.sessionId) form.append("session", options.sessionId);
    const answer = await this.ctx.transport.upload<Normalized<string>>("files/", form, {
      total: file.size,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return singleRow<FileRow>(answer, BuiltinModel.FILE);
  }
}
