/**
 * The store's row fetcher: the rows the reducer asks for (`Step.reads`) are gathered and read
 * together, one query per model (`id__in`), after the shortest delay any of them asked for. A read
 * that fails is tried again after `READ_RETRY_DELAY`: what the store shows may be stale until then.
 *
 * One read runs at a time (the next waits for it), so answers reach the reducer in the order the
 * reads were made: a message that left the active path and came back is never shown as it was
 * before by a late answer. The reducer is told which messages were asked for: one the answer
 * lacks is no longer on the path (docs/sdk.md, "Versions").
 */

import { BuiltinModel } from "../constants.js";
import { isNotFound, toClientError } from "../errors.js";
import type { MessageRow, SessionRow } from "../types.js";
import type { StoreHost } from "./host.js";
import type { RowRead } from "./reducer.js";

const READ_RETRY_DELAY = 2000;
/**
 * Ids per message query, well within the bridge's default `QUERY_MAX_LIMIT` and
 * `QUERY_MAX_IN_VALUES` (200 each): a switch of versions can name hundreds of rows.
 */
const IDS_PER_QUERY = 100;

export class RowFetcher {
  private readonly wanted = {
    [BuiltinModel.MESSAGE]: new Set<string>(),
    [BuiltinModel.WIDGET]: new Set<string>(),
    [BuiltinModel.FILE]: new Set<string>(),
  };
  private session = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private due = 0;
  /** Settles when the read running now (if any) is over. */
  private running: Promise<void> = Promise.resolve();

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
      this.running = this.running.then(() => this.run());
    }, delay);
  }

  private async run(): Promise<void> {
    if (this.host.isClosed()) return;
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
        readMessages(deps, messages),
        widgets.length ? deps.widgets.filter({ id__in: widgets }).limit(widgets.length).fetch() : [],
        files.length ? deps.files.filter({ id__in: files }).limit(files.length).fetch() : [],
        // A conversation deleted (here or elsewhere) is missing for good: said once, not retried.
        session ? deps.sessions.get(sessionId).catch((error: unknown) => (isNotFound(error) ? error : Promise.reject(error))) : null,
      ]);
      if (this.host.isClosed()) return;
      const gone = isNotFound(sessionRow) ? sessionRow : null;
      this.host.dispatch({
        type: "read",
        session: gone ? null : (sessionRow as SessionRow | null),
        messages: messageRows,
        widgets: widgetRows,
        files: fileRows,
        asked: messages,
        ...(gone ? { sessionGone: gone } : {}),
      });
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

/** The message rows of `ids` (those the caller may see), one query per `IDS_PER_QUERY` of them. */
async function readMessages(deps: StoreHost["deps"], ids: string[]): Promise<MessageRow[]> {
  const pages: Promise<MessageRow[]>[] = [];
  for (let at = 0; at < ids.length; at += IDS_PER_QUERY) {
    const chunk = ids.slice(at, at + IDS_PER_QUERY);
    pages.push(deps.messages.filter({ id__in: chunk }).limit(chunk.length).fetch());
  }
  return (await Promise.all(pages)).flat();
}
