/**
 * The conversation store's listeners and waitFor(), against the real demo server: listeners that
 * throw or unsubscribe each other, a raw realtime listener that throws on the store's channel, a
 * predicate that throws, waitFor() on a closed store.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { ConversationState } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { capturingConsoleErrors, lastAgent, outcome, replied } from "./helpers/store.js";

const demo = useDemoServer();
const { client, start, keep } = demo;

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
        keep(conversation);
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
