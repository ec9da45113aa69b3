/** Which channels share which Server-Sent Events stream (`planGroups`), without a server. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MAX_STREAM_CHANNELS, planGroups } from "../src/internal/groups.js";

const names = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `c${from + i}`);

describe("planGroups", () => {
  test("channels share one stream up to the server's limit, then as few streams as they need", () => {
    assert.equal(MAX_STREAM_CHANNELS, 10);
    assert.deepEqual(planGroups([], names(0, 3)), [names(0, 3)]);
    assert.deepEqual(planGroups([], names(0, 15)), [names(0, 10), names(10, 15)]);
    assert.deepEqual(planGroups([], names(0, 21)), [names(0, 10), names(10, 20), names(20, 21)]);
    assert.deepEqual(planGroups([], []), []);
  });

  test("a new channel joins a stream with room; the others are left as they are", () => {
    assert.deepEqual(planGroups([names(0, 10), names(10, 12)], [...names(0, 12), "new"]), [names(0, 10), [...names(10, 12), "new"]]);
    assert.deepEqual(planGroups([names(0, 10)], [...names(0, 10), "new"]), [names(0, 10), ["new"]]);
  });

  test("a channel no longer followed leaves its stream; a stream left empty is closed", () => {
    assert.deepEqual(planGroups([["a", "b", "c"]], ["a", "c"]), [["a", "c"]]);
    assert.deepEqual(planGroups([["a", "b"]], []), [[]]);
    // An emptied stream is reused for a channel subscribed in the same tick.
    assert.deepEqual(planGroups([["a"], names(0, 10)], [...names(0, 10), "b"]), [["b"], names(0, 10)]);
  });

  test("streams that fewer would serve are merged, the emptiest into the others", () => {
    const plan = planGroups([names(0, 10), names(10, 15)], [...names(6, 15)]);
    assert.deepEqual(plan, [[], [...names(10, 15), ...names(6, 10)]]);
    // 3 + 3 + 5 channels need two streams: of the two smallest, the later one is merged.
    const three = planGroups([names(0, 10), names(10, 20), names(20, 25)], [...names(0, 3), ...names(10, 13), ...names(20, 25)]);
    assert.deepEqual(three, [[...names(0, 3), ...names(10, 13)], [], names(20, 25)]);
  });

  test("after any sequence of changes: each channel once, at most 10 per stream, ceil(n / 10) streams", () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let groups: string[][] = [];
    let followed = new Set<string>();
    for (let step = 0; step < 500; step++) {
      const next = new Set(followed);
      const changes = 1 + Math.floor(random() * 6);
      for (let k = 0; k < changes; k++) {
        const name = `c${Math.floor(random() * 40)}`;
        if (next.has(name)) next.delete(name);
        else next.add(name);
      }
      const before = groups;
      groups = planGroups(before, next);
      const placed = groups.flat();
      assert.deepEqual([...placed].sort(), [...next].sort(), `step ${step}: every followed channel exactly once`);
      assert.ok(groups.every((g) => g.length <= MAX_STREAM_CHANNELS), `step ${step}: a stream over the limit`);
      assert.equal(groups.filter((g) => g.length).length, Math.ceil(next.size / MAX_STREAM_CHANNELS), `step ${step}: streams`);
      // A channel still followed stays on its stream unless its stream was merged away.
      before.forEach((group, index) => {
        const kept = groups[index] ?? [];
        if (kept.length === 0) return;
        for (const name of group) if (next.has(name)) assert.ok(kept.includes(name), `step ${step}: ${name} moved`);
      });
      followed = next;
      groups = groups.filter((g) => g.length);
    }
  });
});
