/**
 * How the SDK keeps a live result current under a burst of changes, against a naive client that
 * refetches on every `model_change` event. Both listen on the same real channel of a real demo
 * server (runserver, temporary SQLite, Server-Sent Events); a third client makes the changes.
 * Prints one JSON line per measurement for tests/bench/bench_sdk.py.
 */

import { createClient, type Client, type FetchLike, type SessionRow } from "../src/index.js";
import { startDemoServer } from "../test/helpers/server.js";

const bursts = (process.argv[2] ?? "10,50").split(",").map(Number);
const rounds = Number(process.argv[3] ?? "3");

function counting(): { fetch: FetchLike; queries: () => number; reset: () => void } {
  let n = 0;
  return {
    fetch: (url, init) => {
      if (url.includes("/query/")) n += 1;
      return fetch(url, init);
    },
    queries: () => n,
    reset: () => {
      n = 0;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean, timeout = 30_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await sleep(2);
  }
}

type Listen = (client: Client, onRows: (rows: SessionRow[]) => void) => Promise<() => void>;

/** The SDK: live() gathers a burst into few refetches. */
const batched: Listen = async (client, onRows) => client.sessions.orderBy("-updated_at").live((s) => onRows(s.rows));

/** A naive client: one refetch per event, answers applied in arrival order. */
const naive: Listen = async (client, onRows) => {
  const channel = (await client.realtime.ownerChannel()) as string;
  const refetch = () => client.sessions.orderBy("-updated_at").fetch().then(onRows);
  await refetch();
  return client.realtime.subscribe(channel, {
    event: (event) => {
      if (event.name === "model_change" && event.payload.model === "session") void refetch();
    },
  });
};

async function main(): Promise<void> {
  const server = await startDemoServer();
  try {
    const writer = createClient({ baseUrl: server.api, realtime: "none" });
    const conversation = await writer.startConversation("echo");
    conversation.close();
    const anonymousId = writer.anonymousId as string;
    for (const [name, listen] of [["naive: refetch per event", naive], ["SDK live(): batched", batched]] as const) {
      for (const pattern of ["sequential", "parallel"] as const) for (const burst of bursts) {
        for (let round = 0; round < rounds; round++) {
          const counter = counting();
          const client = createClient({ baseUrl: server.api, fetch: counter.fetch, anonymousId });
          let latest = "";
          const stop = await listen(client, (rows) => {
            latest = rows[0]?.title ?? "";
          });
          await waitFor(() => latest !== "" || counter.queries() > 0);
          await sleep(300);
          counter.reset();
          const final = `burst-${burst}-${round}-${Date.now()}`;
          const started = performance.now();
          // sequential: back to back, each after the previous answer; parallel: all at once (a
          // queryset update over many rows, several tabs). The last write carries the final title.
          if (pattern === "sequential") {
            for (let i = 1; i < burst; i++) await writer.sessions.update(conversation.sessionId, { title: `${final}-${i}` });
          } else {
            await Promise.all(
              Array.from({ length: burst - 1 }, (_, i) => writer.sessions.update(conversation.sessionId, { title: `${final}-${i + 1}` })),
            );
          }
          await writer.sessions.update(conversation.sessionId, { title: final });
          const written = performance.now();
          // A listener that applied a stale answer last may never show the final title.
          const reached = await waitFor(() => latest === final, 5_000).then(
            () => true,
            () => false,
          );
          const current = performance.now();
          await sleep(500); // trailing refetches still count
          const endedCurrent = latest === final;
          stop();
          client.close();
          process.stdout.write(
            JSON.stringify({
              client: name,
              pattern,
              burst,
              ended_current: endedCurrent,
              round,
              queries: counter.queries(),
              reached,
              lag_ms: reached ? current - written : null,
              total_ms: current - started,
            }) + "\n",
          );
        }
      }
    }
  } finally {
    await server.stop();
  }
}

await main();
