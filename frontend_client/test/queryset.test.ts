/** Querysets and writes against the real demo server (no mocked fetch): the built-in models and
 * project models with any primary key. Live querysets are in live-queryset.test.ts, the
 * transport (headers, CSRF, errors of the network) in transport.test.ts. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  createClient,
  isApiError,
  isConflict,
  isNotFound,
  isValidationError,
  NotFoundError,
  type MessageRow,
  type SessionRow,
} from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { startDemoServer } from "./helpers/server.js";
import { signedInClient, type OrderRow, type TicketRow } from "./helpers/shop.js";
import { until } from "./helpers/store.js";

const demo = useDemoServer();
const { client } = demo;

describe("querysets", () => {
  test("filter, exclude, orderBy, limit, fetch, get and count", async () => {
    const c = client();
    const conversation = await c.startConversation("echo");
    conversation.close();
    const session = conversation.sessionId;
    assert.match(c.anonymousId ?? "", /^anon_/);

    for (const text of ["one", "two", "three"]) {
      await c.messages.create({ session, content: text });
    }
    const all = c.messages.filter({ session });
    await until(() => all.count(), (n) => n === 6, "three echo replies");

    const latestUser = await all.filter({ message_type: "user" }).orderBy("-timestamp").limit(2).fetch();
    assert.deepEqual(latestUser.map((m) => m.content), ["three", "two"]);

    const replies = await all.exclude({ message_type: "user" }).orderBy("timestamp").fetch();
    assert.deepEqual(replies.map((m) => m.content), ["You said: one", "You said: two", "You said: three"]);
    assert.ok(replies.every((m: MessageRow) => m.processing_status === "completed" && m.session === session));

    // Chained excludes drop each their own rows (Django's .exclude(a).exclude(b)); one object drops
    // only the rows matching all of it (Django's .exclude(a, b)).
    const ids = new Map((await all.fetch()).map((m) => [m.content, m.id]));
    const [oneId, twoId] = [ids.get("one") as string, ids.get("two") as string];
    const chained = await all.exclude({ message_type: "agent" }).exclude({ id: oneId }).fetch();
    assert.deepEqual(chained.map((m) => m.content).sort(), ["three", "two"]);
    const merged = await all.exclude({ message_type: "user", id: twoId }).fetch();
    assert.deepEqual(merged.map((m) => m.content).sort(), ["You said: one", "You said: three", "You said: two", "one", "three"]);
    assert.deepEqual(all.exclude({ id: oneId }).exclude({ id: twoId }).toJSON().exclude, [{ id: oneId }, { id: twoId }]);
    assert.deepEqual(all.exclude({ id: oneId }).toJSON().exclude, { id: oneId });

    const page = await all.orderBy("timestamp").limit(4).offset(4).fetchPage();
    assert.equal(page.rows.length, 2);
    assert.equal(page.meta.has_more, false);

    const row = await c.sessions.get(session);
    assert.equal(row.agent_path, "echo");
    assert.equal(row.status, "active");
    const first = await c.messages.filter({ session }).orderBy("timestamp").first();
    assert.equal(first?.content, "one");

    const included = await c.messages.filter({ session }).include("session").limit(1).fetchPage();
    assert.equal((included.included.session?.[session] as SessionRow | undefined)?.agent_path, "echo");

    // client.model(name) reaches the same rows by name.
    assert.equal((await c.model<SessionRow>("session").get(session)).id, session);
  });

  test("update, queryset update, delete; writes refused with the envelope", async () => {
    const c = client();
    const conversation = await c.startConversation("echo");
    conversation.close();
    const session = conversation.sessionId;

    const renamed = await c.sessions.update(session, { title: "Renamed" });
    assert.equal(renamed.title, "Renamed");

    // Context is not writable: a 400 naming the field, nothing changed.
    await assert.rejects(c.sessions.update(session, { context: { hacked: true } }), (error: unknown) => {
      assert.ok(isValidationError(error) || (isApiError(error) && error.status === 403), String(error));
      return true;
    });

    const archived = await c.sessions.filter({ id: session }).update({ status: "archived" });
    assert.deepEqual(archived.map((s) => s.status), ["archived"]);
    await assert.rejects(c.messages.create({ session, content: "still there?" }), (error: unknown) => {
      assert.ok(isConflict(error));
      assert.equal(error.code, "session_not_active");
      return true;
    });

    const file = await c.files.upload(new File(["some notes"], "notes.txt", { type: "text/plain" }));
    assert.equal(file.filename, "notes.txt");
    assert.equal(file.extracted_text, undefined, "the text is sent only when asked for");
    const withText = await until(
      () => c.files.only("id", "extraction_status", "extracted_text").get(file.id),
      (row) => row.extraction_status === "done",
      "the extraction",
    );
    assert.equal(withText.extracted_text?.trim(), "some notes");
    assert.equal(await c.files.filter({ id: file.id }).count(), 1);
    assert.equal(await c.files.delete(file.id), 1);
    await assert.rejects(c.files.get(file.id), NotFoundError);
  });

  test("queryset update() and delete() reach every page, not only the first", async () => {
    // A server of its own whose pages hold two rows, so five rows span three pages.
    const small = await startDemoServer({ DJANGO_AI_SETTINGS_JSON: JSON.stringify({ QUERY_DEFAULT_LIMIT: 2 }) });
    const c = createClient({ baseUrl: small.api });
    try {
      const sessions: string[] = [];
      for (let n = 0; n < 5; n++) {
        const conversation = await c.startConversation("echo");
        conversation.close();
        sessions.push(conversation.sessionId);
      }
      const firstPage = await c.sessions.fetchPage();
      assert.equal(firstPage.rows.length, 2);
      assert.equal(firstPage.meta.has_more, true);
      // The update moves every row out of the filter: all five are still reached.
      const archived = await c.sessions.filter({ status: "active" }).update({ status: "archived" });
      assert.deepEqual(archived.map((s) => s.id).sort(), [...sessions].sort());
      assert.equal(await c.sessions.filter({ status: "archived" }).count(), 5);
      // An explicit limit is one page only.
      assert.equal((await c.sessions.orderBy("created_at").limit(1).update({ title: "Only me" })).length, 1);
      assert.equal(await c.sessions.filter({ title: "Only me" }).count(), 1);

      for (let n = 0; n < 5; n++) await c.files.upload(new File([`note ${n}`], `note-${n}.txt`, { type: "text/plain" }));
      assert.equal(await c.files.count(), 5);
      assert.equal(await c.files.delete(), 5);
      assert.equal(await c.files.count(), 0);
    } finally {
      c.close();
      await small.stop();
    }
  });

  test("bad queries are 400s that name the field; unknown models 404", async () => {
    const c = client();
    await assert.rejects(c.messages.filter({ secret__startswith: "x" }).fetch(), (error: unknown) => {
      assert.ok(isValidationError(error), String(error));
      assert.ok(error.errors.length >= 1);
      assert.ok(error.errors.some((e) => typeof e.field === "string" && e.field.length > 0));
      return true;
    });
    await assert.rejects(c.sessions.orderBy("context").fetch(), (error: unknown) => isValidationError(error));
    await assert.rejects(c.model("no_such_model").fetch(), (error: unknown) => isNotFound(error));
    await assert.rejects(c.messages.get({ session: "00000000-0000-0000-0000-000000000000" }), NotFoundError);
    await assert.rejects(c.startConversation("no-such-agent"), (error: unknown) => {
      assert.ok(isNotFound(error));
      assert.equal(error.code, "agent_not_found");
      return true;
    });
  });

  test("another visitor sees nothing of the first one's conversations", async () => {
    const alice = client();
    const bob = client();
    const conversation = await alice.startConversation("echo");
    conversation.close();
    await alice.messages.create({ session: conversation.sessionId, content: "private" });
    await bob.startConversation("echo").then((c) => c.close());

    const bobs = await bob.sessions.fetch();
    assert.ok(!bobs.some((s) => s.id === conversation.sessionId));
    assert.equal(await bob.messages.filter({ session: conversation.sessionId }).count(), 0);
    await assert.rejects(bob.sessions.get(conversation.sessionId), NotFoundError);
    await assert.rejects(bob.messages.create({ session: conversation.sessionId, content: "hi" }), (error: unknown) =>
      isApiError(error) && [400, 403, 404].includes(error.status),
    );
    await assert.rejects(bob.cancel(conversation.sessionId), NotFoundError);
  });
});

describe("project models: any primary key, exact values", () => {
  test("orders by their integer pk: get, pks, count, update, delete", async () => {
    const c = await signedInClient(demo, { realtime: "none" });
    const orders = c.model<OrderRow>("order");
    const made = [await orders.create({ total: "10.50" }), await orders.create({ total: "20" }), await orders.create({ total: "0.1" })];
    const ids = made.map((o) => o.id);
    assert.ok(ids.every((id) => typeof id === "number"), JSON.stringify(ids));
    assert.deepEqual(made.map((o) => o.total), ["10.50", "20.00", "0.10"]);

    const [first, second, third] = ids as [number, number, number];
    assert.equal((await orders.get(first)).total, "10.50");
    assert.equal((await orders.get(String(first))).id, first, "a pk from a URL, as a string, finds the row too");
    const mine = orders.filter({ pk__in: ids });
    assert.deepEqual(await mine.orderBy("id").pks(), ids);
    assert.deepEqual(await mine.orderBy("id").limit(2).pks(), [first, second]);
    assert.equal(await mine.count(), 3);
    assert.equal(await mine.filter({ total__gte: "10.50" }).count(), 2);

    const paid = await orders.update(first, { status: "paid", big: "9007199254740993", duration: "PT1H30M" });
    assert.equal(paid.status, "paid");
    assert.equal(paid.big, "9007199254740993", "an integer beyond 2^53 - 1 comes back exact, as a string");
    assert.equal(paid.duration, "P0DT01H30M00S");
    assert.deepEqual(await orders.filter({ big: "9007199254740993" }).pks(), [first]);
    assert.deepEqual((await mine.filter({ status: "open" }).update({ status: "shipped" })).map((o) => o.id).sort(), [second, third].sort());

    assert.equal(await orders.delete(first), 1);
    await assert.rejects(orders.get(first), NotFoundError);
    assert.equal(await mine.delete(), 2);
    assert.equal(await mine.count(), 0);
  });

  test("tickets by their string pk named code", async () => {
    const c = client({ realtime: "none" });
    const conversation = await c.startConversation("echo");
    conversation.close();
    const tickets = c.model<TicketRow>("ticket");
    const made = await tickets.create({ session: conversation.sessionId, subject: "late parcel" });
    assert.match(made.code, /^T-/);
    const schema = await c.schema();
    assert.equal(schema.models.ticket?.primary_key, "code");
    assert.equal(schema.models.order?.fields.id?.type, "integer");

    assert.equal((await tickets.get(made.code)).subject, "late parcel");
    const other = await tickets.create({ session: conversation.sessionId, subject: "wrong size" });
    const both = tickets.filter({ session: conversation.sessionId });
    assert.deepEqual(await both.pks(), [made.code, other.code].sort());
    assert.equal(await both.count(), 2);
    assert.equal((await tickets.update(made.code, { subject: "parcel found" })).subject, "parcel found");
    assert.deepEqual((await both.update({ subject: "done" })).map((t) => t.subject), ["done", "done"]);
    assert.equal(await tickets.delete(other.code), 1);
    await assert.rejects(tickets.get(other.code), NotFoundError);
    assert.equal(await both.delete(), 1);
    // Another visitor sees none of them.
    await assert.rejects(client({ realtime: "none" }).model("ticket").get(made.code), NotFoundError);
  });
});
