/**
 * What the React and Vue binding tests share (their DOM is `./dom.js`): a realtime option that counts the channel subscriptions it holds open (the SSE
 * adapter itself, wrapped: leaks show as a count that does not return to zero), and animation
 * frames a test counts.
 */

import { sseRealtime, type ChannelListener, type RealtimeFactory } from "../../src/index.js";

/**
 * Server-Sent Events as the client uses them, counting the channel subscriptions held open;
 * `opened(match)`: how many were ever made (on channels `match` accepts).
 */
export function countingRealtime(): {
  realtime: RealtimeFactory;
  open: () => number;
  opened: (match?: (channel: string) => boolean) => number;
} {
  let open = 0;
  const opened: string[] = [];
  const realtime: RealtimeFactory = async (context) => {
    const adapter = await sseRealtime()(context);
    return {
      name: adapter.name,
      subscribe(channel: string, listener: ChannelListener) {
        open += 1;
        opened.push(channel);
        const stop = adapter.subscribe(channel, listener);
        let done = false;
        return () => {
          if (done) return;
          done = true;
          open -= 1;
          stop();
        };
      },
      close: () => adapter.close(),
    };
  };
  return { realtime, open: () => open, opened: (match = () => true) => opened.filter(match).length };
}

/**
 * `requestAnimationFrame` as a browser's, at `ms` per frame, counting the frames that ran a
 * callback; `remove()` takes it away again.
 */
export function animationFrames(ms: number): { frames: () => number; remove: () => void } {
  const globals = globalThis as Record<string, unknown>;
  let callbacks = new Map<number, (time: number) => void>();
  let next = 0;
  let frames = 0;
  const timer = setInterval(() => {
    if (!callbacks.size) return;
    const due = callbacks;
    callbacks = new Map();
    frames += 1;
    for (const callback of due.values()) callback(performance.now());
  }, ms);
  globals.requestAnimationFrame = (callback: (time: number) => void) => {
    callbacks.set(++next, callback);
    return next;
  };
  globals.cancelAnimationFrame = (handle: number) => {
    callbacks.delete(handle);
  };
  return {
    frames: () => frames,
    remove() {
      clearInterval(timer);
      delete globals.requestAnimationFrame;
      delete globals.cancelAnimationFrame;
    },
  };
}

/** Resolve once `check()` holds (polled every 10 ms); fail after `timeout` ms naming `what`. */
export async function waitUntil(check: () => boolean, what: string | (() => string), timeout = 20_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${typeof what === "string" ? what : what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
