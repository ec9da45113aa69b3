// Simulated visitors for the multi-process load benchmark (tests/bench/bench_load.py).
//
//   node load_client.mjs '<json config>'
//
// Config: {key, host, port (soketi), webUrls: [base URL of each web process], prefix (where the
// API is mounted, e.g. "/api/conversations/"), agent, conversations, messages, timeoutMs, thinkMs
// (how long a visitor reads before its next message: 0.5 to 1.5 times this, fixed per visitor
// and message)}.
//
// Each visitor does what a browser tab does through the HTTP API: POST start/, one pusher-js
// connection subscribed to its conversation's channel (authorised by realtime/auth/), then its
// messages one after the other (POST models/message/ with an X-Operation-Id), each sent once the
// previous one's reply has ended. Even visitors are stateless (the X-Conversation-Anonymous-Id
// header); odd ones keep cookies as a browser does (Django session + csrftoken, X-CSRFToken on
// writes). Every request goes to the next web process in turn, as a round-robin load balancer
// sends them, so a visitor's requests and its realtime auth land on both processes.
//
// Prints one JSON object per line: {type: "started", client, session_id, web, ms},
// {type: "subscribed", client}, {type: "sent", client, n, message_id, sent_ms, created_ms},
// {type: "event", client, event, data, received_ms}, {type: "done", client, n, message_id,
// status, done_ms}, {type: "retry", client, path, error} (a request sent again after a dropped
// connection), {type: "error", client, error}; then {type: "finished"} and exit 0.
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

// pusher-js is installed beside soketi, in tests/realtime_server/node_modules.
const require = createRequire(new URL("../realtime_server/package.json", import.meta.url));
const PusherModule = require("pusher-js");
const Pusher = PusherModule.default || PusherModule;

const config = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

// A request on a kept-alive connection that the server closed meanwhile fails before the server
// saw it (uvicorn closes idle connections after 5 s; visitors wait longer than that for a reply).
// Browsers send such a request again; so do these visitors, once per failure, and say so. A
// message create carries its X-Operation-Id, so even one the server did store is not stored twice.
async function fetchRetried(client, path, url, init) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fetch(url, init);
    } catch (error) {
      if (attempt >= 3) throw new Error(`${error}: ${error?.cause ?? ""}`);
      out({ type: "retry", client, path, error: `${error}: ${error?.cause?.code ?? error?.cause ?? ""}` });
    }
  }
}

let turn = 0;
const nextWeb = () => config.webUrls[turn++ % config.webUrls.length];

class Visitor {
  constructor(index) {
    this.index = index;
    this.withCookies = index % 2 === 1;
    this.cookies = new Map();
    this.anonymousId = null;
    this.sessionId = null;
    this.statuses = new Map(); // user message id -> last status seen
    this.replies = new Map(); // agent message id -> {replyTo, ended}
    this.waiters = new Set();
  }

  headers(write) {
    const headers = { "Content-Type": "application/json" };
    if (this.withCookies) {
      if (this.cookies.size) headers.Cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
      if (write && this.cookies.has("csrftoken")) headers["X-CSRFToken"] = this.cookies.get("csrftoken");
    } else if (this.anonymousId) {
      headers["X-Conversation-Anonymous-Id"] = this.anonymousId;
    }
    return headers;
  }

  keepCookies(response) {
    if (!this.withCookies) return;
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const at = pair.indexOf("=");
      this.cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
  }

  async post(path, body, extraHeaders = {}) {
    const web = nextWeb();
    const response = await fetchRetried(this.index, path, web + config.prefix + path, {
      method: "POST",
      headers: { ...this.headers(true), ...extraHeaders },
      body: JSON.stringify(body),
    });
    this.keepCookies(response);
    const text = await response.text();
    if (!response.ok) throw new Error(`POST ${path} on ${web}: HTTP ${response.status}: ${text.slice(0, 300)}`);
    return { web, body: JSON.parse(text) };
  }

  async start() {
    const t0 = now();
    const { web, body } = await this.post("start/", { agent_path: config.agent });
    this.sessionId = body.session_id;
    this.anonymousId = body.anonymous_id;
    out({ type: "started", client: this.index, session_id: this.sessionId, web, ms: now() - t0 });
  }

  authorize = async ({ socketId, channelName }, callback) => {
    try {
      const web = nextWeb();
      const response = await fetchRetried(this.index, "realtime/auth/", web + config.prefix + "realtime/auth/", {
        method: "POST",
        headers: { ...this.headers(true), "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ socket_id: socketId, channel_name: channelName }).toString(),
      });
      const text = await response.text();
      if (!response.ok) {
        callback(new Error(`realtime/auth/ on ${web}: HTTP ${response.status}: ${text.slice(0, 300)}`), null);
        return;
      }
      callback(null, JSON.parse(text));
    } catch (error) {
      callback(error, null);
    }
  };

  subscribe() {
    this.pusher = new Pusher(config.key, {
      wsHost: config.host,
      wsPort: config.port,
      forceTLS: false,
      enableStats: false,
      enabledTransports: ["ws"],
      cluster: "local",
      channelAuthorization: { customHandler: this.authorize },
    });
    const channel = this.pusher.subscribe(`private-conversation-session-${this.sessionId}`);
    channel.bind_global((event, data) => {
      if (event.startsWith("pusher:")) return;
      out({ type: "event", client: this.index, event, data, received_ms: now() });
      this.observe(event, data);
    });
    return new Promise((resolve, reject) => {
      channel.bind("pusher:subscription_succeeded", () => {
        out({ type: "subscribed", client: this.index });
        resolve();
      });
      channel.bind("pusher:subscription_error", (error) =>
        reject(new Error(`subscription: ${String(error?.error ?? error?.status ?? error)}`)),
      );
    });
  }

  observe(event, data) {
    if (event === "message_status" && data.message_type === "user") this.statuses.set(data.message_id, data.status);
    if (event === "stream_start") this.replies.set(data.message_id, { replyTo: data.reply_to, ended: false });
    if (event === "stream_end") {
      const reply = this.replies.get(data.message_id);
      if (reply) reply.ended = true;
    }
    for (const waiter of [...this.waiters]) waiter();
  }

  // The reply to `messageId` is over: its status is final and, when it was answered, a stream
  // replying to it has ended (the message_status may arrive before or after the stream_end).
  answered(messageId) {
    const status = this.statuses.get(messageId);
    if (!TERMINAL.has(status)) return null;
    if (status !== "completed") return status;
    for (const reply of this.replies.values()) if (reply.replyTo === messageId && reply.ended) return status;
    return null;
  }

  waitAnswered(messageId) {
    return new Promise((resolve) => {
      const check = () => {
        const status = this.answered(messageId);
        if (status) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(status);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        resolve(`timeout (last status ${this.statuses.get(messageId) ?? "none"})`);
      }, config.timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  async converse() {
    for (let n = 1; n <= config.messages; n++) {
      const sent = now();
      const { body } = await this.post(
        "models/message/",
        { session: this.sessionId, content: `visitor ${this.index} message ${n}` },
        { "X-Operation-Id": `load-${this.index}-${n}` },
      );
      const messageId = String(body.data);
      out({ type: "sent", client: this.index, n, message_id: messageId, sent_ms: sent, created_ms: now() });
      const status = await this.waitAnswered(messageId);
      out({ type: "done", client: this.index, n, message_id: messageId, status, done_ms: now() });
      if (config.thinkMs && n < config.messages) await sleep(config.thinkMs * (0.5 + ((this.index * 7919 + n * 104729) % 1000) / 1000));
    }
  }

  async run() {
    try {
      await this.start();
      await this.subscribe();
      await this.converse();
    } catch (error) {
      out({ type: "error", client: this.index, error: String(error?.stack ?? error) });
    } finally {
      if (this.pusher) this.pusher.disconnect();
    }
  }
}

const visitors = Array.from({ length: config.conversations }, (_, i) => new Visitor(i));
await Promise.all(visitors.map((visitor) => visitor.run()));
out({ type: "finished" });
process.exit(0);
