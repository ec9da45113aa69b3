/**
 * What the React and Vue bindings share: a value shown to a renderer at most once per animation
 * frame, however often its source changes.
 *
 * A conversation store tells its listeners once per microtask; a fast stream is dozens of
 * `text_chunk` events a second, each in its own task, so a renderer told every time renders far
 * more often than the screen can show. `FrameValue` reads its source again when it is told of a
 * change, but shows the new value (and tells its own listeners) only in the next frame: every
 * binding that changed in a frame flushes in the same `requestAnimationFrame` callback.
 *
 * Where there is no `requestAnimationFrame` (Node, a worker), a 16 ms timer takes its place. A
 * hidden browser tab runs no frames: a slower timer (`HIDDEN_FALLBACK_MS`, which the browser
 * throttles further) still brings the value up to date there, so effects that react to a reply
 * (a title, a sound) still run in a background tab.
 */

import { callListener } from "../internal/report.js";

/** Without `requestAnimationFrame`: about 60 flushes a second at most. */
export const FRAME_MS = 16;
/** With `requestAnimationFrame`: the latest a flush comes when no frame runs (a hidden tab). */
export const HIDDEN_FALLBACK_MS = 250;

type Flush = () => void;

interface Frames {
  requestAnimationFrame?: (callback: (time: number) => void) => number;
  cancelAnimationFrame?: (handle: number) => void;
}

/** The flushes waiting for the next frame (null: no frame is scheduled). */
let waiting: Set<Flush> | null = null;

/** Run `flush` in the next frame, with every other flush asked for before that frame. */
export function inNextFrame(flush: Flush): void {
  if (waiting) {
    waiting.add(flush);
    return;
  }
  const batch = new Set<Flush>([flush]);
  waiting = batch;
  // Read when needed, not at import: a test (or a polyfill) may install it later.
  const frames = globalThis as Frames;
  let frame: number | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const run = () => {
    if (frame !== null) frames.cancelAnimationFrame?.(frame);
    if (timer !== null) clearTimeout(timer);
    frame = timer = null;
    if (waiting !== batch) return;
    waiting = null;
    for (const each of batch) each();
  };
  if (typeof frames.requestAnimationFrame === "function") {
    frame = frames.requestAnimationFrame(run);
    timer = setTimeout(run, HIDDEN_FALLBACK_MS);
  } else {
    timer = setTimeout(run, FRAME_MS);
  }
}

/** Take `flush` out of the next frame (its binding has no listener left). */
function notInNextFrame(flush: Flush): void {
  waiting?.delete(flush);
}

/**
 * A value computed from a source and shown once per frame: `get()` is what a renderer reads
 * (`useSyncExternalStore`'s `getSnapshot`, a Vue ref's value); it returns the same object until the
 * frame in which it changes, when the listeners are told. With no listener, `get()` computes the
 * current value at once (the first render, a render before the subscription starts).
 */
export class FrameValue<T> {
  private shown: T | undefined;
  private current = false;
  private readonly listeners = new Set<() => void>();
  private readonly flush: Flush = () => this.update();

  /** `compute` must return the same object while its source has not changed. */
  constructor(private readonly compute: () => T) {}

  get(): T {
    if (!this.current || this.listeners.size === 0) {
      this.shown = this.compute();
      this.current = true;
    }
    return this.shown as T;
  }

  /** The source changed: show its new value in the next frame. */
  changed(): void {
    if (this.listeners.size === 0) {
      this.current = false;
      return;
    }
    inNextFrame(this.flush);
  }

  /** Call `listener` (no argument: read `get()`) in each frame where the value changed. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        notInNextFrame(this.flush);
        this.current = false;
      }
    };
  }

  /** Show the source's value now (the caller's own change, e.g. a new subscription). */
  update(): void {
    const next = this.compute();
    if (this.current && Object.is(next, this.shown)) return;
    this.shown = next;
    this.current = true;
    for (const listener of [...this.listeners]) if (this.listeners.has(listener)) callListener(listener);
  }
}
