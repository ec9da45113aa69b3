// A pusher-js subscriber for the realtime tests and benchmark.
//
//   node subscriber.mjs '<json config>'
//
// Config: {key, host, port, authEndpoint, channels: [names], headers?: {name: value},
//          cookie?: "k=v; ...", csrfToken?: "..."}
// With `cookie`, auth goes through pusher-js's customHandler (Node's XMLHttpRequest polyfill may not
// set Cookie headers) posting the same form-encoded body; otherwise through pusher-js's own ajax
// transport with `headers` (e.g. X-Conversation-Anonymous-Id for stateless visitors).
//
// Prints one JSON object per line: {"type": "connected"}, {"type": "subscribed", channel},
// {"type": "subscription_error", channel, status, error}, {"type": "event", channel, event,
// data, received_ms}. Stops on SIGTERM or when stdin closes.
import Pusher from "pusher-js";
import { performance } from "node:perf_hooks";

const config = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const now = () => performance.timeOrigin + performance.now();

const channelAuthorization = { endpoint: config.authEndpoint, transport: "ajax", headers: config.headers || {} };
if (config.cookie) {
  channelAuthorization.customHandler = async ({ socketId, channelName }, callback) => {
    try {
      const response = await fetch(config.authEndpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-www-form-urlencoded",
          Cookie: config.cookie,
          ...(config.csrfToken ? { "X-CSRFToken": config.csrfToken } : {}),
          ...(config.headers || {}),
        },
        body: new URLSearchParams({ socket_id: socketId, channel_name: channelName }).toString(),
      });
      const body = await response.text();
      if (!response.ok) {
        // pusher-js reports a custom handler's error by its message only.
        callback(new Error(`HTTP ${response.status}: ${body}`), null);
        return;
      }
      callback(null, JSON.parse(body));
    } catch (error) {
      callback(error, null);
    }
  };
}

const pusher = new Pusher(config.key, {
  wsHost: config.host,
  wsPort: config.port,
  forceTLS: false,
  enableStats: false,
  enabledTransports: ["ws"],
  cluster: "local",
  channelAuthorization,
});

pusher.connection.bind("connected", () => out({ type: "connected", socket_id: pusher.connection.socket_id }));
pusher.connection.bind("error", (error) => out({ type: "connection_error", error: String(error?.error?.data?.message || error?.type || error) }));

for (const name of config.channels) {
  const channel = pusher.subscribe(name);
  channel.bind("pusher:subscription_succeeded", () => out({ type: "subscribed", channel: name }));
  channel.bind("pusher:subscription_error", (error) =>
    out({ type: "subscription_error", channel: name, status: error?.status ?? null, error: String(error?.error ?? error?.message ?? "") }),
  );
  channel.bind_global((event, data) => {
    if (event.startsWith("pusher:")) return;
    out({ type: "event", channel: name, event, data, received_ms: now() });
  });
}

const stop = () => {
  pusher.disconnect();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
