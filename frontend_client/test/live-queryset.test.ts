/**
 * Live querysets (`live()`) against the real demo server: changes followed and batched, a
 * conversation's messages, a project model on the owner's channel, and the snapshot's
 * `connection` following the channel.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import type { LiveSnapshot, Pk, SessionRow } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { signedInClient, type OrderRow } from "./helpers/shop.js";
import { droppableNetwork, until } from "./helpers/store.js";

const demo = useDemoServer();
const { client } = demo;

describe("live querysets", () => {
  test("live() follows changes, batches bursts, and stops when unsubscribed", async () => {
    const c = client();
    const first = await c.startConversation("echo");
    first.close();
    const snapshots: LiveSnapshot<SessionRow>[] = [];
    const errors: unknown[] = [];
    const stop = c.sessions.orderBy("-created_at").live((s) => snapshots.push(s), { onError: (e) => errors.push(e) });
    await until(async () => snapshots.at(-1)?.rows.length ?? 0, (n) => n === 1, "the first snapshot");

    const second = await c.startConversation("echo", {}, { title: "Second" });
    second.close();
    const latest = await until(
      async () => snapshots.at(-1),
      (s) => (s?.rows.length ?? 0) === 2,
      "the new session in the live result",
    );
    assert.equal(latest?.rows[0]?.title, "Second");
    assert.equal(latest?.connection, "subscribed");

    // A burst of five renames is gathered into few refetches, and the result ends current.
    const before = snapshots.length;
    await Promise.all([1, 2, 3, 4, 5].map((n) => c.sessions.update(second.sessionId, { title: `Burst ${n}` })));
    await until(async () => snapshots.at(-1)?.rows[0]?.title ?? "", (t) => t.startsWith("Burst"), "the renames");
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(snapshots.length - before < 5, `a burst of 5 changes caused ${snapshots.length - before} refetches`);
    const finalTitle = (await c.sessions.get(second.sessionId)).title;
    assert.equal(snapshots.at(-1)?.rows[0]?.title, finalTitle);

    stop();
    const count = snapshots.length;
    await c.startConversation("echo").then((x) => x.close());
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(snapshots.length, count, "no update after unsubscribing");
    assert.deepEqual(errors, []);
  });

  test("live() on a conversation's messages sees new messages", async () => {
    const c = client();
    const conversation = await c.startConversation("echo");
    conversation.close();
    const seen: string[][] = [];
    const stop = c.messages
      .filter({ session: conversation.sessionId })
      .orderBy("timestamp")
      .live((s) => seen.push(s.rows.map((m) => m.content)));
    await until(async () => seen.length, (n) => n >= 1, "the first snapshot");
    await c.messages.create({ session: conversation.sessionId, content: "hello live" });
    await until(async () => seen.at(-1) ?? [], (rows) => rows.includes("You said: hello live"), "the echo reply");
    stop();
  });

  test("live() on orders follows their changes (model_change on the owner's channel)", async () => {
    const c = await signedInClient(demo, );
    const orders = c.model<OrderRow>("order");
    const made = await orders.create({ total: "5.00" });
    const seen: LiveSnapshot<OrderRow>[] = [];
    const errors: unknown[] = [];
    const stop = orders.filter({ pk: made.id }).live((s) => seen.push(s), { onError: (e) => errors.push(e) });
    const first = await until(async () => seen.at(-1), (s) => s?.connection === "subscribed" && s.rows.length === 1, "the first snapshot");
    assert.equal(first?.rows[0]?.id, made.id);
    assert.equal(first?.rows[0]?.total, "5.00");
    assert.deepEqual(Object.keys(first?.included.order ?? {}), [String(made.id)]);

    await orders.update(made.id, { total: "7.25" });
    await until(async () => seen.at(-1)?.rows[0]?.total, (total) => total === "7.25", "the update in the live result");
    const pk: Pk = made.id;
    assert.equal(await orders.delete(pk), 1);
    await until(async () => seen.at(-1)?.rows.length, (n) => n === 0, "the deletion in the live result");
    stop();
    assert.deepEqual(errors, []);
  });

  test("a snapshot's connection follows the channel after the first delivery", async () => {
    const network = droppableNetwork();
    const c = client({ fetch: network.fetch });
    await c.startConversation("echo").then((x) => x.close());
    const seen: LiveSnapshot<SessionRow>[] = [];
    const stop = c.sessions.live((s) => seen.push(s));
    try {
      await until(async () => seen.at(-1), (s) => s?.connection === "subscribed" && s.rows.length === 1, "the first snapshot, subscribed");
      // Only the channel changes: no row does, so no refetch carries the new state.
      network.drop();
      const dropped = await until(async () => seen.at(-1), (s) => s?.connection === "reconnecting", "a snapshot saying the channel is reconnecting");
      assert.equal(dropped?.rows.length, 1, "with the rows it had");
      network.restore();
      await until(async () => seen.at(-1), (s) => s?.connection === "subscribed", "a snapshot subscribed again");
    } finally {
      stop();
    }
  });
});
