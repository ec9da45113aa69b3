/**
 * The store's uploads: one file through `client.files.upload`, its progress and outcome in
 * `state.uploads` (the reducer's `upload*` actions), the caller's progress callback told each step.
 */

import { toClientError } from "../errors.js";
import type { UploadProgress } from "../http.js";
import { callListener } from "../internal/report.js";
import type { FileRow } from "../types.js";
import type { StoreHost } from "./host.js";
import type { UploadState } from "./state.js";

export interface UploadCallOptions {
  signal?: AbortSignal;
  onProgress?: (upload: UploadState) => void;
}

export class Uploader {
  /** Numbers the uploads of this store: their keys, and the name of a Blob without one. */
  private count = 0;

  constructor(private readonly host: StoreHost) {}

  async upload(file: Blob, options: UploadCallOptions = {}): Promise<FileRow> {
    this.count += 1;
    const key = `upload-${this.count}`;
    const filename = (file as { name?: string }).name || `file-${this.count}`;
    // The caller's progress callback: what it throws is reported and does not fail the upload.
    const progress = () => {
      const upload = this.host.state().uploads.find((u) => u.key === key);
      if (upload && options.onProgress) callListener(options.onProgress, upload);
    };
    const upload: UploadState = { key, filename, size: file.size, loaded: 0, total: file.size, status: "uploading", file: null, error: null };
    this.host.dispatch({ type: "uploadStarted", upload });
    progress();
    try {
      const row = await this.host.deps.files.upload(file, {
        sessionId: this.host.sessionId,
        filename,
        onProgress: (p: UploadProgress) => {
          this.host.dispatch({ type: "uploadProgress", key, loaded: p.loaded, total: p.total || file.size });
          progress();
        },
        ...(options.signal ? { signal: options.signal } : {}),
      });
      this.host.dispatch({ type: "uploaded", key, row });
      progress();
      return row;
    } catch (error) {
      const wrapped = toClientError(error);
      this.host.dispatch({ type: "uploadFailed", key, error: wrapped });
      progress();
      throw wrapped;
    }
  }
}
