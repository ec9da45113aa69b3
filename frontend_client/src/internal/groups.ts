/**
 * Which channels share which Server-Sent Events stream: a pure function, so the SSE adapter's
 * placement is tested without a server.
 *
 * The server caps the streams a visitor may hold open (`SSE_MAX_STREAMS_PER_VISITOR`) and the
 * channels one stream may read, so a client reads all its channels over as few streams as that
 * allows: ceil(n / MAX_STREAM_CHANNELS). Every stream whose channels change has to be reopened,
 * so a change moves as few channels as it can.
 */

/** Channels one stream may read: `MAX_STREAM_CHANNELS` of `conversations/realtime/views.py`
 * (`tests/test_sdk_constants.py` keeps the two equal). */
export const MAX_STREAM_CHANNELS = 10;

/**
 * The channels each stream should read once only `wanted` are followed. `groups` are the channel
 * lists of the streams as they are; the answer has one list per stream at the same index (empty:
 * close that stream), then the lists of new streams. A stream keeps the channels it has that are
 * still wanted; new channels fill the streams with room, in order, before a new stream is
 * opened; and while more streams are open than the channels need, the emptiest (the later one
 * on a tie) is emptied into the others.
 */
export function planGroups<T>(groups: readonly (readonly T[])[], wanted: Iterable<T>, max = MAX_STREAM_CHANNELS): T[][] {
  const remaining = new Set(wanted);
  const plan = groups.map((group) => group.filter((item) => remaining.has(item)));
  for (const group of plan) for (const item of group) remaining.delete(item);
  for (const item of remaining) {
    let group = plan.find((g) => g.length > 0 && g.length < max);
    if (!group) {
      group = [];
      // An emptied stream is reused rather than closed and another one opened.
      const empty = plan.findIndex((g) => g.length === 0);
      if (empty >= 0) plan[empty] = group;
      else plan.push(group);
    }
    group.push(item);
  }
  const total = plan.reduce((sum, g) => sum + g.length, 0);
  const needed = Math.ceil(total / max);
  for (;;) {
    const used = plan.filter((g) => g.length > 0);
    if (used.length <= needed) break;
    let smallest = used[0] as T[];
    for (const g of used) if (g.length <= smallest.length) smallest = g;
    const moving = smallest.splice(0);
    for (const item of moving) {
      const target = plan.find((g) => g !== smallest && g.length > 0 && g.length < max) as T[];
      target.push(item);
    }
  }
  return plan;
}
