/**
 * The conversation store and the realtime hub under the conditions a real frontend meets: listeners
 * that throw or unsubscribe each other, waitFor() on a closed store, the stop button pressed while
 * a message is still being sent, quick sends with attachments, a send whose answer was lost after
 * the server stored it, and a realtime connection that could not start. Against the real demo
 * server; the only thing changed is the network (a `fetch` that delays or loses some requests).
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  createClient,
  isNetworkError,
  type Client,
  type ClientOptions,
  type Conversation,
  type ConversationMessage,
  type ConversationState,
  type FetchLike,
} from "../src/index.js";
import { demoServer, type DemoServer } from "./helpers/server.js";

let server: DemoServer;
const clients: Client[] = [];
const conversations: Conversation[] = [];

function client(options: Partial<ClientOptions> = {}): Client {
  const c = createClient({ baseUrl: server.api, ...options });
  clients.push(c);
  return c;
}

async function start(c: Client, agent: string): Promise<Conversation> {
  const conversation = await c.startConversation(agent);
  conversations.push(conversation);
  await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
  return conversation;
}

function lastAgent(state: ConversationState): ConversationMessage | undefined {
  return [...state.messages].reverse().find((m) => m.message_type === "agent");
}

const replied = (s: ConversationState) => !s.busy && lastAgent(s)?.processing_status === "completed";

/** A gate a test opens by hand. */
function gate(): { wait: (signal?: AbortSignal | null) => Promise<void>; open: () => void } {
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
function heldFetch(match: (url: string, init?: RequestInit) => boolean, held: ReturnType<typeof gate>): FetchLike {
  return async (input, init) => {
    if (match(input, init)) await held.wait(init?.signal);
    return fetch(input, init);
  };
}

const isUpload = (url: string, init?: RequestInit) => init?.method === "POST" && new URL(url).pathname.endsWith("/files/");
const isMessageCreate = (url: string, init?: RequestInit) => init?.method === "POST" && new URL(url).pathname.endsWith("/models/message/");

/** Resolve with the outcome of `promise`, or "pending" if it has not settled once `bound` ms passed. */
async function outcome<T>(promise: Promise<T>, bound = 5000): Promise<{ value: T } | { error: unknown } | "pending"> {
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
async function capturingConsoleErrors<T>(fn: (reported: unknown[][]) => Promise<T>): Promise<T> {
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

before(async () => {
  server = await demoServer();
});

after(async () => {
  for (const c of conversations) c.close();
  for (const c of clients) c.close();
  await server.stop();
});

describe("listeners", () => {
  test("a listener that throws does not stop the other listeners or the store", async () => {
    await capturingConsoleErrors(async (reported) => {
      const conversation = await start(client(), "echo");
      let calls = 0;
      conversation.subscribe(() => {
        calls += 1;
        if (calls > 1) throw new Error("a bug in someone's render");
      });
      const seen: ConversationState[] = [];
      conversation.subscribe((s) => seen.push(s));
      await conversation.send("hello");
      const state = await conversation.waitFor(replied, { timeout: 15_000 });
      assert.ok(calls > 1, "the throwing listener kept being called");
      assert.equal(seen.at(-1), state, "the listener after the throwing one saw the last state");
      assert.ok(
        reported.some((args) => args.some((a) => a instanceof Error && a.message === "a bug in someone's render")),
        "the listener's error was reported, not swallowed",
      );
    });
  });

  test("a listener that throws at once is not left subscribed", async () => {
    const conversation = await start(client(), "echo");
    let calls = 0;
    assert.throws(
      () =>
        conversation.subscribe(() => {
          calls += 1;
          throw new Error("broken at mount");
        }),
      /broken at mount/,
    );
    conversation.clearError();
    await conversation.waitFor((s) => s.error === null, { timeout: 5000 });
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(calls, 1, "called once by subscribe(), never again");
  });

  test("a listener unsubscribed by another during a notification is not called with that state", async () => {
    const conversation = await start(client(), "echo");
    let stopSecond: (() => void) | null = null;
    let armed = false;
    conversation.subscribe(() => {
      if (armed) stopSecond?.();
    });
    let afterStop = 0;
    let stopped = false;
    stopSecond = conversation.subscribe(() => {
      if (stopped) afterStop += 1;
    });
    const original = stopSecond;
    stopSecond = () => {
      stopped = true;
      original();
    };
    armed = true;
    conversation.clearError();
    await conversation.waitFor(() => true);
    await new Promise((r) => setTimeout(r, 0));
    assert.ok(stopped, "the first listener ran and unsubscribed the second");
    assert.equal(afterStop, 0, "the second listener was called after its unsubscribe");
  });

  test("a raw realtime listener that throws does not starve the conversation on the same channel", async () => {
    await capturingConsoleErrors(async (reported) => {
      const c = client();
      const first = await c.startConversation("stream-test");
      first.close(); // the channel's subscription ends; the raw listener below opens it first
      let thrown = 0;
      const stopRaw = c.realtime.subscribe(first.channel, {
        event: (event) => {
          if (event.name === "text_chunk") {
            thrown += 1;
            throw new Error("a raw listener bug");
          }
        },
      });
      try {
        const conversation = c.conversation(first.sessionId);
        conversations.push(conversation);
        await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
        const connections: string[] = [];
        const streamed: number[] = [];
        conversation.subscribe((s) => {
          connections.push(s.connection);
          const agent = lastAgent(s);
          if (agent?.streaming && agent.content.length) streamed.push(agent.content.length);
        });
        await conversation.send("burst 40");
        const state = await conversation.waitFor(replied, { timeout: 30_000 });
        const stored = await c.messages.get(lastAgent(state)?.id as string);
        assert.ok(thrown > 0, "the raw listener threw");
        assert.ok(streamed.length >= 2, `the store streamed (saw ${streamed.length} partial states)`);
        assert.ok(!connections.includes("reconnecting"), `connection states: ${[...new Set(connections)].join(", ")}`);
        assert.equal(lastAgent(state)?.content, stored.content);
        assert.ok(reported.some((args) => args.some((a) => a instanceof Error && a.message === "a raw listener bug")));
      } finally {
        stopRaw();
      }
    });
  });
});

describe("uploads", () => {
  test("an onUploadProgress callback that throws does not fail the send", async () => {
    await capturingConsoleErrors(async (reported) => {
      const conversation = await start(client(), "echo");
      const file = new File(["notes\n"], "notes.txt", { type: "text/plain" });
      let calls = 0;
      const sent = await conversation.send("with notes", {
        files: [file],
        onUploadProgress: () => {
          calls += 1;
          throw new Error("progress bar bug");
        },
      });
      assert.equal(sent.files.length, 1);
      assert.ok(calls >= 2, "called for the start and the end");
      const state = await conversation.waitFor(replied, { timeout: 15_000 });
      assert.equal(state.uploads[0]?.status, "uploaded");
      assert.equal(state.error, null);
      assert.ok(reported.some((args) => args.some((a) => a instanceof Error && a.message === "progress bar bug")));
    });
  });
});

describe("waitFor", () => {
  test("a predicate that throws rejects the waitFor with its error", async () => {
    const conversation = await start(client(), "echo");
    let calls = 0;
    const waiting = conversation.waitFor(() => {
      calls += 1;
      if (calls > 1) throw new Error("bad predicate");
      return false;
    });
    conversation.clearError();
    const result = await outcome(waiting);
    assert.ok(result !== "pending" && "error" in result, "waitFor settled with an error");
    assert.match(String((result as { error: unknown }).error), /bad predicate/);
  });

  test("close() rejects the pending waitFor() calls instead of leaving them hanging", async () => {
    const conversation = await start(client(), "echo");
    const waiting = conversation.waitFor(() => false, { timeout: 60_000 });
    const untimed = conversation.waitFor(() => false);
    conversation.close();
    for (const promise of [waiting, untimed]) {
      const result = await outcome(promise);
      assert.ok(result !== "pending" && "error" in result, "settled after close()");
      assert.equal((result as { error: { code?: string } }).error.code, "closed");
    }
    // And on a closed store a waitFor whose predicate does not hold rejects at once.
    const late = await outcome(conversation.waitFor(() => false));
    assert.ok(late !== "pending" && "error" in late);
    assert.equal((await conversation.waitFor((s) => s.loaded)).loaded, true, "a predicate that holds still resolves");
  });
});

describe("sending", () => {
  test("cancel() while a file is uploading stops the message: nothing reaches the agent", async () => {
    const held = gate();
    const c = client({ fetch: heldFetch(isUpload, held) });
    const conversation = await start(c, "files");
    const file = new File(["Invoice 4711\nTotal due: 120 EUR\n"], "invoice.txt", { type: "text/plain" });
    const sending = conversation.send("What is the total?", { files: [file] });
    sending.catch(() => undefined);
    await conversation.waitFor((s) => s.busy && s.uploads.some((u) => u.status === "uploading"), { timeout: 10_000 });
    const cancelling = conversation.cancel();
    held.open();
    await cancelling;
    const sent = await outcome(sending, 15_000);
    assert.notEqual(sent, "pending");
    const rows = await c.messages.filter({ session: conversation.sessionId }).fetch();
    const live = rows.filter((r) => r.message_type === "user" && r.processing_status !== "cancelled");
    assert.deepEqual(live.map((r) => [r.content, r.processing_status]), [], "a user message still runs after cancel()");
    assert.ok(sent !== "pending" && "error" in sent, "send() reports that it was stopped");
    const state = await conversation.waitFor((s) => !s.busy, { timeout: 10_000 });
    const local = state.messages.find((m) => m.local);
    assert.equal(local?.content, "What is the total?", "the typed text is kept");
    assert.equal(local?.sendError?.code, "aborted");
  });

  test("cancel() while the message is being created cancels it once the server has it", async () => {
    const held = gate();
    const c = client({ fetch: heldFetch(isMessageCreate, held) });
    const conversation = await start(c, "writer");
    const sending = conversation.send("a dragon");
    sending.catch(() => undefined);
    await conversation.waitFor((s) => s.phase === "sending", { timeout: 10_000 });
    const cancelling = conversation.cancel();
    held.open();
    const [result, sent] = await Promise.all([cancelling, sending]);
    assert.equal(result.status, "cancelling");
    assert.deepEqual(result.cancelled, [sent.id]);
    const state = await conversation.waitFor((s) => !s.busy && s.messages.some((m) => m.id === sent.id && m.processing_status === "cancelled"), {
      timeout: 15_000,
    });
    assert.ok(!state.messages.some((m) => m.message_type === "agent" && m.processing_status === "completed"));
  });

  test("quick sends reach the server in the order they were typed, attachments or not", async () => {
    const held = gate();
    const c = client({ fetch: heldFetch(isUpload, held) });
    const conversation = await start(c, "echo");
    const file = new File(["first attachment\n"], "first.txt", { type: "text/plain" });
    const first = conversation.send("first", { files: [file] });
    const second = conversation.send("second");
    // The second message has nothing to upload; let it go ahead if the store lets it.
    await outcome(second, 1500);
    held.open();
    await Promise.all([first, second]);
    const rows = await c.messages.filter({ session: conversation.sessionId, message_type: "user" }).orderBy("timestamp").fetch();
    assert.deepEqual(rows.map((r) => r.content), ["first", "second"]);
    const state = await conversation.waitFor((s) => !s.busy && s.messages.filter((m) => m.message_type === "agent").length === 2, {
      timeout: 20_000,
    });
    assert.deepEqual(
      state.messages.filter((m) => m.message_type === "user").map((m) => m.content),
      ["first", "second"],
    );
  });

  test("a send whose answer was lost after the server stored it does not leave a duplicate", async () => {
    // The create reaches the server; its answer is lost (the connection drops). The realtime
    // events are held until the store has seen the failure, so the echo arrives after it.
    const events = gate();
    let failCreate = true;
    const lossy: FetchLike = async (input, init) => {
      if (isMessageCreate(input, init) && failCreate) {
        failCreate = false;
        await fetch(input, init);
        setTimeout(events.open, 50);
        throw new TypeError("fetch failed: connection reset");
      }
      const response = await fetch(input, init);
      if (!input.includes("realtime/events/") || !response.body) return response;
      const reader = response.body.getReader();
      let holding = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) return controller.close();
          if (!failCreate && !holding) holding = true;
          if (holding) await events.wait();
          controller.enqueue(value);
        },
        cancel: () => reader.cancel(),
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const c = client({ fetch: lossy });
    const conversation = await start(c, "echo");
    await assert.rejects(conversation.send("only once"), (error: unknown) => isNetworkError(error));
    const failed = conversation.getState().messages.find((m) => m.local);
    assert.equal(failed?.sendError?.code, "network_error", "shown as failed first");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    assert.deepEqual(
      state.messages.map((m) => [m.message_type, m.message_type === "user" ? m.content : "", m.local]),
      [
        ["user", "only once", false],
        ["agent", "", false],
      ],
    );
    assert.equal(await c.messages.filter({ session: conversation.sessionId, message_type: "user" }).count(), 1);
  });
});

describe("retry", () => {
  test("retry() of a message the server stored but whose answer was lost stores nothing twice", async () => {
    // No realtime: the store cannot learn from an echo that the message was stored; only the
    // bridge's idempotent create (same X-Operation-Id) keeps the retry from storing it twice.
    const operationIds: string[] = [];
    let failCreate = true;
    const lossy: FetchLike = async (input, init) => {
      if (isMessageCreate(input, init)) {
        operationIds.push(new Headers(init?.headers).get("X-Operation-Id") ?? "");
        if (failCreate) {
          failCreate = false;
          await fetch(input, init);
          throw new TypeError("fetch failed: connection reset");
        }
      }
      return fetch(input, init);
    };
    const c = client({ fetch: lossy, realtime: false });
    const conversation = await c.startConversation("echo");
    conversations.push(conversation);
    await conversation.waitFor((s) => s.loaded, { timeout: 15_000 });
    await assert.rejects(conversation.send("only once"), (error: unknown) => isNetworkError(error));
    const failed = conversation.getState().messages.find((m) => m.local && m.sendError);
    assert.ok(failed, "the message shows as not sent");
    await assert.rejects(conversation.retry("local-nope"), /No message that could not be sent/);

    const row = await conversation.retry(failed.id);
    assert.equal(operationIds.length, 2);
    assert.equal(operationIds[0], operationIds[1], "the retry repeats the first try's operation id");
    const stored = await c.messages.filter({ session: conversation.sessionId, message_type: "user" }).fetch();
    assert.deepEqual(stored.map((m) => [m.id, m.content]), [[row.id, "only once"]]);
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    assert.deepEqual(
      state.messages.map((m) => [m.message_type, m.local]),
      [
        ["user", false],
        ["agent", false],
      ],
    );
    assert.equal(lastAgent(state)?.content, "You said: only once");
    assert.equal(await c.messages.filter({ session: conversation.sessionId }).count(), 2, "one turn, one reply");
  });

  test("retry() after a refused upload sends the files again, without uploading twice the ones that made it", async () => {
    const uploads: string[] = [];
    let refuseSecond = true;
    const flaky: FetchLike = async (input, init) => {
      if (isUpload(input, init)) {
        const name = ((init?.body as FormData).get("file") as File).name;
        uploads.push(name);
        if (name === "b.txt" && refuseSecond) {
          refuseSecond = false;
          throw new TypeError("fetch failed: connection reset");
        }
      }
      return fetch(input, init);
    };
    const c = client({ fetch: flaky });
    const conversation = await start(c, "files");
    const files = [new File(["alpha text"], "a.txt", { type: "text/plain" }), new File(["beta text"], "b.txt", { type: "text/plain" })];
    await assert.rejects(conversation.send("read both", { files }), (error: unknown) => isNetworkError(error));
    const failed = conversation.getState().messages.find((m) => m.local && m.sendError);
    assert.ok(failed);
    const row = await conversation.retry(failed.id);
    assert.deepEqual(uploads, ["a.txt", "b.txt", "b.txt"], "a.txt was not uploaded again");
    assert.equal(row.files.length, 2);
    const state = await conversation.waitFor(replied, { timeout: 30_000 });
    assert.match(lastAgent(state)?.content ?? "", /a\.txt/);
    assert.match(lastAgent(state)?.content ?? "", /b\.txt/);
  });
});

describe("realtime", () => {
  test("client.close() tells the stores their connection is closed, and they read nothing more", async () => {
    let requests = 0;
    const counting: FetchLike = (input, init) => {
      requests += 1;
      return fetch(input, init);
    };
    const c = createClient({ baseUrl: server.api, fetch: counting });
    const conversation = await start(c, "echo");
    const states: string[] = [];
    conversation.subscribe((s) => states.push(s.connection));
    const before = requests;
    c.close();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(conversation.getState().connection, "closed");
    assert.equal(states.at(-1), "closed");
    assert.equal(requests, before, "no request after the client was closed");
  });

  test("while the realtime connection is down and reconnecting, a turn still shows its reply", async () => {
    let down = false;
    const cuts: (() => void)[] = [];
    const breakable: FetchLike = async (input, init) => {
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
    const c = client({ fetch: breakable });
    const conversation = await start(c, "echo");
    down = true;
    for (const cut of cuts) cut();
    await conversation.waitFor((s) => s.connection === "reconnecting", { timeout: 10_000 });
    await conversation.send("are you there?");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    assert.equal(state.connection, "reconnecting", "the reply came while the channel was still down");
    assert.deepEqual(state.messages.map((m) => [m.message_type, m.processing_status]), [["user", "completed"], ["agent", "completed"]]);
    down = false;
    await conversation.waitFor((s) => s.connection === "subscribed", { timeout: 20_000 });
  });

  test("a realtime connection that could not start is tried again", async () => {
    let refused = 0;
    const flaky: FetchLike = async (input, init) => {
      if (input.includes("realtime/config/") && refused < 1) {
        refused += 1;
        throw new TypeError("fetch failed: connection refused");
      }
      return fetch(input, init);
    };
    const c = client({ fetch: flaky });
    const conversation = await c.startConversation("echo");
    conversations.push(conversation);
    const states: string[] = [];
    conversation.subscribe((s) => states.push(s.connection));
    const state = await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 20_000 }).catch((error: unknown) => {
      throw new Error(`${String(error)}; states: ${[...new Set(states)].join(", ")}`);
    });
    assert.equal(refused, 1);
    assert.equal(state.loaded, true);
    await conversation.send("hello again");
    await conversation.waitFor(replied, { timeout: 15_000 });
  });
});
