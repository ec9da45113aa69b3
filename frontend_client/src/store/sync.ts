/**
 * The store's full reads. `run()` reads the session, the latest messages, widgets and files, and
 * hands them to the reducer as one `synced` action; events that arrive meanwhile are held and
 * applied after it (the store subscribed before reading, so nothing falls between the read and
 * the events). One read runs at a time: a call during a read runs once more after it.
 *
 * Without a working realtime channel (`failed`, `closed`, or `reconnecting`: its events are lost
 * until it is back, which can take many seconds) the store polls: while a turn is running it reads
 * again every `POLL_INTERVAL` ms.
 */

import { toClientError } from "../errors.js";
import type { RealtimeEvent } from "../types.js";
import type { StoreHost } from "./host.js";

const POLL_INTERVAL = 1000;

export class Syncer {
  private running = false;
  private again = false;
  private held: RealtimeEvent[] = [];
  private pollTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly host: StoreHost,
    /** How many of the latest messages (and widgets, files) a read takes. */
    private readonly history: number,
  ) {}

  /** Whether `event` was held for after the running read (else apply it now). */
  hold(event: RealtimeEvent): boolean {
    if (!this.running) return false;
    this.held.push(event);
    return true;
  }

  async run(): Promise<void> {
    if (this.host.isClosed()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    const known = new Set(this.host.state().rows.keys());
    const { sessions, messages, widgets, files } = this.host.deps;
    const sessionId = this.host.sessionId;
    try {
      const [session, latest, widgetList, fileList] = await Promise.all([
        sessions.get(sessionId),
        messages.filter({ session: sessionId }).orderBy("-timestamp").limit(this.history).fetch(),
        widgets.filter({ session: sessionId }).orderBy("-created_at").limit(this.history).fetch(),
        files.filter({ session: sessionId }).orderBy("-created_at").limit(this.history).fetch(),
      ]);
      if (!this.host.isClosed()) this.host.dispatch({ type: "synced", session, messages: latest, widgets: widgetList, files: fileList, known });
    } catch (error) {
      this.host.dispatch({ type: "error", error: toClientError(error) });
    } finally {
      this.running = false;
      const events = this.held;
      this.held = [];
      for (const event of events) this.host.dispatch({ type: "event", event });
      if (this.again) {
        this.again = false;
        void this.run();
      }
      this.poll();
    }
  }

  /** Read again in a while if the channel is not carrying events and a turn is running. */
  poll(): void {
    if (this.host.isClosed() || this.pollTimer) return;
    const state = this.host.snapshot();
    if (state.connection === "subscribed" || state.connection === "connecting") return;
    if (!state.busy) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      void this.run();
    }, POLL_INTERVAL);
  }

  /** Stop polling for good (the store was closed). */
  stop(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }
}
