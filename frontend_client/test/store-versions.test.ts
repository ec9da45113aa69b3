/**
 * Versions in the conversation store, against the real demo server: regenerate, edit, the
 * versions of a message, switching between them, with a second store on the same conversation
 * (another tab of the same visitor) that must show the same active path after each step; a
 * superseded turn; a regenerate whose answer was lost; feedback; searching and deleting
 * conversations; the errors.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  isConflict,
  isNotFound,
  isUsageError,
  isValidationError,
  type Client,
  type Conversation,
  type ConversationState,
  type FetchLike,
  type LiveSnapshot,
  type SessionRow,
} from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { lastAgent, replied, until } from "./helpers/store.js";

const demo = useDemoServer();
const { client, start, keep } = demo;

/** What two stores on one conversation must agree on: the path, in order, and each row's state. */
function picture(state: ConversationState): string[] {
  return state.messages.map((m) => `${m.id} ${m.message_type} ${m.processing_status} ${m.versionIndex}/${m.versionCount} ${m.content}`);
}

/** A second store of the conversation, for the same visitor (another tab), loaded and subscribed. */
async function secondTab(c: Client, conversation: Conversation): Promise<Conversation> {
  const other = client({ anonymousId: c.anonymousId });
  const tab = keep(other.conversation(conversation.sessionId));
  await tab.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
  return tab;
}

/** Wait until both stores are idle and show the same path, whose user messages say `users`; that state. */
async function bothShow(a: Conversation, b: Conversation, users: string[]): Promise<ConversationState> {
  const settled = (s: ConversationState) =>
    !s.busy &&
    s.messages.filter((m) => m.message_type === "user").map((m) => m.content).join("|") === users.join("|") &&
    s.messages.filter((m) => m.message_type === "agent").length === users.length &&
    s.messages.every((m) => m.message_type !== "agent" || m.processing_status === "completed");
  const first = await a.waitFor(settled, { timeout: 20_000 });
  await b.waitFor((s) => settled(s) && picture(s).join("\n") === picture(a.getState()).join("\n"), { timeout: 20_000 });
  assert.deepEqual(picture(b.getState()), picture(a.getState()));
  return first;
}

const users = (s: ConversationState) => s.messages.filter((m) => m.message_type === "user");
const agents = (s: ConversationState) => s.messages.filter((m) => m.message_type === "agent");

describe("versions", () => {
  test("regenerate: a new version answers again in place of the first, in both tabs; versions() lists both", async () => {
    const c = client();
    const conversation = await start(c, "echo");
    await conversation.send("hello");
    const before = await conversation.waitFor(replied, { timeout: 20_000 });
    const tab = await secondTab(c, conversation);
    await tab.waitFor((s) => agents(s).length === 1 && !s.busy, { timeout: 15_000 });
    const [original] = users(before);
    const firstReply = lastAgent(before);
    assert.ok(original && firstReply);
    assert.equal(original.versionCount, 1);

    // By the reply's id, as a "Regenerate" button under it would.
    const version = await conversation.regenerate(firstReply.id);
    assert.equal(version.message_type, "user");
    assert.equal(version.content, "hello");
    assert.equal(version.revision, "regenerate");
    assert.equal(version.version_index, 2);
    assert.equal(version.version_count, 2);
    assert.equal(version.version_group, original.id);

    const after = await bothShow(conversation, tab, ["hello"]);
    const [shown] = users(after);
    const reply = lastAgent(after);
    assert.equal(shown?.id, version.id);
    assert.notEqual(reply?.id, firstReply.id, "the reply is the new version's");
    assert.equal(reply?.content, "You said: hello");
    assert.deepEqual([reply?.versionIndex, reply?.versionCount, reply?.versionOf], [2, 2, version.id]);

    const all = await conversation.versions(reply!.id);
    assert.deepEqual(all.map((m) => [m.id, m.version_index, m.active]), [
      [original.id, 1, false],
      [version.id, 2, true],
    ]);
  });

  test("edit: the new version's text is answered and what followed the old one leaves the path, in both tabs", async () => {
    const c = client();
    const conversation = await start(c, "echo");
    await conversation.send("first");
    await conversation.waitFor(replied, { timeout: 20_000 });
    await conversation.send("second");
    const before = await conversation.waitFor((s) => replied(s) && agents(s).length === 2, { timeout: 20_000 });
    const tab = await secondTab(c, conversation);
    await bothShow(conversation, tab, ["first", "second"]);

    const first = users(before)[0]!;
    const edited = await conversation.edit(first.id, "first, edited");
    assert.equal(edited.revision, "edit");
    assert.equal(edited.content, "first, edited");
    const after = await bothShow(conversation, tab, ["first, edited"]);
    assert.equal(lastAgent(after)?.content, "You said: first, edited");

    // An empty text is refused before anything is sent; a reply is no message to edit.
    await assert.rejects(conversation.edit(edited.id, "  "), (error: unknown) => isUsageError(error) && error.field === "content");
    await assert.rejects(conversation.edit(lastAgent(after)!.id, "no"), (error: unknown) => isValidationError(error) && error.code === "not_a_user_message");
    assert.deepEqual(picture(conversation.getState()), picture(after), "a refused edit changes nothing");
  });

  test("setActiveVersion back and forth: each tab shows the chosen path, with what followed it", async () => {
    const c = client();
    const conversation = await start(c, "echo");
    await conversation.send("one");
    await conversation.waitFor(replied, { timeout: 20_000 });
    await conversation.send("two");
    const v1 = await conversation.waitFor((s) => replied(s) && agents(s).length === 2, { timeout: 20_000 });
    const tab = await secondTab(c, conversation);

    // A second version of "one", then a message after it on that path.
    const one = users(v1)[0]!;
    const oneAgain = await conversation.edit(one.id, "one again");
    await bothShow(conversation, tab, ["one again"]);
    await conversation.send("three");
    const v2 = await bothShow(conversation, tab, ["one again", "three"]);

    const back = await tab.setActiveVersion(one.id);
    assert.equal(back.id, one.id);
    assert.equal(back.active, true);
    const shown1 = await bothShow(conversation, tab, ["one", "two"]);
    assert.deepEqual(
      shown1.messages.map((m) => m.id),
      v1.messages.map((m) => m.id),
      "the first path comes back whole: the same rows",
    );
    assert.deepEqual(users(shown1).map((m) => [m.versionIndex, m.versionCount]), [[1, 2], [1, 1]]);

    // Forth again, named by the reply of the version (as a picker under a reply would).
    const versions = await conversation.versions(one.id);
    assert.deepEqual(versions.map((m) => m.id), [one.id, oneAgain.id]);
    const replyToOneAgain = v2.messages.find((m) => m.message_type === "agent" && m.reply_to === oneAgain.id)!;
    await conversation.setActiveVersion(replyToOneAgain.id);
    const shown2 = await bothShow(conversation, tab, ["one again", "three"]);
    assert.deepEqual(shown2.messages.map((m) => m.id), v2.messages.map((m) => m.id));

    // Choosing the version already shown changes nothing.
    const same = await conversation.setActiveVersion(oneAgain.id);
    assert.equal(same.id, oneAgain.id);
    assert.deepEqual(picture(conversation.getState()), picture(shown2));
  });

  test("versions() of a message with no other version answers it without a request", async () => {
    // The queries versions() would make (a row by `id`, its `version_group`), not the store's own
    // reads of rows its events name (`id__in`), which may still come after the reply ended.
    let queries = 0;
    const counting: FetchLike = (input, init) => {
      if (new URL(input).pathname.endsWith("/models/message/query/")) {
        const filter = (JSON.parse(String(init?.body)) as { filter?: Record<string, unknown> }).filter ?? {};
        if ("id" in filter || "version_group" in filter) queries += 1;
      }
      return fetch(input, init);
    };
    const c = client({ fetch: counting });
    const conversation = await start(c, "echo");
    const sent = await conversation.send("alone");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    queries = 0;
    const fromUser = await conversation.versions(sent.id);
    const fromReply = await conversation.versions(lastAgent(state)!.id);
    assert.deepEqual([fromUser.map((m) => m.id), fromReply.map((m) => m.id)], [[sent.id], [sent.id]]);
    assert.equal(queries, 0);
  });

  test("regenerating a message whose turn is running stops that turn: both tabs end with the new version's reply only", async () => {
    const c = client();
    const conversation = await start(c, "stream-test");
    const sent = await conversation.send("hold 30");
    await conversation.waitFor((s) => s.streamingMessageId !== null && (lastAgent(s)?.content.length ?? 0) > 0, { timeout: 20_000 });
    const tab = await secondTab(c, conversation);
    await tab.waitFor((s) => s.streamingMessageId !== null, { timeout: 15_000 });
    const running = conversation.getState().streamingMessageId!;

    // Same text, so the new version holds too: it is stopped below once both tabs show it.
    const version = await conversation.regenerate(sent.id);
    const showsVersion = (s: ConversationState) =>
      users(s).length === 1 && users(s)[0]!.id === version.id && !s.messages.some((m) => m.id === running || m.id === sent.id);
    await conversation.waitFor(showsVersion, { timeout: 20_000 });
    await tab.waitFor(showsVersion, { timeout: 20_000 });
    // The superseded turn ended (its late events brought nothing back); the new one streams.
    const superseded = await until(async () => (await c.messages.filter({ id: running }).fetch())[0], (row) => row?.processing_status === "cancelled", "the superseded reply to end");
    assert.equal(superseded?.active, false);
    await conversation.waitFor((s) => s.streamingMessageId !== null && s.streamingMessageId !== running, { timeout: 20_000 });
    await conversation.cancel();
    const end = (s: ConversationState) => !s.busy && showsVersion(s) && lastAgent(s)?.processing_status === "cancelled";
    await conversation.waitFor(end, { timeout: 20_000 });
    await tab.waitFor((s) => end(s) && picture(s).join("\n") === picture(conversation.getState()).join("\n"), { timeout: 20_000 });
  });

  test("a regenerate whose answer was lost is asked again under the same operation id: one new version, not two", async () => {
    let lose = true;
    const lossy: FetchLike = async (input, init) => {
      const response = await fetch(input, init);
      if (lose && init?.method === "POST" && new URL(input).pathname.endsWith("/regenerate/")) {
        lose = false;
        throw new TypeError("fetch failed: connection reset");
      }
      return response;
    };
    const c = client({ fetch: lossy });
    const conversation = await start(c, "echo");
    const sent = await conversation.send("once");
    await conversation.waitFor(replied, { timeout: 20_000 });
    const version = await conversation.regenerate(sent.id);
    assert.equal(lose, false, "the first answer was lost");
    assert.equal(version.version_index, 2);
    const all = await conversation.versions(sent.id);
    assert.deepEqual(all.map((m) => m.id), [sent.id, version.id]);
    const state = await conversation.waitFor((s) => replied(s) && users(s)[0]?.id === version.id, { timeout: 20_000 });
    assert.equal(users(state).length, 1);
    assert.equal(state.error, null);
  });
});

describe("feedback", () => {
  test("a rating and its comment show in both tabs; null withdraws both; only replies are rated", async () => {
    const c = client();
    const conversation = await start(c, "echo");
    const sent = await conversation.send("rate me");
    const state = await conversation.waitFor(replied, { timeout: 20_000 });
    const tab = await secondTab(c, conversation);
    const reply = lastAgent(state)!;

    const rated = await conversation.feedback(reply.id, "up", "Clear and short.");
    assert.deepEqual([rated.id, rated.feedback, rated.feedback_comment], [reply.id, "up", "Clear and short."]);
    const shows = (rating: string, comment: string) => (s: ConversationState) => {
      const m = s.messages.find((x) => x.id === reply.id);
      return m?.feedback === rating && m.feedback_comment === comment;
    };
    assert.ok(shows("up", "Clear and short.")(conversation.getState()), "the store shows the answer at once");
    await tab.waitFor(shows("up", "Clear and short."), { timeout: 15_000 });

    await tab.feedback(reply.id, "down");
    await conversation.waitFor(shows("down", ""), { timeout: 15_000 });
    await conversation.feedback(reply.id, null);
    await tab.waitFor(shows("", ""), { timeout: 15_000 });

    await assert.rejects(conversation.feedback(sent.id, "up"), (error: unknown) => isValidationError(error) && error.code === "not_an_agent_reply");
    await assert.rejects(conversation.feedback(reply.id, "meh" as "up"), (error: unknown) => isUsageError(error) && error.field === "rating");
  });
});

describe("errors", () => {
  test("another visitor's messages are not found for every version operation and feedback", async () => {
    const owner = client();
    const conversation = await start(owner, "echo");
    const sent = await conversation.send("mine");
    const reply = lastAgent(await conversation.waitFor(replied, { timeout: 20_000 }))!;
    // Another visitor's store of the same conversation id.
    const stranger = client();
    await stranger.startConversation("echo");
    const theirs = keep(stranger.conversation(conversation.sessionId));
    const notFound = (error: unknown) => isNotFound(error);
    await assert.rejects(theirs.regenerate(reply.id), notFound);
    await assert.rejects(theirs.edit(sent.id, "not yours"), notFound);
    await assert.rejects(theirs.setActiveVersion(sent.id), notFound);
    await assert.rejects(theirs.feedback(reply.id, "down"), notFound);
    await assert.rejects(theirs.versions(sent.id), notFound);
    const rows = await owner.messages.filter({ session: conversation.sessionId, message_type: "user" }).fetch();
    assert.deepEqual(rows.map((r) => [r.id, r.version_count]), [[sent.id, 1]], "nothing was made");
    const mine = await owner.messages.filter({ id: reply.id }).fetch();
    assert.equal(mine[0]?.feedback, "");
  });

  test("while a turn runs: regenerate under the reject policy and switching versions are refused with turn_in_progress", async () => {
    const c = client();
    const conversation = await start(c, "versions-test");
    const first = await conversation.send("long 10");
    await conversation.waitFor(replied, { timeout: 20_000 });
    const version = await conversation.regenerate(first.id);
    await conversation.waitFor((s) => replied(s) && users(s)[0]?.id === version.id, { timeout: 20_000 });
    await conversation.send("hold 30");
    await conversation.waitFor((s) => s.streamingMessageId !== null, { timeout: 20_000 });
    const conflict = (error: unknown) => isConflict(error) && error.code === "turn_in_progress";
    await assert.rejects(conversation.regenerate(version.id), conflict);
    await assert.rejects(conversation.edit(version.id, "changed"), conflict);
    await assert.rejects(conversation.setActiveVersion(first.id), conflict);
    assert.equal(conversation.getState().error?.code, "turn_in_progress", "the store shows the refusal");
    conversation.clearError();
    await conversation.cancel();
    const state = await conversation.waitFor((s) => !s.busy && lastAgent(s)?.processing_status === "cancelled", { timeout: 20_000 });
    assert.deepEqual(users(state).map((m) => m.id).slice(0, 1), [version.id], "the path is unchanged");
    assert.equal((await conversation.versions(version.id)).length, 2, "no version was made");
  });
});

describe("conversations", () => {
  test("search() finds conversations by their messages' text and title; a deleted conversation leaves live lists and its store's calls 404", async () => {
    const c = client();
    const word = `zebra${Date.now().toString(36)}`;
    const found = await start(c, "echo");
    await found.send(`a ${word} crossed the road`);
    await found.waitFor(replied, { timeout: 20_000 });
    const other = await start(c, "echo");
    await other.send("nothing to see");
    await other.waitFor(replied, { timeout: 20_000 });
    await c.sessions.update(other.sessionId, { title: `Title ${word}s` });

    const hits = await c.sessions.search(word).orderBy("-updated_at").fetch();
    assert.deepEqual(new Set(hits.map((s) => s.id)), new Set([found.sessionId, other.sessionId]));
    const byText = await c.sessions.search(`${word} crossed`).filter({ id__in: [found.sessionId, other.sessionId] }).fetch();
    assert.deepEqual(byText.map((s) => s.id), [found.sessionId]);
    assert.equal((await c.sessions.search("   ").filter({ id: other.sessionId }).fetch()).length, 1, "a blank search filters nothing");

    const snapshots: LiveSnapshot<SessionRow>[] = [];
    const stop = c.sessions.search(word).live((s) => snapshots.push(s));
    try {
      await until(async () => snapshots.at(-1), (s) => !!s && s.rows.length === 2, "both conversations listed");
      await c.sessions.delete(found.sessionId);
      await until(async () => snapshots.at(-1), (s) => !!s && s.rows.map((r) => r.id).join() === other.sessionId, "the deleted one gone");
    } finally {
      stop();
    }
    assert.equal((await c.sessions.filter({ id: found.sessionId }).fetch()).length, 0);
    // Its open store hears of it and says so (once: a missing conversation is not read again).
    const gone = await found.waitFor((s) => s.session === null && s.error?.code === "not_found", { timeout: 15_000 });
    assert.equal(gone.messages.length, 2, "what it showed stays");
    const reply = lastAgent(found.getState())!;
    await assert.rejects(found.regenerate(reply.id), (error: unknown) => isNotFound(error));
    await assert.rejects(found.feedback(reply.id, "up"), (error: unknown) => isNotFound(error));
  });
});
