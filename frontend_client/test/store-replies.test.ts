/**
 * A reply as the conversation store shows it, against the real demo server over Server-Sent
 * Events: streamed in pieces, a widget that answers back, a turn that fails, a reply cancelled.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { useDemoServer } from "./helpers/fixture.js";
import { finished, lastAgent } from "./helpers/store.js";

const demo = useDemoServer();
const { client, start } = demo;

describe("a reply in the store", () => {
  test("a streamed reply arrives in pieces and ends equal to the stored message", async () => {
    const c = client();
    const conversation = await start(c, "support", { tier: "premium" });
    const seen: { phase: string; text: string }[] = [];
    conversation.subscribe((s) => seen.push({ phase: s.phase, text: lastAgent(s)?.content ?? "" }));

    const sent = await conversation.send("How do refunds work?");
    assert.equal(sent.content, "How do refunds work?");
    assert.equal(sent.message_type, "user");
    const state = await conversation.waitFor(finished, { timeout: 20_000 });

    const reply = lastAgent(state);
    assert.ok(reply);
    assert.equal(reply.processing_status, "completed");
    assert.match(reply.content, /As a premium customer, here is what I know about refunds and cancellations: Refunds/);
    const stored = await c.messages.get(reply.id);
    assert.equal(reply.content, stored.content);

    // Streamed: the store showed partial text while the phase was "streaming".
    const partial = seen.filter((s) => s.phase === "streaming" && s.text.length > 0 && s.text.length < reply.content.length);
    assert.ok(partial.length >= 3, `only ${partial.length} partial states`);
    const lengths = partial.map((s) => s.text.length);
    assert.deepEqual(lengths, [...lengths].sort((a, b) => a - b), "the text only grows");
    // The user message is confirmed (no local copy left) and the turn is over.
    assert.deepEqual(state.messages.map((m) => [m.message_type, m.local]), [["user", false], ["agent", false]]);
    assert.equal(state.phase, "idle");
    assert.equal(state.error, null);
  });

  test("the appointment widget's slots answer back", async () => {
    const c = client();
    const conversation = await start(c, "support");
    await conversation.send("I'd like to book a call");
    const withWidget = await conversation.waitFor((s) => s.messages.some((m) => m.widget?.widget_type === "appointment_form") && !s.busy, {
      timeout: 15_000,
    });
    const widget = withWidget.messages.find((m) => m.widget)?.widget;
    assert.ok(widget);
    const slots = widget.data.available_slots as string[];
    assert.equal(slots.length, 3);

    const picked = slots[2] as string;
    const updated = await conversation.updateWidget(widget.id, { selected_slot: picked });
    assert.deepEqual(updated.display_data, { selected_slot: picked });
    await conversation.send(String(widget.data.answer_template).replace("{slot}", picked));
    const done = await conversation.waitFor(
      (s) => finished(s) && (lastAgent(s)?.content ?? "").startsWith("Done!") && s.widgets[widget.id]?.display_data.confirmed === true,
      { timeout: 15_000 },
    );
    assert.equal(lastAgent(done)?.content.includes(picked), true);
    assert.deepEqual(done.widgets[widget.id]?.display_data, { selected_slot: picked, confirmed: true });
  });

  test("a turn that fails mid-stream ends failed with the server's notice, and the conversation goes on", async () => {
    const c = client();
    const conversation = await start(c, "stream-test");
    await conversation.send("fail 60");
    const state = await conversation.waitFor(
      (s) => !s.busy && s.messages.some((m) => m.message_type === "system"),
      { timeout: 20_000 },
    );
    const [user, agent, notice] = state.messages;
    assert.deepEqual(state.messages.map((m) => m.message_type), ["user", "agent", "system"]);
    assert.equal(user?.processing_status, "failed");
    assert.equal(agent?.processing_status, "failed");
    assert.equal(agent?.streaming, false);
    assert.ok((agent?.content.length ?? 0) >= 60, "the partial text stays");
    // The test server runs with DEBUG, so EXPOSE_ERROR_DETAILS adds the error to the notice.
    assert.equal(notice?.content, "Sorry, something went wrong while answering. Please try again.\n\nRuntimeError: stream-test was asked to fail");
    assert.equal(state.phase, "idle");
    assert.equal(state.error, null, "a failed turn is shown by its messages, not as a client error");
    // The same as the rows the server stored.
    const rows = await c.messages.filter({ session: conversation.sessionId }).orderBy("timestamp").fetch();
    assert.deepEqual(rows.map((m) => [m.message_type, m.processing_status, m.content]), state.messages.map((m) => [m.message_type, m.processing_status, m.content]));

    await conversation.send("long 30");
    const next = await conversation.waitFor(finished, { timeout: 20_000 });
    assert.equal(lastAgent(next)?.processing_status, "completed");
  });

  test("cancel() stops a long reply and keeps its partial text", async () => {
    const c = client();
    const conversation = await start(c, "writer");
    await conversation.send("a dragon");
    await conversation.waitFor((s) => (lastAgent(s)?.content.length ?? 0) > 60, { timeout: 15_000 });
    const result = await conversation.cancel();
    assert.equal(result.status, "cancelling");
    const state = await conversation.waitFor(finished, { timeout: 15_000 });
    const reply = lastAgent(state);
    assert.equal(reply?.processing_status, "cancelled");
    assert.ok((reply?.content.length ?? 0) > 60);
    assert.ok(!reply?.content.includes("The end."));
    assert.equal(state.busy, false);
    const user = state.messages.find((m) => m.message_type === "user");
    assert.equal(user?.processing_status, "cancelled");
    // Cancelling again is a clear no-op.
    assert.deepEqual(await conversation.cancel(), { status: "idle", cancelled: [] });
  });
});
