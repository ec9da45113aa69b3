/**
 * Tool steps and approvals in the conversation store, against the real demo server (SSE) and the
 * scripted `tools-test` agent (tests/sdk_agents.py: a declared LLMAgent on a FakeModel): a
 * reply's parts in order, live and after a reload; a step awaiting approval, approved and
 * rejected through the store; a second answer and another visitor's answer refused with the
 * SDK's typed errors.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { isConflict, isNotFound, isUsageError, isValidationError, type ConversationState } from "../src/index.js";
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

/** One step waits for an answer, and the turn has stopped for it (the step shows as soon as it is made, a moment before). */
const waitsForApproval = (s: ConversationState) => s.pendingApprovals.length === 1 && !s.busy;

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

  test("approve through the store: the waiting reply shows, the tool runs and the same reply goes on", async () => {
    const c = client();
    const conversation = await start(c, "tools-test");
    await conversation.send("grant 5");
    const waiting = await conversation.waitFor(waitsForApproval, { timeout: 20_000 });
    const step = waiting.pendingApprovals[0];
    assert.ok(step?.id);
    assert.deepEqual([step.name, step.arguments, step.status, step.approval?.status], ["grant", { amount: 5 }, "awaiting_approval", "pending"]);
    // A waiting turn, not a failure; no turn runs.
    assert.deepEqual([waiting.phase, waiting.busy, waiting.error], ["awaiting_approval", false, null]);
    const agentId = lastAgent(waiting)?.id;
    assert.deepEqual(parts(waiting), ["text:Asking first. ", 'tool:grant({"amount":5}):awaiting_approval']);

    // A reload while it waits shows the same pending approval.
    const reloaded = keep(c.conversation(conversation.sessionId));
    const seen = await reloaded.waitFor((s) => s.loaded && s.pendingApprovals.length === 1, { timeout: 15_000 });
    assert.equal(seen.pendingApprovals[0]?.id, step.id);

    const row = await conversation.approve(step.id);
    assert.equal(row.id, step.id);
    assert.equal((row.component_data.approval as { status: string } | null)?.status, "approved");
    const done = await conversation.waitFor((s) => replied(s) && parts(s).at(-1)?.startsWith("text:Done") === true, { timeout: 20_000 });
    assert.equal(lastAgent(done)?.id, agentId, "the same agent message goes on");
    assert.deepEqual(parts(done), ["text:Asking first. ", 'tool:grant({"amount":5}):completed', "text:Done: granted 5."]);
    assert.deepEqual([done.pendingApprovals, done.error, done.phase], [[], null, "idle"]);
    // The other open store followed it live.
    const other = await reloaded.waitFor((s) => replied(s) && parts(s).length === 3, { timeout: 15_000 });
    assert.deepEqual(parts(other), parts(done));
  });

  test("reject with a reason: the model is told; a second answer and another visitor's are refused", async () => {
    const c = client();
    const conversation = await start(c, "tools-test");
    await conversation.send("grant 7");
    const step = (await conversation.waitFor(waitsForApproval, { timeout: 20_000 })).pendingApprovals[0];
    assert.ok(step?.id);

    // Another visitor cannot see the step, so cannot answer it.
    const stranger = client();
    const theirs = keep(await stranger.startConversation("echo"));
    await assert.rejects(theirs.approve(step.id), (error: unknown) => isNotFound(error));

    // Refused before anything changes: a reason over 2,000 characters, a step with no row yet.
    await assert.rejects(conversation.reject(step.id, "x".repeat(2001)), (error: unknown) => isValidationError(error));
    await assert.rejects(conversation.approve(`tool-call:${step.reply_to}:${step.call_id}`), (error: unknown) => isUsageError(error));
    const still = await conversation.waitFor((s) => s.pendingApprovals[0]?.answering === false, { timeout: 5_000 });
    assert.equal(still.pendingApprovals[0]?.id, step.id, "the step still waits");
    conversation.clearError();

    await conversation.reject(step.id, "Not now");
    const done = await conversation.waitFor((s) => replied(s) && parts(s).length === 3, { timeout: 20_000 });
    assert.deepEqual(parts(done).slice(0, 2), ["text:Asking first. ", 'tool:grant({"amount":7}):failed']);
    assert.match(parts(done)[2] ?? "", /^text:Not granted: .*Not now/);
    const rejected = lastAgent(done)?.parts[1];
    assert.ok(rejected?.type === "tool");
    assert.deepEqual([rejected.step.error?.code, rejected.step.approval?.status, rejected.step.approval?.reason], ["tool_rejected", "rejected", "Not now"]);

    await assert.rejects(conversation.approve(step.id), (error: unknown) => isConflict(error) && (error as { code: string }).code === "approval_already_answered");
    const after = await conversation.waitFor((s) => s.error !== null, { timeout: 5_000 });
    assert.equal(after.error?.code, "approval_already_answered");
    assert.equal(lastAgent(after)?.parts[1]?.type, "tool", "the step still shows its answer");
  });
});
