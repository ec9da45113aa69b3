/** Querysets, writes, live results and errors against the real demo server (no mocked fetch). */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  createClient,
  isApiError,
  isConflict,
  isNetworkError,
  isNotFound,
  isRateLimited,
  isValidationError,
  NotFoundError,
  RateLimitedError,
  type Client,
  type LiveSnapshot,
  type MessageRow,
  type Pk,
  type Row,
  type SessionRow,
  type WireTypes,
} from "../src/index.js";
import { demoServer, freePort, signIn, startDemoServer, type DemoServer } from "./helpers/server.js";

let server: DemoServer;
const clients: Client[] = [];

function client(options: Partial<Parameters<typeof createClient>[0]> = {}): Client {
  const c = createClient({ baseUrl: server.api, ...options });
  clients.push(c);
  return c;
}

async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean, what: string, timeout = 20_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await read();
    if (ok(value)) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}; last value: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  server = await demoServer();
});

after(async () => {
  for (const c of clients) c.close();
  await server.stop();
});

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
});

/** `shop.Order` of tests/shop (installed by tests.settings): an integer pk, owned by a user. */
interface OrderRow extends Row {
  id: number;
  total: WireTypes["decimal"];
  big: WireTypes["integer"];
  duration: WireTypes["duration"] | null;
  reference: WireTypes["uuid"];
  status: string;
}

/** `shop.Ticket`: a string pk called `code`, in a conversation. */
interface TicketRow extends Row {
  code: string;
  session: string;
  subject: string;
  order: number | null;
}

/** A client signed in as the demo user (its session cookie), sending the CSRF token as a page does. */
async function signedInClient(options: Partial<Parameters<typeof createClient>[0]> = {}): Promise<Client> {
  const browser = await signIn(server.origin);
  return client({ fetch: browser.fetch, headers: { "X-CSRFToken": browser.jar.get("csrftoken") ?? "" }, ...options });
}

describe("project models: any primary key, exact values", () => {
  test("orders by their integer pk: get, pks, count, update, delete", async () => {
    const c = await signedInClient({ realtime: "none" });
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

  test("the first read of a signed-in browser needs no CSRF token", async () => {
    const browser = await signIn(server.origin);
    browser.jar.delete("csrftoken"); // a page that never loaded a form: no cookie, no header
    const c = client({ fetch: browser.fetch, realtime: "none" });
    assert.ok(Array.isArray(await c.model<OrderRow>("order").fetch()));
    assert.ok(Array.isArray(await c.sessions.fetch()));
    // Writes still need it.
    await assert.rejects(c.model<OrderRow>("order").create({ total: "1.00" }), (error: unknown) => {
      assert.ok(isApiError(error) && error.status === 403, String(error));
      return true;
    });
  });

  test("live() on orders follows their changes (model_change on the owner's channel)", async () => {
    const c = await signedInClient();
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
});

describe("transport", () => {
  test("headers and getHeaders go with every request, through the given fetch", async () => {
    const sent: Headers[] = [];
    const c = client({
      headers: { "X-Static": "one" },
      getHeaders: async () => ({ "X-Dynamic": "two" }),
      fetch: (url, init) => {
        sent.push(new Headers(init?.headers));
        return fetch(url, init);
      },
    });
    const conversation = await c.startConversation("echo");
    conversation.close();
    await c.sessions.fetch();
    assert.ok(sent.length >= 2);
    assert.ok(sent.every((h) => h.get("X-Static") === "one" && h.get("X-Dynamic") === "two"));
    // After start, a stateless client sends its anonymous id back.
    assert.equal(sent.at(-1)?.get("X-Conversation-Anonymous-Id"), c.anonymousId);
  });

  test("a server that is down is a NetworkError", async () => {
    const port = await freePort();
    const c = createClient({ baseUrl: `http://127.0.0.1:${port}/api/conversations/`, realtime: "none" });
    await assert.rejects(c.sessions.fetch(), (error: unknown) => {
      assert.ok(isNetworkError(error));
      assert.equal(error.code, "network_error");
      return true;
    });
  });

  test("message bursts are rate limited with a RateLimitedError", async () => {
    const c = client();
    const conversation = await c.startConversation("echo");
    conversation.close();
    let limited: unknown = null;
    for (let i = 0; i < 40 && !limited; i++) {
      try {
        await c.messages.create({ session: conversation.sessionId, content: `message ${i}` });
      } catch (error) {
        limited = error;
      }
    }
    assert.ok(isRateLimited(limited), `expected a 429, got ${String(limited)}`);
    assert.ok(limited instanceof RateLimitedError);
    assert.equal(limited.status, 429);
    assert.ok((limited.retryAfter ?? 0) > 0);
    assert.ok(limited.message.length > 0);
  });

  test("a relative baseUrl outside a page is refused with a clear message", () => {
    assert.throws(() => createClient({ baseUrl: "/api/conversations/" }), /relative/);
  });
});
