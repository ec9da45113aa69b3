/**
 * StreamAssembler, the store's stream assembly (docs/protocol.md, "Resuming a stream"), on its own:
 * pure logic, no server. The streams are built like the server's sender builds them (writes
 * coalesced into events, long text cut into events that share a sequence, offsets in UTF-16 code
 * units) from seeded random writes, and delivered with late joins, duplicates and reordering.
 * The same behaviour against the real server and transports is in conversation.test.ts and
 * pusher.test.ts.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { StreamAssembler, type StreamChunk } from "../src/index.js";

const ID = "m-1";

/** A small seeded PRNG (mulberry32), so a failure names a seed that reproduces it. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ["a", "b", " ", "é", "ü", "日", "本", "😀", "𝄞", "\n", '"', "\\", "🇩🇪"];

function write(rand: () => number, max: number): string {
  const n = 1 + Math.floor(rand() * max);
  let out = "";
  for (let i = 0; i < n; i++) out += ALPHABET[Math.floor(rand() * ALPHABET.length)];
  return out;
}

/** Code points of `text`, so cuts never split a surrogate pair (as the server's split). */
const points = (text: string) => Array.from(text);

/** Writes -> events as the sender makes them: runs of writes, each run cut into pieces. */
function events(writes: string[], rand: () => number, maxPiece: number): StreamChunk[] {
  const out: StreamChunk[] = [];
  let offset = 0;
  let w = 0;
  while (w < writes.length) {
    const run = Math.min(writes.length - w, 1 + Math.floor(rand() * 8));
    // Each code point of the run with the sequence (1-based) of its write.
    const chars: { c: string; seq: number }[] = [];
    for (let k = 0; k < run; k++) for (const c of points(writes[w + k] as string)) chars.push({ c, seq: w + k + 1 });
    let start = 0;
    while (start < chars.length) {
      const size = Math.max(1, Math.min(chars.length - start, 1 + Math.floor(rand() * maxPiece)));
      const piece = chars.slice(start, start + size);
      const text = piece.map((p) => p.c).join("");
      out.push({ message_id: ID, text, offset, first_sequence: piece[0]?.seq as number, sequence: piece.at(-1)?.seq as number });
      offset += text.length;
      start += size;
    }
    w += run;
  }
  return out;
}

/** The row as saved after write `k` (always at a write boundary). */
const rowAt = (writes: string[], k: number) => ({ content: writes.slice(0, k).join(""), stream_sequence: k, processing_status: "streaming" });

function hasLoneSurrogate(text: string): boolean {
  return /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

describe("StreamAssembler", () => {
  test("random streams, late joins, rows saved inside events, duplicates and reordering end exactly", () => {
    for (let seed = 1; seed <= 400; seed++) {
      const rand = random(seed);
      const writes = Array.from({ length: 5 + Math.floor(rand() * 60) }, () => (rand() < 0.05 ? write(rand, 400) : write(rand, 12)));
      const full = writes.join("");
      const all = events(writes, rand, rand() < 0.5 ? 6 : 200);
      // The client subscribes before event `join` and reads a row saved after write `saved`.
      const join = Math.floor(rand() * all.length);
      const delivered = all.slice(join);
      for (let i = 0; i + 1 < delivered.length; i++) {
        if (rand() < 0.1) [delivered[i], delivered[i + 1]] = [delivered[i + 1] as StreamChunk, delivered[i] as StreamChunk];
        if (rand() < 0.05) delivered.splice(i, 0, delivered[Math.floor(rand() * (i + 1))] as StreamChunk);
      }
      let saved = Math.floor(rand() * (writes.length + 1));
      const readAt = Math.floor(rand() * (delivered.length + 1));
      const a = new StreamAssembler(ID);
      const seen: string[] = [];
      delivered.forEach((chunk, i) => {
        if (i === readAt) a.applyRow(rowAt(writes, saved));
        a.applyChunk(chunk);
        seen.push(a.text);
        // A gap: read the row again (later saves only go forward).
        if (a.needsRow && rand() < 0.3) {
          saved = Math.min(writes.length, saved + 1 + Math.floor(rand() * 5));
          a.applyRow(rowAt(writes, saved));
          seen.push(a.text);
        }
      });
      if (readAt >= delivered.length) a.applyRow(rowAt(writes, saved));
      let reads = 0;
      while (a.needsRow) {
        saved = Math.min(writes.length, saved + 1 + Math.floor(rand() * 5));
        a.applyRow(rowAt(writes, saved));
        assert.ok(++reads <= writes.length, `seed ${seed}: the gap never closes`);
      }
      const where = `seed ${seed} (join ${join}/${all.length}, row at write ${saved})`;
      for (const text of seen) assert.ok(full.startsWith(text), `${where}: "${text.slice(-20)}" is not a prefix of the reply`);
      assert.equal(a.text.length, full.length, where);
      assert.equal(a.text, full, where);
      assert.ok(!hasLoneSurrogate(a.text), where);
      assert.equal(a.sequence, writes.length, where);
    }
  });

  test("a row saved at write 5 inside an event carrying writes 3 to 8 is cut there, not repeated", () => {
    const writes = ["w1 ", "w2 ", "w3 ", "w4 ", "w5 ", "w6 ", "w7 ", "w8 "];
    const a = new StreamAssembler(ID);
    a.applyRow(rowAt(writes, 5));
    const carried = writes.slice(2).join("");
    assert.equal(a.applyChunk({ message_id: ID, first_sequence: 3, sequence: 8, offset: 6, text: carried }), true);
    assert.equal(a.text, writes.join(""));
    assert.equal(a.sequence, 8);
    // The same event again (a replay after a reconnect) changes nothing.
    assert.equal(a.applyChunk({ message_id: ID, first_sequence: 3, sequence: 8, offset: 6, text: carried }), true);
    assert.equal(a.text, writes.join(""));
  });

  test("pieces of one long write share its sequence and all count", () => {
    const long = "😀é".repeat(5000);
    const a = new StreamAssembler(ID);
    let offset = 0;
    for (const piece of [long.slice(0, 4000), long.slice(4000, 9000), long.slice(9000)]) {
      assert.equal(a.applyChunk({ message_id: ID, first_sequence: 1, sequence: 1, offset, text: piece }), true);
      offset += piece.length;
    }
    assert.equal(a.text, long);
    assert.equal(a.needsRow, false);
  });

  test("a gap is held until a fresher row reaches it", () => {
    const a = new StreamAssembler(ID);
    a.applyRow({ content: "Hello", stream_sequence: 1, processing_status: "streaming" });
    assert.equal(a.applyChunk({ message_id: ID, first_sequence: 3, sequence: 3, offset: 11, text: " again" }), false);
    assert.equal(a.needsRow, true);
    assert.equal(a.text, "Hello");
    // An older or equal row does not help; the row at write 2 closes the gap exactly.
    a.applyRow({ content: "Hel", stream_sequence: 0, processing_status: "streaming" });
    assert.equal(a.needsRow, true);
    a.applyRow({ content: "Hello world", stream_sequence: 2, processing_status: "streaming" });
    assert.equal(a.needsRow, false);
    assert.equal(a.text, "Hello world again");
    assert.equal(a.sequence, 3);
  });

  test("a finished row is the whole truth: held and later chunks are dropped", () => {
    const a = new StreamAssembler(ID);
    a.applyChunk({ message_id: ID, first_sequence: 1, sequence: 1, offset: 0, text: "Draft " });
    a.applyChunk({ message_id: ID, first_sequence: 3, sequence: 3, offset: 40, text: "far ahead" });
    assert.equal(a.needsRow, true);
    a.applyRow({ content: "The final answer.", stream_sequence: 3, processing_status: "completed" });
    assert.equal(a.finished, true);
    assert.equal(a.needsRow, false);
    assert.equal(a.text, "The final answer.");
    assert.equal(a.applyChunk({ message_id: ID, first_sequence: 4, sequence: 4, offset: 17, text: " More." }), false);
    a.applyRow({ content: "The final", stream_sequence: 2, processing_status: "streaming" });
    assert.equal(a.text, "The final answer.");
  });

  test("offsets count UTF-16 code units: a cut after a character outside the BMP is exact", () => {
    const a = new StreamAssembler(ID);
    a.applyRow({ content: "😀x", stream_sequence: 2, processing_status: "streaming" }); // 3 units
    a.applyChunk({ message_id: ID, first_sequence: 2, sequence: 3, offset: 2, text: "x𝄞y" });
    assert.equal(a.text, "😀x𝄞y");
  });

  test("a cut that would split a surrogate pair is refused and the row is asked for", () => {
    const a = new StreamAssembler(ID);
    a.applyRow({ content: "ab", stream_sequence: 1, processing_status: "streaming" });
    // Inconsistent on purpose: the known text ends inside this chunk's emoji.
    a.applyChunk({ message_id: ID, first_sequence: 1, sequence: 2, offset: 1, text: "😀c" });
    assert.equal(a.text, "ab");
    a.applyChunk({ message_id: ID, first_sequence: 3, sequence: 3, offset: 4, text: "d" });
    assert.equal(a.needsRow, true);
  });

  test("events without offset (the Memory backend) are applied by sequence", () => {
    const a = new StreamAssembler(ID);
    a.applyRow({ content: "one two ", stream_sequence: 2, processing_status: "streaming" });
    assert.equal(a.applyChunk({ message_id: ID, sequence: 2, text: "two " }), true); // known
    assert.equal(a.applyChunk({ message_id: ID, sequence: 4, text: "four " }), false); // gap
    assert.equal(a.needsRow, true);
    assert.equal(a.applyChunk({ message_id: ID, sequence: 3, text: "three " }), true);
    assert.equal(a.text, "one two three four ");
    assert.equal(a.needsRow, false);
  });

  test("chunks of another message are ignored", () => {
    const a = new StreamAssembler(ID);
    assert.equal(a.applyChunk({ message_id: "other", first_sequence: 1, sequence: 1, offset: 0, text: "x" }), false);
    assert.equal(a.text, "");
    assert.equal(a.needsRow, false);
  });
});
