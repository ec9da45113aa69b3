/**
 * A project's own model watched live: `shop.Ticket` (tests/shop, a string pk named `code`, a
 * foreign key to the conversation) exposed through the bridge, written server-side by the shop's
 * agent with the ORM (`open <subject>`, `rename <code> <subject>`), never by this client. The live
 * queryset learns of each write only from the `model_change` events the exposed model sends, on the
 * conversation's channel it listens on when the queryset filters on `session`.
 *
 * Real parts: the test server (tests.settings), its realtime backend (Server-Sent Events), the SDK.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { createClient, type Client, type LiveSnapshot, type Row } from "../src/index.js";
import { demoServer, type DemoServer } from "./helpers/server.js";

/** `shop.Ticket`, as the bridge reads it. */
interface TicketRow extends Row {
  code: string;
  session: string;
  subject: string;
  order: number | null;
}

let server: DemoServer;
const clients: Client[] = [];

function client(): Client {
  const c = createClient({ baseUrl: server.api });
  clients.push(c);
  return c;
}

/** The first value of `read()` that passes `ok`, polled every 50 ms (events arrive when they do). */
async function until<T>(read: () => T, ok: (value: T) => boolean, what: string, timeout = 30_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  server = await demoServer();
});

after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

describe("live() over a project model", () => {
  test("tickets an agent opens and renames server-side reach the live rows", async () => {
    const c = client();
    const conversation = await c.startConversation("shop-tickets");
    const snapshots: LiveSnapshot<TicketRow>[] = [];
    const errors: unknown[] = [];
    const stop = c
      .model<TicketRow>("ticket")
      .filter({ session: conversation.sessionId })
      .live((snapshot) => snapshots.push(snapshot), { onError: (error) => errors.push(error) });
    const last = () => snapshots.at(-1);
    await until(last, (s) => s?.connection === "subscribed", "the live query's channel");
    assert.deepEqual(last()?.rows, []);

    await conversation.send("open late parcel");
    const opened = await until(last, (s) => (s?.rows.length ?? 0) === 1, "the ticket the agent opened");
    const ticket = opened?.rows[0];
    assert.ok(ticket);
    assert.match(ticket.code, /^T-/);
    assert.equal(ticket.subject, "late parcel");
    assert.equal(ticket.session, conversation.sessionId);

    await conversation.send(`rename ${ticket.code} parcel found`);
    const renamed = await until(last, (s) => s?.rows[0]?.subject === "parcel found", "the agent's rename");
    assert.deepEqual(renamed?.rows.map((row) => row.code), [ticket.code]);

    await conversation.send("open wrong size");
    const both = await until(last, (s) => (s?.rows.length ?? 0) === 2, "the second ticket");
    assert.deepEqual(both?.rows.map((row) => row.subject).sort(), ["parcel found", "wrong size"]);

    stop();
    conversation.close();
    assert.deepEqual(errors, []);
  });
});
