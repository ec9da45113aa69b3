/** What a conversation store showed of a streamed reply, for the stream assembly tests. */

import assert from "node:assert/strict";

import type { Client, Conversation, ConversationMessage } from "../../src/index.js";

/**
 * The store's copy of the streamed message at the moment its `stream_end` event was applied,
 * before the finished row replaces it. The listener is added after the store's own listener on
 * the same channel, so the store has applied the event when this one runs.
 */
export function messageAtStreamEnd(client: Client, conversation: Conversation): Promise<ConversationMessage | undefined> {
  return new Promise((resolve) => {
    let stop: (() => void) | null = null;
    let done = false;
    stop = client.realtime.subscribe(conversation.channel, {
      event: (event) => {
        if (done || event.name !== "stream_end") return;
        done = true;
        const message = conversation.getState().messages.find((m) => m.id === event.payload.message_id);
        queueMicrotask(() => stop?.());
        resolve(message);
      },
    });
  });
}

/** Every text the store showed for its streaming agent message, in order. */
export function recordStreamedTexts(conversation: Conversation): string[] {
  const texts: string[] = [];
  conversation.subscribe((state) => {
    for (const m of state.messages) if (m.message_type === "agent" && m.streaming) texts.push(m.content);
  });
  return texts;
}

/** The first recorded text that is not a prefix of `full` (a duplication or a wrong piece), if any. */
export function firstNotPrefix(texts: string[], full: string): { index: number; length: number; at: number } | null {
  for (const [index, text] of texts.entries()) {
    if (!full.startsWith(text)) {
      let at = 0;
      while (at < text.length && text[at] === full[at]) at++;
      return { index, length: text.length, at };
    }
  }
  return null;
}

/** Poll `probe` until it returns a value (not undefined), or fail after `timeout` ms. */
export async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeout = 15_000): Promise<T> {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out after ${timeout} ms waiting for ${what}.`);
}

/** What {@link joinMidStream} saw, for the caller's assertions. */
export interface LateJoin {
  /** The agent row as the server had saved it when the second client joined. */
  savedWhenJoining: string;
  /** The second client's message when it first loaded. */
  firstLoaded: ConversationMessage | undefined;
  /** Both clients' message at their `stream_end`. */
  ownerAtEnd: ConversationMessage | undefined;
  lateAtEnd: ConversationMessage | undefined;
  /** Everything each store showed while streaming. */
  ownerTexts: string[];
  lateTexts: string[];
  /** The finished row. */
  stored: { id: string; content: string; processing_status: string };
}

/**
 * `owner` asks the `stream-test` agent for a burst of coalesced writes (about 4 s); once the server
 * has saved part of the reply, a second client of the same visitor (`late`) opens the conversation, so it
 * starts from a row saved at a write boundary inside a coalesced event and rebuilds the rest
 * from events.
 */
export async function joinMidStream(owner: Client, late: Client, started: Conversation, rounds = 150): Promise<LateJoin> {
  const ownerTexts = recordStreamedTexts(started);
  const ownerEnd = messageAtStreamEnd(owner, started);
  await started.send(`burst ${rounds}`);
  const savedWhenJoining = await eventually(async () => {
    const rows = await owner.messages.filter({ session: started.sessionId }).fetch();
    // The row is saved after the first write and then every STREAM_SAVE_INTERVAL: wait for a
    // later save, so the late client starts in the middle of the reply.
    const agent = rows.find((r) => r.message_type === "agent" && r.processing_status === "streaming" && r.content.length > 1000);
    return agent?.content;
  }, "a save of the streaming row in the middle of the reply");
  const conversation = late.conversation(started.sessionId);
  const lateEnd = messageAtStreamEnd(late, conversation);
  const lateTexts = recordStreamedTexts(conversation);
  try {
    const firstState = await conversation.waitFor((s) => s.loaded, { timeout: 15_000 });
    const firstLoaded = firstState.messages.find((m) => m.message_type === "agent");
    const [ownerAtEnd, lateAtEnd] = await Promise.all([ownerEnd, lateEnd]);
    const finished = (s: { messages: ConversationMessage[] }) =>
      s.messages.some((m) => m.message_type === "agent" && m.processing_status === "completed");
    await Promise.all([started.waitFor(finished, { timeout: 30_000 }), conversation.waitFor(finished, { timeout: 30_000 })]);
    const stored = await owner.messages.get((ownerAtEnd ?? lateAtEnd)?.id as string);
    return { savedWhenJoining, firstLoaded, ownerAtEnd, lateAtEnd, ownerTexts, lateTexts, stored };
  } finally {
    conversation.close();
  }
}

/**
 * What both stores of a {@link joinMidStream} must have shown: the late one joined mid-reply, from
 * a row saved mid-reply; at `stream_end` each had the agent's whole text, and every text it showed
 * while streaming was a prefix of it (nothing doubled, nothing out of place).
 */
export function assertRebuiltExactly(seen: LateJoin): void {
  assert.equal(seen.stored.processing_status, "completed");
  assert.ok(seen.savedWhenJoining.length > 0 && seen.savedWhenJoining.length < seen.stored.content.length);
  assert.equal(seen.firstLoaded?.streaming, true, "joined while the reply was streaming");
  for (const [who, message, texts] of [["owner", seen.ownerAtEnd, seen.ownerTexts], ["late tab", seen.lateAtEnd, seen.lateTexts]] as const) {
    assert.equal(message?.streaming, true, `${who}: stream_end was applied before the finished row`);
    assert.equal(message?.content.length, seen.stored.content.length, `${who}: length at stream_end`);
    assert.ok(message?.content === seen.stored.content, `${who}: the streamed text equals the agent's text`);
    assert.equal(firstNotPrefix(texts, seen.stored.content), null, `${who}: every streamed state was a prefix`);
  }
}
