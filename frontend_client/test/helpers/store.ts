/**
 * What the conversation store tests share: reading a state, waiting, and a network a test
 * controls (a `fetch` that holds, loses or cuts some requests; the server stays real).
 */

import type { ConversationMessage, ConversationState, FetchLike } from "../../src/index.js";

export function lastAgent(state: ConversationState): ConversationMessage | undefined {
  return [...state.messages].reverse().find((m) => m.message_type === "agent");
}

/** The turn is over: its agent message ended (completed, cancelled or failed) and nothing runs. */
export const finished = (s: ConversationState) => {
  const agent = lastAgent(s);
  return !s.busy && !!agent && ["completed", "cancelled", "failed"].includes(agent.processing_status);
};

/** The turn is over and its reply completed. */
export const replied = (s: ConversationState) => !s.busy && lastAgent(s)?.processing_status === "completed";

/** The first value of `read()` that passes `ok`, polled every 100 ms. */
export async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, timeout = 20_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A gate a test opens by hand. */
export function gate(): { wait: (signal?: AbortSignal | null) => Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return {
    open,
    wait(signal) {
      if (!signal) return opened;
      return new Promise<void>((resolve, reject) => {
        const abort = () => reject(new DOMException("The operation was aborted.", "AbortError"));
        if (signal.aborted) return abort();
        signal.addEventListener("abort", abort, { once: true });
        void opened.then(resolve);
      });
    },
  };
}

/** A fetch that holds the requests `match` selects until their gate opens (or they are aborted). */
export function heldFetch(match: (url: string, init?: RequestInit) => boolean, held: ReturnType<typeof gate>): FetchLike {
  return async (input, init) => {
    if (match(input, init)) await held.wait(init?.signal);
    return fetch(input, init);
  };
}

export const isUpload = (url: string, init?: RequestInit) => init?.method === "POST" && new URL(url).pathname.endsWith("/files/");
export const isMessageCreate = (url: string, init?: RequestInit) =>
  init?.method === "POST" && new URL(url).pathname.endsWith("/models/message/");

/** Resolve with the outcome of `promise`, or "pending" if it has not settled once `bound` ms passed. */
export async function outcome<T>(promise: Promise<T>, bound = 5000): Promise<{ value: T } | { error: unknown } | "pending"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const pending = new Promise<"pending">((resolve) => {
    timer = setTimeout(() => resolve("pending"), bound);
  });
  try {
    return await Promise.race([promise.then((value) => ({ value }), (error: unknown) => ({ error })), pending]);
  } finally {
    clearTimeout(timer);
  }
}

/** Capture what the SDK reports through console.error while `fn` runs. */
export async function capturingConsoleErrors<T>(fn: (reported: unknown[][]) => Promise<T>): Promise<T> {
  const original = console.error;
  const reported: unknown[][] = [];
  console.error = (...args: unknown[]) => {
    reported.push(args);
  };
  try {
    return await fn(reported);
  } finally {
    console.error = original;
  }
}

/**
 * A network whose event streams a test can drop: `drop()` cuts the open ones and fails new ones
 * (the realtime channels go `reconnecting`) until `restore()`. Other requests pass.
 */
export function droppableNetwork(): { fetch: FetchLike; drop(): void; restore(): void } {
  let down = false;
  const cuts: (() => void)[] = [];
  const networkFetch: FetchLike = async (input, init) => {
    if (!input.includes("realtime/events/")) return fetch(input, init);
    if (down) throw new TypeError("fetch failed: network down");
    const response = await fetch(input, init);
    if (!response.body) return response;
    const reader = response.body.getReader();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        cuts.push(() => {
          controller.error(new TypeError("network connection lost"));
          void reader.cancel();
        });
      },
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        controller.enqueue(value);
      },
      cancel: () => reader.cancel(),
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
  return {
    fetch: networkFetch,
    drop() {
      down = true;
      for (const cut of cuts.splice(0)) cut();
    },
    restore() {
      down = false;
    },
  };
}
