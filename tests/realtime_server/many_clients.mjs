// Many pusher-js clients in one Node process, for the many-clients benchmark
// (tests/bench/bench_clients.py).
//
//   node many_clients.mjs <config.json>
//
// Config: {key, host, port, authEndpoint, concurrency, clients: [{visitor, channels: [names]}]}.
// Each client is its own Pusher instance (its own WebSocket), authorised through the project's
// realtime/auth/ with the visitor's X-Conversation-Anonymous-Id header. Clients connect
// `concurrency` at a time: the next one starts when one has all its channels subscribed.
//
// Prints one JSON object per line: {"type": "ready", client} when a client has all its channels,
// {"type": "error", client, channel, status, error}, {"type": "chunk", client, write_ms: [..],
// event_ms, received_ms} for each text_chunk (write_ms: the "@<epoch ms>" stamps the agent wrote in
// the text; event_ms: the event's timestamp), {"type": "end", client} for each stream_end. Stops on
// SIGTERM or when stdin closes.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import Pusher from "pusher-js";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const now = () => performance.timeOrigin + performance.now();
const instances = [];

function connect(index) {
  const client = config.clients[index];
  return new Promise((resolve) => {
    const pusher = new Pusher(config.key, {
      wsHost: config.host,
      wsPort: config.port,
      forceTLS: false,
      enableStats: false,
      enabledTransports: ["ws"],
      cluster: "local",
      channelAuthorization: {
        endpoint: config.authEndpoint,
        transport: "ajax",
        headers: { "X-Conversation-Anonymous-Id": client.visitor },
      },
    });
    instances.push(pusher);
    let left = client.channels.length;
    for (const name of client.channels) {
      const channel = pusher.subscribe(name);
      channel.bind("pusher:subscription_succeeded", () => {
        left -= 1;
        if (left === 0) {
          out({ type: "ready", client: index });
          resolve();
        }
      });
      channel.bind("pusher:subscription_error", (error) => {
        out({ type: "error", client: index, channel: name, status: error?.status ?? null, error: String(error?.error ?? "") });
        resolve();
      });
      channel.bind("text_chunk", (data) => {
        const received = now();
        const stamps = data.text.split(" ").filter((t) => t.startsWith("@")).map((t) => Number(t.slice(1)));
        out({ type: "chunk", client: index, write_ms: stamps, event_ms: Date.parse(data.timestamp), received_ms: received });
      });
      channel.bind("stream_end", () => out({ type: "end", client: index }));
    }
  });
}

async function main() {
  let next = 0;
  const worker = async () => {
    while (next < config.clients.length) {
      const index = next;
      next += 1;
      await connect(index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, config.concurrency || 20) }, worker));
}

const stop = () => {
  for (const pusher of instances) pusher.disconnect();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
main();
