// The demo chat page. Everything it knows comes through the TypeScript SDK (django-ai-first-client):
// agents from the schema, the live session list, one conversation store per open conversation.

const config = JSON.parse(document.getElementById("demo-config").textContent);
const $ = (id) => document.getElementById(id);

const AGENTS = {
  support: { hue: 245, suggestions: ["How do refunds work?", "I'd like to book a call", "I forgot my password"] },
  sales: { hue: 160, suggestions: ["What do you sell?", "Can I use pro-features?", "Are team seats available?"] },
  files: { hue: 25, suggestions: ["Attach a PDF, a Word file or a photo of a page, then ask about it"] },
  writer: { hue: 300, suggestions: ["A story about a lighthouse keeper", "A story about a lost umbrella"] },
  echo: { hue: 200, suggestions: ["Hello!", "Is anybody there?"] },
};
const look = (path) => AGENTS[path] ?? { hue: 220, suggestions: [] };

// An agent's avatar: its initial on its colour (no emoji font needed).
function avatar(path) {
  const hue = look(path).hue;
  return el("span", {
    class: "avatar",
    "aria-hidden": "true",
    style: `background: linear-gradient(135deg, hsl(${hue} 75% 58%), hsl(${hue + 30} 70% 50%))`,
    text: (agentName(path) || "?").trim().charAt(0).toUpperCase(),
  });
}

let sdk;
let client;
let agents = [];
let sessions = [];
let knownSessionIds = null;
let current = null; // { conversation, stop, sessionId, draft: [{key, promise, fileId}] }
let lastErrorShown = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function agentName(path) {
  return agents.find((a) => a.path === path)?.name ?? path ?? "Agent";
}

function timeAgo(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function formatSlot(slot) {
  const date = new Date(slot.replace(" ", "T"));
  if (Number.isNaN(date.getTime())) return slot;
  return `${date.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" })} · ${slot.slice(11)}`;
}

// Errors -> one sentence a person understands.
function describeError(error) {
  if (!error) return null;
  if (sdk.isNetworkError(error)) return { kind: "error", text: "Can’t reach the server. Is ./dev demo still running?" };
  if (sdk.isRateLimited(error)) {
    const wait = error.retryAfter ? `${Math.ceil(error.retryAfter)} s` : "a moment";
    return { kind: "warn", text: `You’re sending messages too fast. Try again in ${wait}.` };
  }
  if (sdk.isPayloadTooLarge(error)) return { kind: "error", text: `File refused: ${error.message}` };
  // 415: the server looked at the bytes (not the name) and does not accept this kind of file.
  if (sdk.isUnsupportedFileType(error)) return { kind: "error", text: `File refused, this kind of file is not accepted. ${error.message}` };
  if (sdk.isRealtimeError(error)) return { kind: "warn", text: "Live updates are unavailable; replies will appear when they finish." };
  if (sdk.isApiError(error) && error.status >= 500) return { kind: "error", text: "The server failed. Try again in a moment." };
  return { kind: "error", text: error.message || "Something went wrong." };
}

function showBanner(error, action) {
  const info = describeError(error);
  if (!info) return hideBanner();
  $("banner").hidden = false;
  $("banner").dataset.kind = info.kind;
  $("banner-text").textContent = info.text;
  const button = $("banner-action");
  button.hidden = !action;
  if (action) {
    button.textContent = action.label;
    button.onclick = action.run;
  }
}

function hideBanner() {
  $("banner").hidden = true;
}

function showFatal(error) {
  $("fatal").hidden = false;
  if (error && !sdk?.isNetworkError?.(error)) $("fatal-text").textContent = error.message ?? String(error);
}

// Agents and the live session list.
function renderAgents() {
  const list = $("agent-list");
  const cards = $("agent-cards");
  list.replaceChildren();
  cards.replaceChildren();
  for (const agent of agents) {
    list.append(
      el("li", {}, el("button", { type: "button", dataset: { agent: agent.path }, onclick: () => startConversation(agent.path) },
        avatar(agent.path),
        el("strong", { text: agent.name }),
      )),
    );
    cards.append(
      el("button", { type: "button", class: "agent-card", dataset: { agent: agent.path }, onclick: () => startConversation(agent.path) },
        avatar(agent.path),
        el("strong", { text: agent.name }),
        el("p", { text: agent.description }),
        el("code", { text: agent.path }),
      ),
    );
  }
}

function renderSessions() {
  const list = $("session-list");
  list.replaceChildren();
  $("no-sessions").hidden = sessions.length > 0;
  for (const session of sessions) {
    const fresh = knownSessionIds && !knownSessionIds.has(session.id);
    list.append(
      el("li", { class: [session.id === current?.sessionId && "active", session.status === "archived" && "archived", fresh && "new"].filter(Boolean).join(" "), dataset: { session: session.id } },
        el("button", { type: "button", onclick: () => openConversation(session.id) },
          el("span", { class: "title", text: session.title || `New ${agentName(session.agent_path)} chat` }),
          el("span", { class: "meta", text: `${agentName(session.agent_path)} · ${timeAgo(session.last_message_at || session.created_at)}` }),
        ),
      ),
    );
  }
  knownSessionIds = new Set(sessions.map((s) => s.id));
}

function followSessions() {
  client.sessions.orderBy("-updated_at").limit(50).live(
    (snapshot) => {
      sessions = snapshot.rows;
      $("sessions-live").classList.toggle("on", snapshot.connection === "subscribed");
      renderSessions();
    },
    { onError: (error) => showBanner(error) },
  );
}

// Opening and starting conversations.
async function startConversation(path) {
  closeMenu();
  try {
    // Only agents that declare a "tier" start parameter take the plan (others refuse unknown keys).
    const agent = agents.find((a) => a.path === path);
    const params = agent?.start_params?.properties?.tier ? { tier: $("plan").value } : {};
    const conversation = await client.startConversation(path, params);
    openConversation(conversation.sessionId, conversation);
    $("input").focus();
  } catch (error) {
    showBanner(error);
  }
}

function openConversation(sessionId, conversation) {
  closeMenu();
  if (current?.sessionId === sessionId) return;
  if (current) {
    current.stop();
    current.conversation.close();
  }
  const store = conversation ?? client.conversation(sessionId);
  current = { sessionId, conversation: store, stop: () => undefined, draft: [] };
  current.stop = store.subscribe(renderConversation);
  lastErrorShown = null;
  hideBanner();
  if (location.hash !== `#/c/${sessionId}`) history.replaceState(null, "", `#/c/${sessionId}`);
  $("welcome").hidden = true;
  $("thread").hidden = false;
  $("composer").hidden = false;
  $("messages").replaceChildren();
  renderSessions();
}

// The conversation.
const rendered = new Map(); // message id -> { node, signature }

function renderConversation(state) {
  if (!current || state.sessionId !== current.sessionId) return;
  const agentPath = state.session?.agent_path ?? sessions.find((s) => s.id === state.sessionId)?.agent_path;
  $("conversation-agent").textContent = agentPath ? agentName(agentPath) : "Conversation";
  const phaseText = { loading: "Loading…", idle: "", sending: "Sending…", waiting: "Thinking…", streaming: "Replying…" }[state.phase];
  $("conversation-subtitle").textContent = [state.session?.title, phaseText].filter(Boolean).join(" · ");
  const connection = $("connection");
  connection.dataset.state = state.connection;
  connection.lastElementChild.textContent =
    { subscribed: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", failed: "Offline", closed: "Not live" }[state.connection] ?? state.connection;

  const thread = $("thread");
  const nearBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
  const list = $("messages");
  const seen = new Set();
  let previous = null;
  for (const message of state.messages) {
    seen.add(message.id);
    const signature = JSON.stringify([
      message.content, message.processing_status, message.local, message.sendError?.code, message.widget?.display_data,
      message.widget?.data, message.attachments.map((f) => [f.id, f.extraction_status]), message.files.map((id) => state.files[id]?.extraction_status),
      state.busy,
    ]);
    let entry = rendered.get(message.id);
    if (!entry || entry.signature !== signature) {
      const node = renderMessage(message, state);
      if (entry) {
        node.classList.add("settled");
        entry.node.replaceWith(node);
      }
      entry = { node, signature };
      rendered.set(message.id, entry);
    }
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== entry.node) list.insertBefore(entry.node, expected);
    previous = entry.node;
  }
  for (const [id, entry] of rendered) {
    if (!seen.has(id)) {
      entry.node.remove();
      rendered.delete(id);
    }
  }
  const streaming = state.messages.find((m) => m.streaming);
  // The dots show from the moment a message is sent until the reply's first words arrive.
  const sent = state.messages.some((m) => m.local && !m.sendError && m.message_type === "user");
  const typing = sent || state.phase === "waiting" || (streaming && !streaming.content);
  let indicator = list.querySelector(".typing");
  if (typing && !indicator) {
    indicator = el("li", { class: "message agent typing", "aria-label": "The agent is typing" },
      avatar(agentPath), el("div", { class: "bubble" }, el("i"), el("i"), el("i")));
  }
  if (typing) list.append(indicator);
  else indicator?.remove();

  renderSuggestions(state, agentPath);
  renderComposer(state);

  if (state.error && state.error !== lastErrorShown) {
    lastErrorShown = state.error;
    showBanner(state.error, { label: "Dismiss", run: () => { current?.conversation.clearError(); hideBanner(); } });
  } else if (!state.error && lastErrorShown) {
    lastErrorShown = null;
    hideBanner();
  }
  if (nearBottom) thread.scrollTop = thread.scrollHeight;
}

function renderMessage(message, state) {
  const type = message.message_type;
  const classes = ["message", type, message.processing_status, message.streaming && "streaming", message.local && "local", message.sendError && "failed"];
  const li = el("li", { class: classes.filter(Boolean).join(" "), dataset: { id: message.id, type, status: message.processing_status } });
  const agentPath = state.session?.agent_path;
  if (type === "user") {
    const stack = el("div", { class: "stack" }, el("div", { class: "bubble", text: message.content }));
    if (message.files.length) {
      stack.append(el("div", { class: "chips" }, message.files.map((id) => fileChip(state.files[id] ?? message.attachments.find((f) => f.id === id)))));
    }
    if (message.sendError) {
      stack.append(el("div", { class: "status" },
        el("span", { class: "bad", text: `Not sent: ${describeError(message.sendError).text}` }),
        el("button", { class: "link", type: "button", text: "Retry", onclick: () => retry(message) }),
        el("button", { class: "link", type: "button", text: "Discard", onclick: () => current.conversation.discard(message.id) }),
      ));
    } else if (message.local) {
      stack.append(el("div", { class: "status", text: "Sending…" }));
    }
    li.append(stack);
  } else if (type === "widget") {
    li.append(avatar(agentPath), renderWidget(message, state));
  } else if (type === "system") {
    li.append(el("div", { class: "bubble", text: message.content }));
  } else {
    li.append(avatar(agentPath), el("div", { class: "bubble", text: message.content }));
  }
  return li;
}

function fileChip(file) {
  if (!file) return el("span", { class: "chip", text: "file" });
  const status = file.extraction_status;
  const label = { pending: "extracting text…", processing: "extracting text…", done: "text extracted", failed: "unreadable" }[status] ?? status;
  // Why extraction failed, in the server's words (the file row's extraction_error).
  const title = status === "failed" && file.extraction_error ? file.extraction_error : undefined;
  return el("span", { class: "chip", dataset: { status, file: file.id }, title },
    status === "pending" || status === "processing" ? el("span", { class: "spinner" }) : el("span", { text: status === "done" ? "✓" : "!" }),
    el("span", { text: `${file.filename} · ${label}` }));
}

function renderWidget(message, state) {
  const widget = message.widget;
  if (!widget) return el("div", { class: "widget-card" }, el("span", { class: "muted", text: "Loading widget…" }));
  if (widget.widget_type === "appointment_form") {
    const selected = widget.display_data?.selected_slot;
    const confirmed = widget.display_data?.confirmed;
    const slots = Array.isArray(widget.data.available_slots) ? widget.data.available_slots : [];
    return el("div", { class: "widget-card appointment", dataset: { widget: widget.id } },
      el("h3", {}, el("span", { class: "widget-icon", text: "◷" }), widget.data.title ?? "Pick a time"),
      el("div", { class: "slots" }, slots.map((slot) =>
        el("button", {
          type: "button",
          class: `slot${slot === selected ? " selected" : ""}`,
          disabled: Boolean(selected) || state.busy,
          dataset: { slot },
          onclick: () => pickSlot(widget, slot),
        }, formatSlot(slot)))),
      confirmed ? el("div", { class: "confirmed", text: `✓ Booked for ${formatSlot(selected)}` }) : null,
    );
  }
  if (widget.widget_type === "tool_call") {
    const args = Object.entries(widget.data.arguments ?? {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ");
    const result = typeof widget.data.result === "string" ? widget.data.result : `${(widget.data.result ?? []).length ?? ""} result(s)`;
    return el("div", { class: "widget-card tool", dataset: { widget: widget.id } },
      el("div", { class: "tool-call" }, el("span", { class: "tool-label", text: "tool" }), el("code", { text: `${widget.data.name}(${args})` }), "→", el("span", { text: result })));
  }
  return el("div", { class: "widget-card", dataset: { widget: widget.id } },
    el("h3", { text: widget.widget_type }), el("pre", { text: JSON.stringify(widget.data, null, 2) }));
}

async function pickSlot(widget, slot) {
  const conversation = current.conversation;
  try {
    await conversation.updateWidget(widget.id, { ...widget.display_data, selected_slot: slot });
    const template = typeof widget.data.answer_template === "string" ? widget.data.answer_template : "{slot}";
    await conversation.send(template.replace("{slot}", slot));
  } catch (error) {
    showBanner(error);
  }
}

function renderSuggestions(state, agentPath) {
  const box = $("suggestions");
  const show = state.loaded && state.messages.length === 0;
  box.hidden = !show;
  if (!show) return;
  const wanted = look(agentPath).suggestions.join("|");
  if (box.dataset.for === wanted) return;
  box.dataset.for = wanted;
  box.replaceChildren(...look(agentPath).suggestions.map((text) =>
    el("button", { type: "button", text, onclick: () => (text.startsWith("Attach") ? $("file-input").click() : send(text)) })));
}

function renderComposer(state) {
  $("stop").hidden = !state.busy || state.phase === "sending";
  $("send").hidden = !$("stop").hidden;
  const tray = $("attachments");
  tray.replaceChildren();
  for (const item of current.draft) {
    const upload = state.uploads.find((u) => u.key === item.key) ?? item.upload;
    if (!upload) continue;
    const file = upload.file ? state.files[upload.file.id] ?? upload.file : null;
    const percent = upload.total ? Math.round((100 * upload.loaded) / upload.total) : 0;
    // All bytes sent and no answer yet: the server is storing the file and starting extraction.
    const status = upload.status === "failed" ? "failed" : file ? file.extraction_status : percent >= 100 ? "processing" : "uploading";
    const label = {
      uploading: `Uploading… ${percent}%`,
      pending: "Extracting text…",
      processing: "Extracting text…",
      done: "Text extracted",
      failed: upload.error ? describeError(upload.error).text : file?.extraction_error || "Could not read this file",
    }[status];
    // data-code: why an upload was refused (e.g. unsupported_file_type), for styling and tests.
    const dataset = upload.error?.code ? { status, code: upload.error.code } : { status };
    tray.append(el("li", { class: "attachment", dataset },
      el("header", {},
        el("span", { class: "name", text: upload.filename }),
        el("button", { type: "button", class: "icon-button", "aria-label": `Remove ${upload.filename}`, onclick: () => removeDraft(item) }, "✕")),
      el("span", { class: "state" }, status === "pending" || status === "processing" || status === "uploading" ? el("span", { class: "spinner" }) : null, label),
      status === "uploading" ? el("div", { class: "progress" }, el("i", { style: `width:${percent}%` })) : null,
    ));
  }
}

function removeDraft(item) {
  current.draft = current.draft.filter((d) => d !== item);
  renderConversation(current.conversation.getState());
}

function attach(files) {
  if (!current) return;
  for (const file of files) {
    const item = { key: null, fileId: null, upload: null, promise: null };
    item.promise = current.conversation
      .upload(file, {
        onProgress: (upload) => {
          item.key = upload.key;
          item.upload = upload;
        },
      })
      .then((row) => {
        item.fileId = row.id;
        return row;
      })
      .catch((error) => {
        item.failed = error;
        return null;
      });
    current.draft.push(item);
  }
  const state = current.conversation.getState();
  // The upload's key is known after its first progress report: render again then.
  queueMicrotask(() => renderConversation(current.conversation.getState()));
  renderConversation(state);
}

async function send(text, files) {
  if (!current) return;
  const conversation = current.conversation;
  const draft = files ? [] : current.draft;
  if (!files) {
    await Promise.all(draft.map((d) => d.promise));
    files = draft.filter((d) => d.fileId).map((d) => d.fileId);
    if (draft.some((d) => d.failed) && !files.length && !text.trim()) return;
  }
  const first = conversation.getState().messages.length === 0;
  const sessionId = current.sessionId;
  if (!files.length && !text.trim()) return;
  try {
    current.draft = current.draft.filter((d) => !draft.includes(d));
    const pending = conversation.send(text.trim() || "Please read the attached file.", { files });
    $("input").value = "";
    autoGrow();
    await pending;
    conversation.clearUploads();
    if (first) client.sessions.update(sessionId, { title: text.trim().slice(0, 60) || "Files" }).catch(() => undefined);
  } catch {
    // Shown by the store: the message stays with its error (Retry / Discard).
  }
}

function retry(message) {
  // Under the first try's operation id: a message the server did store is not stored twice.
  current.conversation.retry(message.id).catch(() => undefined); // a new failure shows on the message
}

// Composer wiring.
function autoGrow() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
}

function closeMenu() {
  $("app").classList.remove("menu-open");
}

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send($("input").value);
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send($("input").value);
    }
  });
  $("input").addEventListener("input", autoGrow);
  $("file-input").addEventListener("change", (event) => {
    attach([...event.target.files]);
    event.target.value = "";
  });
  $("stop").addEventListener("click", () => current?.conversation.cancel().catch((error) => showBanner(error)));
  $("banner-close").addEventListener("click", hideBanner);
  $("open-sidebar").addEventListener("click", () => $("app").classList.add("menu-open"));
  $("close-sidebar").addEventListener("click", closeMenu);
  $("fatal-retry").addEventListener("click", () => location.reload());
  const thread = $("thread");
  thread.addEventListener("dragover", (event) => event.preventDefault());
  thread.addEventListener("drop", (event) => {
    event.preventDefault();
    attach([...(event.dataTransfer?.files ?? [])]);
  });
  window.addEventListener("hashchange", route);
}

function route() {
  const match = location.hash.match(/^#\/c\/([0-9a-f-]{36})$/);
  if (match) openConversation(match[1]);
}

async function boot() {
  try {
    sdk = await import(config.sdk);
  } catch (error) {
    showFatal(new Error(`Could not load the SDK bundle (${config.sdk}): ${error.message}`));
    return;
  }
  client = sdk.createClient({ baseUrl: config.apiBase });
  window.demo = { client, get conversation() { return current?.conversation ?? null; } };
  wire();
  try {
    agents = await client.agents();
  } catch (error) {
    showFatal(error);
    return;
  }
  $("app").dataset.phase = "ready";
  renderAgents();
  followSessions();
  route();
}

boot();
