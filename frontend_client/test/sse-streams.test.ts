/**
 * The Server-Sent Events adapter reads all of a client's channels over as few streams as the
 * server allows (it caps the open streams per visitor), against the real demo server: many
 * conversations at once, channels added and removed while events flow, streams closed when
 * nothing is followed.
 *
 * The server's count of a visitor's open streams is read from outside, the way any client meets
 * it: by opening streams as that visitor until one is refused with 429 `too_many_streams`.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  createClient,
  type ChannelState,
  type Client,
  type Conversation,
  type FetchLike,
  type RealtimeError,
  sseRealtime,
} from "../src/index.js";
import { demoServer, startDemoServer, type DemoServer } from "./helpers/server.js";

/** A server whose visitors may hold 3 streams, and that notices closed ones within a fraction of a second. */
const SMALL_CAP = 3;
let shared: DemoServer;
let small: DemoServer;
const clients: Client[] = [];

before(async () => {
  shared = await demoServer();
  small = await startDemoServer({
    DJANGO_AI_SETTINGS_JSON: JSON.stringify({ SSE_MAX_STREAMS_PER_VISITOR: SMALL_CAP, SSE_HEARTBEAT_INTERVAL: 0.2 }),
  });
});

after(async () => {
  for (const c of clients) c.close();
  await small?.stop();
  await shared?.stop();
});

/** One request to the events endpoint, as the client made it. */
interface StreamRequest {
  channels: string[];
  lastEventId: string | null;
  status: number | null;
}

/** A fetch that records the event streams a client asks for. */
function recordingFetch(requests: StreamRequest[]): FetchLike {
  return async (input, init) => {
    if (!input.includes("realtime/events/")) return fetch(input, init);
    const headers = new Headers(init?.headers);
    const request: StreamRequest = {
      channels: new URL(input).searchParams.getAll("channel"),
      lastEventId: headers.get("Last-Event-ID"),
      status: null,
    };
    requests.push(request);
    const response = await fetch(input, init);
    request.status = response.status;
    return response;
  };
}

/** A visitor's conversations, started by a client without realtime (it opens no stream). */
async function startSessions(server: DemoServer, count: number): Promise<{ visitor: string; ids: string[]; setup: Client }> {
  const setup = createClient({ baseUrl: server.api, realtime: "none" });
  clients.push(setup);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const conversation: Conversation = await setup.startConversation("echo");
    conversation.close();
    ids.push(conversation.sessionId);
  }
  return { visitor: setup.anonymousId as string, ids, setup };
}

const channelOf = (sessionId: string) => `private-conversation-session-${sessionId}`;

/** Follows channels on `client`, recording each one's states and the operation ids of its `model_change` events. */
class Follower {
  readonly states = new Map<string, ChannelState[]>();
  /** The error of each state change (undefined when none was given). */
  readonly errors = new Map<string, (RealtimeError | undefined)[]>();
  readonly operations = new Map<string, string[]>();
  private readonly stops = new Map<string, () => void>();

  constructor(private readonly client: Client) {}

  follow(channel: string): void {
    this.states.set(channel, []);
    this.errors.set(channel, []);
    this.operations.set(channel, []);
    const stop = this.client.realtime.subscribe(channel, {
      event: (event) => {
        const operation = event.name === "model_change" ? event.payload.operation_id : null;
        if (operation?.startsWith("test-")) this.operations.get(channel)?.push(operation);
      },
      state: (state, error) => {
        this.states.get(channel)?.push(state);
        this.errors.get(channel)?.push(error);
      },
    });
    this.stops.set(channel, stop);
  }

  unfollow(channel: string): void {
    this.stops.get(channel)?.();
    this.stops.delete(channel);
  }

  state(channel: string): ChannelState | undefined {
    return this.states.get(channel)?.at(-1);
  }

  error(channel: string): RealtimeError | undefined {
    return this.errors.get(channel)?.at(-1);
  }

  received(channel: string): string[] {
    return this.operations.get(channel) ?? [];
  }
}

async function until(check: () => boolean, what: string, timeout = 20_000, detail?: () => unknown): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeout} ms waiting for ${what}.${detail ? ` ${JSON.stringify(detail())}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * How many streams the server counts open for `visitor`: opens streams as the visitor (on its
 * owner channel) until one is refused, then closes them again.
 */
async function streamsHeld(server: DemoServer, visitor: string, ownerChannel: string, cap: number): Promise<number> {
  const controllers: AbortController[] = [];
  let admitted = 0;
  try {
    for (let i = 0; i < cap; i++) {
      const controller = new AbortController();
      controllers.push(controller);
      const response = await fetch(`${server.api}realtime/events/?channel=${encodeURIComponent(ownerChannel)}`, {
        headers: { "X-Conversation-Anonymous-Id": visitor },
        signal: controller.signal,
      });
      if (response.status === 429) {
        const body = (await response.json()) as { errors: { code: string }[] };
        assert.equal(body.errors[0]?.code, "too_many_streams");
        break;
      }
      assert.equal(response.status, 200);
      admitted++;
    }
  } finally {
    for (const controller of controllers) controller.abort();
  }
  return cap - admitted;
}

/** Open `count` streams as `visitor` and keep them open until the returned function is called. */
async function holdStreams(server: DemoServer, visitor: string, ownerChannel: string, count: number): Promise<() => void> {
  const controllers: AbortController[] = [];
  for (let i = 0; i < count; i++) {
    const controller = new AbortController();
    controllers.push(controller);
    const response = await fetch(`${server.api}realtime/events/?channel=${encodeURIComponent(ownerChannel)}`, {
      headers: { "X-Conversation-Anonymous-Id": visitor },
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
  }
  return () => {
    for (const controller of controllers) controller.abort();
  };
}

/** Wait until the server counts `expected` open streams for `visitor`. Probe streams closed by
 * an earlier look count until the server notices them (a heartbeat later), so look again. */
async function untilStreamsHeld(server: DemoServer, visitor: string, ownerChannel: string, expected: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  let held = -1;
  for (;;) {
    held = await streamsHeld(server, visitor, ownerChannel, SMALL_CAP);
    if (held === expected) return;
    if (Date.now() > deadline) assert.fail(`the server counts ${held} open streams for the visitor, not ${expected}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe("Server-Sent Events: one stream for many channels", () => {
  test("15 conversations followed at once by one client all get their events (the server allows 10 streams)", async () => {
    const { visitor, ids, setup } = await startSessions(shared, 15);
    const requests: StreamRequest[] = [];
    const c = createClient({ baseUrl: shared.api, anonymousId: visitor, fetch: recordingFetch(requests) });
    clients.push(c);
    const follower = new Follower(c);
    const stores = ids.map((id) => c.conversation(id));
    for (const id of ids) follower.follow(channelOf(id));
    await Promise.all(stores.map((s) => s.waitFor((state) => state.loaded && state.connection === "subscribed", { timeout: 20_000 })));

    const sent = new Map<string, string>();
    for (const [i, id] of ids.entries()) {
      const operation = `test-fifteen-${i}`;
      sent.set(id, operation);
      await setup.sessions.update(id, { title: `Conversation ${i}` }, { operationId: operation });
    }
    await until(() => ids.every((id) => follower.received(channelOf(id)).length >= 1), "a model_change on every channel");
    for (const id of ids) assert.deepEqual(follower.received(channelOf(id)), [sent.get(id)]);
    // The stores follow their session from those events.
    await Promise.all(stores.map((s, i) => s.waitFor((state) => state.session?.title === `Conversation ${i}`, { timeout: 20_000 })));

    // Subscribed in one tick: one stream of 10 channels and one of 5, each opened once.
    assert.deepEqual(requests.map((r) => [r.channels.length, r.status]), [[10, 200], [5, 200]]);
    assert.deepEqual(requests.flatMap((r) => r.channels).sort(), ids.map(channelOf).sort());
    for (const s of stores) s.close();
  });

  test("channels added and removed while events flow: every event arrives once", async () => {
    const { visitor, ids, setup } = await startSessions(small, 4);
    const [a, b, cc, d] = ids.map(channelOf) as [string, string, string, string];
    const requests: StreamRequest[] = [];
    const c = createClient({ baseUrl: small.api, anonymousId: visitor, fetch: recordingFetch(requests) });
    clients.push(c);
    const owner = (await c.realtime.ownerChannel()) as string;
    const follower = new Follower(c);
    for (const channel of [a, owner, b]) follower.follow(channel);
    await until(() => [a, owner, b].every((ch) => follower.state(ch) === "subscribed"), "the first three channels");

    // Renames of conversation a, one after the other: each sends model_change to a and to the
    // owner channel, in order.
    const sent: string[] = [];
    let writing = true;
    const writer = (async () => {
      for (let k = 0; writing; k++) {
        const operation = `test-flow-${k}`;
        sent.push(operation);
        await setup.sessions.update(ids[0] as string, { title: `Title ${k}` }, { operationId: operation });
      }
    })();
    const more = async (what: string) => {
      const seen = follower.received(a).length;
      await until(() => follower.received(a).length >= seen + 3, `events on a after ${what}`);
    };
    try {
      await more("the start");
      follower.follow(cc);
      await until(() => follower.state(cc) === "subscribed", "the channel added");
      await more("adding a channel");
      follower.unfollow(b);
      await until(
        () => requests.some((r) => r.status === 200 && !r.channels.includes(b) && r.channels.includes(cc)),
        "a stream without the channel removed",
      );
      await more("removing a channel");
      follower.follow(d);
      await until(() => follower.state(d) === "subscribed", "the second channel added");
      await more("adding another channel");
    } finally {
      writing = false;
      await writer;
    }
    await until(
      () => follower.received(a).length >= sent.length && follower.received(owner).length >= sent.length,
      `all ${sent.length} renames`,
    );
    const diag = JSON.stringify({ requests, states: Object.fromEntries(follower.states) });
    assert.deepEqual(follower.received(a), sent, `conversation a: each event once, in order ${diag}`);
    assert.deepEqual(follower.received(owner), sent, `owner channel: each event once, in order ${diag}`);
    assert.deepEqual(
      follower.states.get(owner)?.filter((s) => s !== "connecting"),
      ["subscribed"],
      `the owner channel never saw its stream reopen ${diag}`,
    );
    // One stream at a time, reopened for each change, each resuming from the last event seen.
    const accepted = requests.filter((r) => r.status === 200);
    assert.deepEqual(
      accepted.map((r) => [...r.channels].sort()),
      [[a, owner, b].sort(), [a, owner, b, cc].sort(), [a, owner, cc].sort(), [a, owner, cc, d].sort()],
      diag,
    );
    assert.ok(accepted.slice(1).every((r) => r.lastEventId), "each reopen resumes with Last-Event-ID");
  });

  test("unsubscribing every channel closes the stream on the server", async () => {
    const { visitor, ids } = await startSessions(small, 4);
    const c = createClient({ baseUrl: small.api, anonymousId: visitor });
    clients.push(c);
    const owner = (await c.realtime.ownerChannel()) as string;
    const channels = [owner, ...ids.map(channelOf)];
    const follower = new Follower(c);
    for (const channel of channels) follower.follow(channel);
    await until(() => channels.every((ch) => follower.state(ch) === "subscribed"), "five channels subscribed");
    await untilStreamsHeld(small, visitor, owner, 1);

    for (const channel of channels.slice(1)) follower.unfollow(channel);
    await untilStreamsHeld(small, visitor, owner, 1);
    follower.unfollow(owner);
    await untilStreamsHeld(small, visitor, owner, 0);
  });

  test("a channel the server refuses fails alone; the others share the stream and get their events", async () => {
    const { visitor, ids, setup } = await startSessions(small, 4);
    const { ids: strangers } = await startSessions(small, 1);
    const foreign = channelOf(strangers[0] as string);
    const missing = channelOf("8a3a1c52-0d6e-4b8e-9a57-7e1f0c6d2b11");
    const c = createClient({ baseUrl: small.api, anonymousId: visitor });
    clients.push(c);
    const owner = (await c.realtime.ownerChannel()) as string;
    const own = [owner, ...ids.slice(0, 3).map(channelOf)];
    const follower = new Follower(c);
    for (const channel of [...own, foreign, missing]) follower.follow(channel);
    await until(
      () => own.every((ch) => follower.state(ch) === "subscribed") && [foreign, missing].every((ch) => follower.state(ch) === "failed"),
      "own channels subscribed, the others failed",
    );
    assert.equal(follower.error(foreign)?.status, 403);
    assert.equal(follower.error(foreign)?.code, "channel_forbidden");
    assert.equal(follower.error(foreign)?.channel, foreign);
    assert.equal(follower.error(missing)?.status, 404);
    // A channel subscribed later joins the stream; events reach every channel followed.
    const later = channelOf(ids[3] as string);
    follower.follow(later);
    await until(() => follower.state(later) === "subscribed", "the channel added later");
    for (const [i, id] of ids.entries()) await setup.sessions.update(id, { title: `Renamed ${i}` }, { operationId: `test-refused-${i}` });
    await until(() => [...own.slice(1), later].every((ch) => follower.received(ch).length === 1), "an event on each own conversation");
    await until(() => follower.received(owner).length === 4, "the owner channel's four events", 20_000, () => ({
      received: follower.received(owner),
      states: Object.fromEntries(follower.states),
    }));
    assert.deepEqual(follower.received(owner), ["test-refused-0", "test-refused-1", "test-refused-2", "test-refused-3"]);
    assert.equal(follower.state(foreign), "failed");
  });

  test("a stream refused with 429 too_many_streams is retried, and the channels say why meanwhile", async () => {
    const { visitor, ids, setup } = await startSessions(small, 1);
    const c = createClient({ baseUrl: small.api, anonymousId: visitor, realtime: sseRealtime({ retryDelay: 200, maxRetryDelay: 400 }) });
    clients.push(c);
    const owner = (await c.realtime.ownerChannel()) as string;
    const conversation = channelOf(ids[0] as string);
    const release = await holdStreams(small, visitor, owner, SMALL_CAP);
    const follower = new Follower(c);
    try {
      follower.follow(owner);
      follower.follow(conversation);
      await until(() => follower.state(conversation) === "reconnecting", "the refused stream");
      const error = follower.error(conversation);
      assert.equal(error?.code, "too_many_streams");
      assert.equal(error?.status, 429);
      assert.equal(follower.state(owner), "reconnecting");
    } finally {
      release();
    }
    await until(() => [owner, conversation].every((ch) => follower.state(ch) === "subscribed"), "both channels once streams were freed");
    await setup.sessions.update(ids[0] as string, { title: "Freed" }, { operationId: "test-freed" });
    await until(() => follower.received(conversation).length === 1, "the event after the retry");
  });
});
