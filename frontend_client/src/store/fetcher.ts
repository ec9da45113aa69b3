/**
 * The store's row fetcher: the rows the reducer asks for (`Step.reads`) are gathered and read
 * together, one query per model (`id__in`), after the shortest delay any of them asked for. A read
 * that fails is tried again after `READ_RETRY_DELAY`: what the store shows may be stale until then.
 */

import { BuiltinModel } from "../constants.js";
import { toClientError } from "../errors.js";
import type { StoreHost } from "./host.js";
import type { RowRead } from "./reducer.js";

const READ_RETRY_DELAY = 2000;

export class RowFetcher {
  private readonly wanted = {
    [BuiltinModel.MESSAGE]: new Set<string>(),
    [BuiltinModel.WIDGET]: new Set<string>(),
    [BuiltinModel.FILE]: new Set<string>(),
  };
  private session = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private due = 0;

  constructor(private readonly host: StoreHost) {}

  want(read: RowRead): void {
    if (read.model === BuiltinModel.SESSION) this.session = true;
    else this.wanted[read.model].add(read.pk);
    this.schedule(read.delay);
  }

  /** Stop the timer for good (the store was closed). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delay: number): void {
    if (this.host.isClosed()) return;
    const due = Date.now() + delay;
    if (this.timer) {
      // One timer for every pending read; a sooner request (a finished message) moves it earlier.
      if (due >= this.due) return;
      clearTimeout(this.timer);
    }
    this.due = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, delay);
  }

  private async run(): Promise<void> {
    const messages = [...this.wanted.message];
    const widgets = [...this.wanted.widget];
    const files = [...this.wanted.file];
    const session = this.session;
    this.wanted.message.clear();
    this.wanted.widget.clear();
    this.wanted.file.clear();
    this.session = false;
    const { deps, sessionId } = this.host;
    try {
      const [messageRows, widgetRows, fileRows, sessionRow] = await Promise.all([
        messages.length ? deps.messages.filter({ id__in: messages }).limit(messages.length).fetch() : [],
        widgets.length ? deps.widgets.filter({ id__in: widgets }).limit(widgets.length).fetch() : [],
        files.length ? deps.files.filter({ id__in: files }).limit(files.length).fetch() : [],
        session ? deps.sessions.get(sessionId) : null,
      ]);
      if (this.host.isClosed()) return;
      this.host.dispatch({ type: "read", session: sessionRow, messages: messageRows, widgets: widgetRows, files: fileRows });
    } catch (error) {
      for (const pk of messages) this.wanted.message.add(pk);
      for (const pk of widgets) this.wanted.widget.add(pk);
      for (const pk of files) this.wanted.file.add(pk);
      this.session ||= session;
      this.schedule(READ_RETRY_DELAY);
      this.host.dispatch({ type: "error", error: toClientError(error) });
    }
  }
}
