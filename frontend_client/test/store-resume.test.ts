/**
 * The conversation store reading and reading again (sync and resume), against the real demo
 * server: a second client joining mid-stream, a dropped or down realtime connection, one that
 * could not start, a closed client, and a visitor refused the conversation. Only the network is
 * changed (a `fetch` that cuts or refuses some requests).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createClient, isApiError, isRealtimeError, type FetchLike } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { droppableNetwork, finished, lastAgent, replied } from "./helpers/store.js";
import { assertRebuiltExactly, joinMidStream } from "./helpers/streams.js";

const demo = useDemoServer();
const { client, start, keep } = demo;

describe("joining late", () => {
  test("a second client joining mid-stream rebuilds the same text (resume)", async () => {
    const alice = client();
    const conversation = await start(alice, "writer");
    await conversation.send("a lighthouse keeper");
    await conversation.waitFor((s) => s.phase === "streaming" && (lastAgent(s)?.content.length ?? 0) > 120, { timeout: 15_000 });

    // Same visitor, another tab: a new client with the anonymous id joins while the story streams.
    const tab = client({ anonymousId: alice.anonymousId });
    const late = tab.conversation(conversation.sessionId);
    keep(late);
    const firstLoaded = await late.waitFor((s) => s.loaded, { timeout: 10_000 });
    assert.equal(lastAgent(firstLoaded)?.streaming, true, "joined while the reply was streaming");

    const [a, b] = await Promise.all([
      conversation.waitFor(finished, { timeout: 30_000 }),
      late.waitFor(finished, { timeout: 30_000 }),
    ]);
    const stored = await alice.messages.get(lastAgent(a)?.id as string);
    assert.equal(lastAgent(a)?.content, stored.content);
    assert.equal(lastAgent(b)?.content, stored.content);
    assert.ok(stored.content.endsWith("The end."));
  });

  test("a client joining while writes are coalesced rebuilds the streamed text exactly (offsets, row cut mid-event)", async () => {
    const alice = client();
    const conversation = await start(alice, "stream-test");
    const seen = await joinMidStream(alice, client({ anonymousId: alice.anonymousId }), conversation);

    assertRebuiltExactly(seen);
  });
});

describe("the realtime connection", () => {
  test("a dropped realtime connection reconnects and the reply still ends whole", async () => {
    // The network (not the server) fails: the first event stream is cut after a few kilobytes.
    let cut = false;
    const flaky = async (input: string, init?: RequestInit): Promise<Response> => {
      const response = await fetch(input, init);
      if (cut || !input.includes("realtime/events/") || !response.body) return response;
      let seen = 0;
      const reader = response.body.getReader();
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) return controller.close();
          seen += value.byteLength;
          controller.enqueue(value);
          if (seen > 3000 && !cut) {
            cut = true;
            controller.error(new TypeError("network connection lost"));
            void reader.cancel();
          }
        },
      });
      return new Response(body, { status: response.status, headers: response.headers });
    };
    const c = createClient({ baseUrl: demo.server.api, fetch: flaky });
    keep(c);
    const conversation = await start(c, "writer");
    const states: string[] = [];
    conversation.subscribe((s) => states.push(s.connection));
    await conversation.send("a lost umbrella");
    const done = await conversation.waitFor(finished, { timeout: 40_000 });
    assert.ok(cut, "the stream was cut");
    assert.ok(states.includes("reconnecting"), `connection states: ${[...new Set(states)].join(", ")}`);
    assert.equal(done.connection, "subscribed");
    const reply = lastAgent(done);
    const stored = await c.messages.get(reply?.id as string);
    assert.equal(reply?.content, stored.content);
    assert.ok(stored.content.endsWith("The end."));
  });

  test("while the realtime connection is down and reconnecting, a turn still shows its reply", async () => {
    const network = droppableNetwork();
    const c = client({ fetch: network.fetch });
    const conversation = await start(c, "echo");
    network.drop();
    await conversation.waitFor((s) => s.connection === "reconnecting", { timeout: 10_000 });
    await conversation.send("are you there?");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    assert.equal(state.connection, "reconnecting", "the reply came while the channel was still down");
    assert.deepEqual(state.messages.map((m) => [m.message_type, m.processing_status]), [["user", "completed"], ["agent", "completed"]]);
    network.restore();
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
    keep(conversation);
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

  test("client.close() tells the stores their connection is closed, and they read nothing more", async () => {
    let requests = 0;
    const counting: FetchLike = (input, init) => {
      requests += 1;
      return fetch(input, init);
    };
    const c = createClient({ baseUrl: demo.server.api, fetch: counting });
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
});

describe("access", () => {
  test("another visitor cannot open the conversation or its channel", async () => {
    const alice = client();
    const conversation = await start(alice, "echo");
    await conversation.send("secret");
    const mallory = client();
    await mallory.startConversation("echo").then((x) => x.close());
    const intruder = mallory.conversation(conversation.sessionId);
    keep(intruder);
    const state = await intruder.waitFor((s) => s.connection === "failed" && s.error !== null, { timeout: 10_000 });
    assert.equal(state.messages.length, 0);
    assert.equal(state.loaded, false);
    // Either refusal may be reported last: the read (404) or the channel (403/404).
    const error = state.error;
    const status = isApiError(error) ? error.status : isRealtimeError(error) ? error.status : undefined;
    assert.ok(status === 403 || status === 404, `unexpected error ${String(error)}`);
  });
});
