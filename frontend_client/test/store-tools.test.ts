/**
 * Tool steps and approvals in the conversation store, against the real demo server (SSE) and the
 * scripted `tools-test` agent (tests/sdk_agents.py: a declared LLMAgent on a FakeModel): a
 * reply's parts in order, live and after a reload; a step awaiting approval, approved and
 * rejected through the store; a second answer and another visitor's answer refused with the
 * SDK's typed errors.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { ConversationState } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { lastAgent, replied } from "./helpers/store.js";

const demo = useDemoServer();
const { client, start, keep } = demo;

/** The last reply's parts as short strings: `text:<text>`, `tool:<name>(<arguments>):<status>`. */
function parts(state: ConversationState): string[] {
  return (lastAgent(state)?.parts ?? []).map((p) =>
    p.type === "text" ? `text:${p.text}` : p.type === "tool" ? `tool:${p.step.name}(${JSON.stringify(p.step.arguments)}):${p.step.status}` : `widget:${p.message.id}`,
  );
}

describe("tool steps and approvals in the store", () => {
  test("a reply's tool steps show in order among its text, and a reload shows the same parts", async () => {
    const c = client();
    const conversation = await start(c, "tools-test");
    await conversation.send("steps");
    const state = await conversation.waitFor((s) => replied(s) && parts(s).length === 6, { timeout: 20_000 });
    const expected = [
      "text:Looking up. ",
      'tool:lookup({"q":"a"}):completed',
      "text:Found a. ",
      'tool:lookup({"q":"b"}):completed',
      'tool:lookup({"q":"c"}):completed',
      "text:Done.",
    ];
    assert.deepEqual(parts(state), expected);
    const steps = (lastAgent(state)?.parts ?? []).flatMap((p) => (p.type === "tool" ? [p.step] : []));
    assert.deepEqual(steps.map((s) => [s.round, s.index, s.result]), [[0, 0, "a!"], [1, 0, "b!"], [1, 1, "c!"]]);
    assert.ok(steps.every((s) => s.id && s.reply_to === lastAgent(state)?.reply_to));
    // Steps show inside the reply, not on their own.
    assert.deepEqual(state.messages.filter((m) => m.partOf === null).map((m) => m.message_type), ["user", "agent"]);
    assert.deepEqual([state.phase, state.pendingApprovals, state.error], ["idle", [], null]);

    const reloaded = keep(c.conversation(conversation.sessionId));
    const again = await reloaded.waitFor((s) => s.loaded && parts(s).length === 6, { timeout: 15_000 });
    assert.deepEqual(parts(again), expected);
  });
});
