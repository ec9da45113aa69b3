// The demo chat page. Everything it knows comes through the TypeScript SDK (django-ai-first-client):
// agents and the upload limit from the schema, the live session list, one conversation store per
// open conversation.
//
// Decisions:
// - One screen at a time: welcome, starting (an agent was picked, its conversation does not exist
//   yet), opening (a link is being checked), conversation, missing. Every navigation bumps
//   `navigation`, so an answer that arrives for an older one changes nothing, and nothing can be
//   sent until the conversation on screen exists: a message goes where the screen says.
// - A link is checked (`sessions.get`) before anything of it is shown: another visitor's
//   conversation is "missing", never raw server errors.
// - A message typed while a reply runs waits on the page (queued above the composer, with Remove)
//   and is sent when the reply has ended, so Stop stops the running reply only (the server's cancel/ also drops the
//   messages waiting there). Leaving the conversation sends what waits: the server answers it
//   after the running reply.
// - The connection pill and the sidebar's live dot are drawn from one page-level state: the worse
//   of the session list's channel and the open conversation's channel.
// - Replies are Markdown, rendered by markdown-it with raw HTML off; the conversation is drawn at
//   most once per animation frame, so a streaming reply is re-rendered at most once a frame.
// - A reply is drawn from its parts (the store's `message.parts`): text, tool steps and widgets in
//   the order the agent made them. A step awaiting approval has Approve / Reject buttons; they come
//   from the step's row, so a reload shows them again. Tool and widget messages that are parts of
//   a reply are not drawn on their own (`partOf`).
// - Versions: the thread is the store's snapshot, which is the conversation's active path; Edit,
//   Regenerate and the "< k/n >" arrows only call the store (`edit`, `regenerate`, `versions` +
//   `setActiveVersion`) and the path that comes back is drawn. The arrows sit on the user message
//   (a version is a version of it; a regenerated reply is the answer to its second version).
// - What is typed in an editor, a rename or a feedback comment lives in page state (`editing`,
//   `renaming`, `rating`), not in the DOM: a redraw (a snapshot, a streaming word) rebuilds the
//   node, and the control that had the keyboard focus gets it back by its `data-focus` key.
// - The sidebar's search asks the server (`sessions.search()`, titles and message text) once
//   typing pauses; each new term replaces the live query, and an answer for an older term is
//   dropped.

const config = JSON.parse(document.getElementById("demo-config").textContent);
const $ = (id) => document.getElementById(id);

const AGENTS = {
  support: { hue: 245, suggestions: ["How do refunds work?", "I'd like to book a call", "I forgot my password"] },
  sales: { hue: 160, suggestions: ["What do you sell?", "Can I use pro-features?", "Can I get a 20% discount on pro-features?"] },
  files: { hue: 25, suggestions: ["Attach a PDF, a Word file or a photo of a page, then ask about it"] },
  writer: { hue: 300, suggestions: ["A story about a lighthouse keeper", "A story about a lost umbrella"] },
  notes: { hue: 45, suggestions: ["Remember: buy milk", "What do you remember?"] },
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
let markdown = null; // a markdown-it instance, or null (then replies show as plain text)
let agents = [];
let sessions = [];
let knownSessionIds = null;
let maxUploadSize = null; // bytes, from the schema
// The open conversation: { sessionId, conversation, stop, draft: [attachment], queue: [queued],
// stopping, flushing (a promise while a queued message is being handed to the store) }.
let current = null;
let navigation = 0;
let starting = null; // the agent whose conversation is being started
let lastErrorShown = null;
let queuedCount = 0;
// The realtime state of the session list's channel and of the open conversation's channel.
const connections = { owner: "connecting", conversation: null };

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

// Small line icons (no emoji font is needed: a headless or minimal system may have none).
const ICONS = {
  up: "M7 10v11H4V10zM7 10l4-7c1.5 0 2.5 1 2.5 2.5V9h5.2a2 2 0 0 1 2 2.3l-1.3 8A2 2 0 0 1 17.4 21H7",
  down: "M17 14V3h3v11zM17 14l-4 7c-1.5 0-2.5-1-2.5-2.5V15H5.3a2 2 0 0 1-2-2.3l1.3-8A2 2 0 0 1 6.6 3H17",
  rename: "M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4",
  archive: "M3 4h18v4H3zM5 8v12h14V8M10 12h4",
  unarchive: "M3 4h18v4H3zM5 8v12h14V8M12 18v-6M9 15l3-3 3 3",
  delete: "M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3",
};

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", "icon");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
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

function formatBytes(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : Number(value.toFixed(value < 10 ? 1 : 0))} ${units[unit]}`;
}

// What the server found in a refused file's bytes, in words. The 415's message names the MIME
// type ("Files of type application/x-executable are not accepted here.").
const FILE_KINDS = [
  [/^application\/(x-executable|x-msdownload|x-dosexec|x-mach-binary|x-sharedlib|wasm|x-deb|x-rpm|x-google-chrome-extension|x-shockwave-flash|java-archive)$/, "a program"],
  [/^application\/(zip|gzip|x-tar|x-7z-compressed|x-rar-compressed|x-bzip2|x-xz|zstd|x-lz4|x-lzip|x-lzop|x-compress|x-brotli|vnd\.ms-cab-compressed|x-unix-archive)$/, "an archive"],
  [/^audio\//, "a sound recording"],
  [/^video\//, "a video"],
  [/^image\//, "an image in a format that is not read here"],
  [/^(font\/|application\/font-)/, "a font"],
  [/^application\/x-sqlite3$/, "a database"],
  [/^application\/epub\+zip$/, "an e-book"],
  [/^application\/(vnd\.ms-|vnd\.oasis\.opendocument\.(spreadsheet|presentation))/, "an office file in a format that is not read here"],
  [/^application\/octet-stream$/, "data of no known kind"],
];

function describeRefusedKind(error) {
  const type = /type ([\w.+-]+\/[\w.+-]+)/.exec(error.message ?? "")?.[1]?.toLowerCase();
  const words = type ? FILE_KINDS.find(([pattern]) => pattern.test(type))?.[1] : null;
  return words ? `This kind of file (${words}) isn’t accepted.` : "This kind of file isn’t accepted.";
}

function tooLargeText() {
  return maxUploadSize ? `Too large: files up to ${formatBytes(maxUploadSize)} are accepted.` : "Too large for this server.";
}

// Errors -> one sentence a person understands.
function describeError(error) {
  if (!error) return null;
  if (sdk.isNetworkError(error)) return { kind: "error", text: "Can’t reach the server. Is ./dev demo still running?" };
  if (sdk.isRateLimited(error)) {
    const wait = error.retryAfter ? `${Math.ceil(error.retryAfter)} s` : "a moment";
    return { kind: "warn", text: `You’re sending messages too fast. Try again in ${wait}.` };
  }
  if (sdk.isPayloadTooLarge(error)) return { kind: "error", text: tooLargeText() };
  // 415: the server looked at the bytes (not the name) and does not accept this kind of file.
  if (sdk.isUnsupportedFileType(error)) return { kind: "error", text: describeRefusedKind(error) };
  if (sdk.isRealtimeError(error)) return { kind: "warn", text: "Live updates are unavailable; replies will appear when they finish." };
  if (sdk.isApiError(error) && error.status >= 500) return { kind: "error", text: "The server failed. Try again in a moment." };
  return { kind: "error", text: error.message || "Something went wrong." };
}

// A conversation that is not the visitor's (or no conversation at all): the server says 404 for
// the session, 400 for a filter on it, 403/404 for its channel.
function isNotTheirs(error) {
  if (!error) return false;
  if (sdk.isNotFound(error) || sdk.isPermissionDenied(error) || sdk.isValidationError(error)) return true;
  return sdk.isRealtimeError(error) && [400, 403, 404].includes(error.status);
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

// Markdown: raw HTML is off (a reply's <img onerror=...> stays text), markdown-it's validateLink
// refuses javascript:, vbscript:, file: and data: links, and images are off (a reply cannot make
// the browser fetch an address of its choosing). Links open in a new tab without an opener.
function createMarkdown(MarkdownIt) {
  const md = new MarkdownIt({ html: false, linkify: true, breaks: true });
  md.disable("image");
  // Only addresses with a scheme or www. become links: "README.md" stays a file name.
  md.linkify.set({ fuzzyLink: false });
  const renderToken = (tokens, idx, options, env, self) => self.renderToken(tokens, idx, options);
  const linkOpen = md.renderer.rules.link_open ?? renderToken;
  md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
    tokens[idx].attrSet("target", "_blank");
    tokens[idx].attrSet("rel", "noopener noreferrer nofollow");
    return linkOpen(tokens, idx, options, env, self);
  };
  return md;
}

function markdownBubble(text) {
  const bubble = el("div", { class: "bubble" });
  if (!markdown) {
    bubble.textContent = text;
    return bubble;
  }
  bubble.classList.add("md");
  bubble.innerHTML = markdown.render(text);
  return bubble;
}

// One connection state for the page.
const CONNECTION_LABELS = { subscribed: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", failed: "Offline", closed: "Not live" };
const CONNECTION_RANK = { subscribed: 0, closed: 1, connecting: 2, reconnecting: 3, failed: 4 };

function pageConnection() {
  const { owner, conversation } = connections;
  if (!conversation) return owner;
  return (CONNECTION_RANK[conversation] ?? 0) > (CONNECTION_RANK[owner] ?? 0) ? conversation : owner;
}

function renderConnection() {
  const state = pageConnection();
  const label = CONNECTION_LABELS[state] ?? state;
  const pill = $("connection");
  pill.dataset.state = state;
  pill.lastElementChild.textContent = label;
  const dot = $("sessions-live");
  dot.dataset.state = state;
  dot.classList.toggle("on", state === "subscribed");
  dot.title = label;
}

// The session list's channel, followed through the client's realtime hub (the live query below
// shares its subscription). It changes when the visitor becomes known.
function followConnection() {
  let generation = 0;
  let stop = null;
  const follow = async () => {
    const mine = ++generation;
    stop?.();
    stop = null;
    let channel = null;
    try {
      channel = client.realtime.enabled ? await client.realtime.ownerChannel() : null;
    } catch {
      if (mine !== generation) return;
      connections.owner = "failed";
      renderConnection();
      return;
    }
    if (mine !== generation) return;
    if (!channel) {
      connections.owner = "closed";
      renderConnection();
      return;
    }
    stop = client.realtime.subscribe(channel, {
      event: () => undefined,
      state: (state) => {
        connections.owner = state;
        renderConnection();
      },
    });
  };
  client.realtime.onIdentityChange(() => void follow());
  void follow();
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

// The sidebar's list: each conversation with Rename (inline), Archive / Unarchive and Delete
// (confirmed inline). The list is rebuilt from every live snapshot; what is being typed lives in
// `renaming`, and the focus is given back to the same control (`data-focus`) after a rebuild.
let renaming = null; // { id, text } while a title is edited
let confirmingDelete = null; // the id of the conversation whose Delete asks to confirm
const sessionBusy = new Set(); // ids with a rename, archive or delete on its way

function sessionTitle(session) {
  return session.title || `New ${agentName(session.agent_path)} chat`;
}

function renderSessions() {
  const list = $("session-list");
  const focus = focusedControl(list);
  list.replaceChildren();
  const empty = $("no-sessions");
  empty.hidden = sessions.length > 0;
  empty.textContent = searchTerm ? `No conversation matches “${searchTerm}”.` : "No conversations yet.";
  for (const session of sessions) {
    const fresh = knownSessionIds && !knownSessionIds.has(session.id);
    const archived = session.status === "archived";
    const classes = [session.id === current?.sessionId && "active", archived && "archived", fresh && "new"];
    const li = el("li", { class: classes.filter(Boolean).join(" "), dataset: { session: session.id, status: session.status } });
    const title = sessionTitle(session);
    const busy = sessionBusy.has(session.id);
    if (renaming?.id === session.id) {
      li.append(el("form", { class: "rename", onsubmit: (event) => { event.preventDefault(); void saveRename(session); } },
        el("input", {
          type: "text", class: "rename-input", value: renaming.text, maxlength: "200", "aria-label": `New title of “${title}”`,
          dataset: { focus: `${session.id}:rename-input` }, disabled: busy,
          oninput: (event) => { renaming.text = event.target.value; },
          onkeydown: (event) => { if (event.key === "Escape") { event.preventDefault(); cancelRename(session.id); } },
        }),
        el("button", { type: "submit", class: "link", text: "Save", disabled: busy, dataset: { focus: `${session.id}:rename-save` } }),
        el("button", { type: "button", class: "link", text: "Cancel", onclick: () => cancelRename(session.id), dataset: { focus: `${session.id}:rename-cancel` } }),
      ));
    } else {
      li.append(el("button", { type: "button", class: "open", onclick: () => openConversation(session.id), dataset: { focus: `${session.id}:open` } },
        el("span", { class: "title", text: title }),
        el("span", { class: "meta", text: `${agentName(session.agent_path)} · ${archived ? "archived · " : ""}${timeAgo(session.last_message_at || session.created_at)}` }),
      ));
      if (confirmingDelete === session.id) {
        li.append(el("div", { class: "confirm-delete", role: "group", "aria-label": `Delete “${title}”?` },
          el("span", { text: "Delete this conversation?" }),
          el("button", { type: "button", class: "danger", text: "Delete", disabled: busy, onclick: () => void deleteSession(session), dataset: { focus: `${session.id}:delete-confirm` } }),
          el("button", { type: "button", class: "link", text: "Cancel", onclick: () => { confirmingDelete = null; renderSessions(); focusSession(session.id, "delete"); }, dataset: { focus: `${session.id}:delete-cancel` } }),
        ));
      } else {
        li.append(el("div", { class: "session-actions" },
          el("button", { type: "button", class: "icon-button small", "aria-label": `Rename “${title}”`, title: "Rename", disabled: busy, onclick: () => startRename(session), dataset: { focus: `${session.id}:rename` } }, icon("rename")),
          el("button", {
            type: "button", class: "icon-button small", "aria-label": `${archived ? "Unarchive" : "Archive"} “${title}”`, title: archived ? "Unarchive" : "Archive",
            disabled: busy, onclick: () => void setArchived(session, !archived), dataset: { focus: `${session.id}:archive`, action: archived ? "unarchive" : "archive" },
          }, icon(archived ? "unarchive" : "archive")),
          el("button", { type: "button", class: "icon-button small", "aria-label": `Delete “${title}”`, title: "Delete", disabled: busy, onclick: () => askDelete(session), dataset: { focus: `${session.id}:delete` } }, icon("delete")),
        ));
      }
    }
    list.append(li);
  }
  restoreFocus(list, focus);
  knownSessionIds = new Set(sessions.map((s) => s.id));
  renderArchivedNotice();
}

function focusSession(sessionId, control) {
  $("session-list").querySelector(`[data-focus="${sessionId}:${control}"]`)?.focus();
}

function startRename(session) {
  confirmingDelete = null;
  renaming = { id: session.id, text: session.title || "" };
  renderSessions();
  const input = $("session-list").querySelector(".rename-input");
  input?.focus();
  input?.select();
}

function cancelRename(sessionId) {
  renaming = null;
  renderSessions();
  focusSession(sessionId, "rename");
}

async function saveRename(session) {
  if (!renaming || renaming.id !== session.id) return;
  const title = renaming.text.trim();
  if (title === (session.title || "")) return cancelRename(session.id);
  sessionBusy.add(session.id);
  renderSessions();
  try {
    const row = await client.sessions.update(session.id, { title });
    sessions = sessions.map((s) => (s.id === row.id ? { ...s, ...row } : s));
    renaming = null;
    sessionBusy.delete(session.id);
    renderSessions();
    focusSession(session.id, "rename");
  } catch (error) {
    sessionBusy.delete(session.id);
    renderSessions();
    showBanner(error);
  }
}

async function setArchived(session, archived) {
  sessionBusy.add(session.id);
  renderSessions();
  try {
    const row = await client.sessions.update(session.id, { status: archived ? "archived" : "active" });
    sessions = sessions.map((s) => (s.id === row.id ? { ...s, ...row } : s));
  } catch (error) {
    showBanner(error);
  } finally {
    sessionBusy.delete(session.id);
    renderSessions();
    // The open conversation's Edit and Regenerate follow (shown only while it is active).
    if (current?.sessionId === session.id) scheduleRender();
    focusSession(session.id, "archive");
  }
}

function askDelete(session) {
  renaming = null;
  confirmingDelete = session.id;
  renderSessions();
  focusSession(session.id, "delete-confirm");
}

async function deleteSession(session) {
  sessionBusy.add(session.id);
  renderSessions();
  try {
    await client.sessions.delete(session.id);
    confirmingDelete = null;
    sessions = sessions.filter((s) => s.id !== session.id);
    if (current?.sessionId === session.id) showWelcome();
  } catch (error) {
    showBanner(error);
  } finally {
    sessionBusy.delete(session.id);
    renderSessions();
  }
}

// The open conversation, archived: nothing can be sent to it until it is unarchived.
// Whether the open conversation is archived (the live list says first, else the store's row).
function isArchived() {
  const session = current ? sessions.find((s) => s.id === current.sessionId) : null;
  return (session?.status ?? current?.conversation.getState().session?.status) === "archived";
}

function renderArchivedNotice() {
  const session = current ? sessions.find((s) => s.id === current.sessionId) : null;
  const archived = isArchived();
  $("archived").hidden = !archived || $("app").dataset.screen !== "conversation";
  $("input").disabled = archived;
  if (archived && session) $("unarchive").onclick = () => void setArchived(session, false);
}

// The list follows the search box: the server's `search` filter (title and message text), asked
// once typing pauses. Every new search replaces the live query.
let searchTerm = "";
let stopSessions = null;
let searchTimer = 0;

function followSessions() {
  stopSessions?.();
  const term = searchTerm;
  let query = client.sessions.orderBy("-updated_at").limit(50);
  if (term) query = query.search(term);
  stopSessions = query.live(
    (snapshot) => {
      if (term !== searchTerm) return;
      const open = current?.sessionId;
      const left = open && !term && sessions.some((s) => s.id === open) && !snapshot.rows.some((s) => s.id === open);
      sessions = snapshot.rows;
      // The open conversation left the list: deleted elsewhere (another tab), or only pushed out
      // of its first 50. The server tells which.
      if (left) void checkStillThere(open);
      // What the list shows now (the tests wait for it).
      $("session-list").dataset.search = term;
      renderSessions();
    },
    { onError: (error) => showBanner(error) },
  );
}

async function checkStillThere(sessionId) {
  try {
    await client.sessions.get(sessionId);
  } catch (error) {
    if (current?.sessionId === sessionId && isNotTheirs(error)) showMissing();
  }
}

function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    const term = $("session-search").value.trim();
    if (term === searchTerm) return;
    searchTerm = term;
    $("session-list").dataset.search = "…";
    followSessions();
  }, 300);
}

// Keyboard focus across a rebuild: the control that had it (its `data-focus`), with the caret of
// a text field.
function focusedControl(container) {
  const active = document.activeElement;
  if (!active || !container.contains(active) || !active.dataset?.focus) return null;
  const text = "selectionStart" in active && typeof active.selectionStart === "number";
  return { key: active.dataset.focus, start: text ? active.selectionStart : null, end: text ? active.selectionEnd : null };
}

function restoreFocus(container, focus) {
  if (!focus || (document.activeElement && container.contains(document.activeElement))) return;
  const node = container.querySelector(`[data-focus="${CSS.escape(focus.key)}"]`);
  if (!node) return;
  node.focus();
  if (focus.start !== null && typeof node.setSelectionRange === "function") node.setSelectionRange(focus.start, focus.end);
}

// Screens.
function showScreen(screen) {
  $("app").dataset.screen = screen;
  $("welcome").hidden = screen !== "welcome";
  $("missing").hidden = screen !== "missing";
  $("thread").hidden = !["starting", "opening", "conversation"].includes(screen);
  $("composer").hidden = !["starting", "conversation"].includes(screen);
  const ready = screen === "conversation";
  $("composer").dataset.ready = String(ready);
  $("send").disabled = !ready;
  $("input").placeholder = ready ? "Message the agent…" : "Starting the conversation…";
  renderArchivedNotice();
  if (!ready) {
    $("stop").hidden = true;
    $("suggestions").hidden = true;
    $("attachments").replaceChildren();
    $("queue").replaceChildren();
  }
}

function renderTitle(title, subtitle = "") {
  $("conversation-agent").textContent = title;
  $("conversation-subtitle").textContent = subtitle;
}

function setHash(sessionId) {
  const target = sessionId ? `#/c/${sessionId}` : "";
  if (location.hash !== target) history.replaceState(null, "", `${location.pathname}${location.search}${target}`);
}

/** Close the open conversation; what waits in its queue is sent (the server answers it later). */
function leaveConversation() {
  const left = current;
  if (!left) return;
  current = null;
  left.stop();
  let chain = left.flushing ?? Promise.resolve();
  for (const item of [...left.queue]) chain = chain.then(() => deliver(left, item));
  left.conversation.close();
  connections.conversation = null;
  rendered.clear();
  editing.clear();
  rating.clear();
  switching.clear();
  queuedRendered.clear();
  $("messages").replaceChildren();
  $("queue").replaceChildren();
  renderConnection();
}

function showWelcome() {
  navigation += 1;
  starting = null;
  leaveConversation();
  hideBanner();
  setHash(null);
  showScreen("welcome");
  renderTitle("Pick an agent");
  renderSessions();
}

function showMissing() {
  navigation += 1;
  starting = null;
  leaveConversation();
  hideBanner();
  showScreen("missing");
  renderTitle("Conversation not found");
  renderSessions();
}

// The plan selector goes to agents that declare `tier` among their start parameters (schema/'s
// `start_params`); the server refuses any parameter an agent does not declare.
function startParams(path) {
  const declared = agents.find((a) => a.path === path)?.start_params?.properties ?? {};
  return "tier" in declared ? { tier: $("plan").value } : {};
}

async function startConversation(path) {
  closeMenu();
  if (starting === path) return; // a second click while it starts
  const nav = ++navigation;
  starting = path;
  leaveConversation();
  hideBanner();
  setHash(null);
  showScreen("starting");
  renderTitle(agentName(path), "Starting…");
  connections.conversation = "connecting";
  renderConnection();
  renderSessions();
  try {
    const conversation = await client.startConversation(path, startParams(path));
    if (nav !== navigation) {
      conversation.close(); // the visitor went elsewhere meanwhile
      return;
    }
    await openConversation(conversation.sessionId, conversation);
    $("input").focus();
  } catch (error) {
    if (nav !== navigation) return;
    showWelcome();
    showBanner(error);
  }
}

async function openConversation(sessionId, store) {
  closeMenu();
  if (current?.sessionId === sessionId) return;
  const nav = ++navigation;
  starting = null;
  leaveConversation();
  hideBanner();
  setHash(sessionId);
  if (!store && !sessions.some((s) => s.id === sessionId)) {
    // A link: show nothing of it before the server says it is the visitor's.
    showScreen("opening");
    renderTitle("Conversation", "Loading…");
    try {
      await client.sessions.get(sessionId);
    } catch (error) {
      if (nav !== navigation) return;
      if (isNotTheirs(error)) {
        showMissing();
      } else {
        showWelcome();
        setHash(sessionId);
        showBanner(error, { label: "Try again", run: () => { hideBanner(); openConversation(sessionId); } });
      }
      return;
    }
    if (nav !== navigation) return;
  }
  const conversation = store ?? client.conversation(sessionId);
  const entry = { sessionId, conversation, stop: () => undefined, draft: [], queue: [], stopping: false, flushing: null };
  current = entry;
  lastErrorShown = null;
  showScreen("conversation");
  $("suggestions").replaceChildren();
  delete $("suggestions").dataset.for;
  entry.stop = conversation.subscribe((state) => onConversationState(entry, state));
  renderSessions();
}

function onConversationState(entry, state) {
  if (current !== entry) return;
  connections.conversation = state.connection;
  renderConnection();
  if (!state.loaded && isNotTheirs(state.error)) {
    showMissing();
    return;
  }
  flushQueue(entry, state);
  scheduleRender();
}

// Drawing the conversation, at most once per animation frame (a hidden page has no frames: the
// timer draws it there, as often as the browser lets timers run).
let renderFrame = 0;
let renderTimer = 0;

function scheduleRender() {
  if (renderFrame) return;
  const run = () => {
    cancelAnimationFrame(renderFrame);
    clearTimeout(renderTimer);
    renderFrame = 0;
    if (current) renderConversation(current.conversation.getState());
  };
  renderFrame = requestAnimationFrame(run);
  renderTimer = setTimeout(run, 100);
}

const rendered = new Map(); // message id -> { node, signature }
const queuedRendered = new Map(); // queued item id -> { node, signature }
let typingNode = null;

function renderConversation(state) {
  const entry = current;
  if (!entry || state.sessionId !== entry.sessionId) return;
  const agentPath = state.session?.agent_path ?? sessions.find((s) => s.id === state.sessionId)?.agent_path;
  const phaseText = {
    loading: "Loading…", idle: "", sending: "Sending…", waiting: "Thinking…", streaming: "Replying…", awaiting_approval: "Waiting for your approval",
  }[state.phase];
  renderTitle(agentPath ? agentName(agentPath) : "Conversation", [state.session?.title, phaseText].filter(Boolean).join(" · "));

  const thread = $("thread");
  const nearBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
  const list = $("messages");
  const wanted = [];
  const seen = new Set();
  const focus = focusedControl(list);
  const archived = isArchived();
  for (const message of state.messages) {
    // Tool steps and widgets of a reply are drawn inside it.
    if (message.partOf) continue;
    seen.add(message.id);
    const thumbs = rating.get(message.id);
    // A rating on its way shows until the row says the same.
    if (thumbs && !thumbs.sending && thumbs.pending !== undefined && (message.feedback || null) === thumbs.pending) thumbs.pending = undefined;
    const signature = JSON.stringify([
      message.content, message.processing_status, message.local, message.sendError?.code, message.widget?.display_data,
      message.widget?.data, message.attachments.map((f) => [f.id, f.extraction_status]), message.files.map((id) => state.files[id]?.extraction_status),
      state.busy, message.step && stepSignature(message.step), message.parts.map(partSignature), actionSignature(message),
      archived,
    ]);
    let cached = rendered.get(message.id);
    if (!cached || cached.signature !== signature) {
      const node = renderMessage(message, state, archived);
      if (cached) node.classList.add("settled");
      cached = { node, signature };
      rendered.set(message.id, cached);
    }
    wanted.push(cached.node);
  }
  for (const id of rendered.keys()) if (!seen.has(id)) rendered.delete(id);

  const streaming = state.messages.find((m) => m.streaming);
  // The dots show from the moment a message is sent until the reply's first words arrive.
  const sent = state.messages.some((m) => m.local && !m.sendError && m.message_type === "user");
  const typing = sent || state.phase === "waiting" || (streaming && !streaming.content);
  if (typing) {
    if (!typingNode || !list.contains(typingNode)) {
      typingNode = el("li", { class: "message agent typing", "aria-label": "The agent is typing" },
        avatar(agentPath), el("div", { class: "bubble" }, el("i"), el("i"), el("i")));
    }
    wanted.push(typingNode);
  }

  placeInOrder(list, wanted);
  restoreFocus(list, focus);
  for (const id of editing.keys()) if (!seen.has(id)) editing.delete(id);

  renderSuggestions(state, agentPath);
  renderArchivedNotice();
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

/** Make `nodes` the children of `list` in this order, moving only those out of place. */
function placeInOrder(list, nodes) {
  let previous = null;
  for (const node of nodes) {
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (expected !== node) list.insertBefore(node, expected);
    previous = node;
  }
  let extra = previous ? previous.nextSibling : list.firstChild;
  while (extra) {
    const next = extra.nextSibling;
    extra.remove();
    extra = next;
  }
}

function renderMessage(message, state, archived) {
  const type = message.message_type;
  const classes = ["message", type, message.processing_status, message.streaming && "streaming", message.local && "local", message.sendError && "failed"];
  const li = el("li", { class: classes.filter(Boolean).join(" "), dataset: { id: message.id, type, status: message.processing_status } });
  const agentPath = state.session?.agent_path;
  if (type === "user") {
    const editor = editing.get(message.id);
    const stack = el("div", { class: "stack" }, editor ? renderEditor(message, editor) : el("div", { class: "bubble", text: message.content }));
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
    // The actions sit under the message, outside its stack (the stack is what the message shows).
    li.append(el("div", { class: "body" }, stack, !message.sendError && !message.local && !editor ? userActions(message, state, archived) : null));
  } else if (type === "widget") {
    li.append(avatar(agentPath), renderWidget(message, state));
  } else if (type === "tool") {
    // A step of a reply that has no text yet.
    li.append(avatar(agentPath), el("div", { class: "stack" }, renderStep(message.step)));
  } else if (type === "system") {
    li.append(el("div", { class: "bubble", text: message.content }));
  } else {
    const pieces = message.parts.map((part) =>
      part.type === "text" ? markdownBubble(part.text) : part.type === "tool" ? renderStep(part.step) : renderWidget(part.message, state));
    // Nothing yet (a reply that starts streaming): an empty bubble with the caret.
    if (!message.parts.some((part) => part.type === "text") && (message.streaming || !pieces.length)) pieces.push(markdownBubble(message.content));
    const stack = el("div", { class: "stack" }, pieces);
    if (message.processing_status === "cancelled") stack.append(el("div", { class: "status stopped", text: "Stopped" }));
    li.append(avatar(agentPath), el("div", { class: "body" }, stack, FINISHED.has(message.processing_status) ? replyActions(message, archived) : null));
  }
  return li;
}

// What a person can do with a message: on their own, Edit and the version arrows; on a finished
// reply, Regenerate, Copy and the thumbs (a thumb down opens an optional comment). Each control
// has a `data-focus` key, so the keyboard focus survives the message being drawn again. No button
// shows that the server would refuse every time: Edit and Regenerate only while the conversation
// is active (an archived one is answered 409 session_not_active), the arrows are off while a reply
// is being written (switching then is answered 409 turn_in_progress).
const FINISHED = new Set(["completed", "failed", "cancelled"]);
const editing = new Map(); // user message id -> { text, saving }
const copied = new Map(); // reply id -> the timer that hides "Copied"
const rating = new Map(); // reply id -> { pending: the rating on its way (undefined: none), commentOpen, comment, sending }
const switching = new Set(); // user message ids whose version is being switched
const regenerating = new Set(); // reply ids whose Regenerate is on its way (a second click makes no second version)

function userActions(message, state, archived) {
  const count = message.versionCount;
  const index = message.versionIndex;
  const busy = switching.has(message.id) || state.busy;
  return el("div", { class: "actions user-actions" },
    archived
      ? null
      : el("button", { type: "button", class: "action", text: "Edit", "aria-label": "Edit this message", dataset: { focus: `${message.id}:edit`, action: "edit" }, onclick: () => startEdit(message) }),
    count > 1
      ? el("span", { class: "versions", role: "group", "aria-label": `Version ${index} of ${count}`, title: state.busy ? "Switch versions once the reply ends" : undefined },
        el("button", { type: "button", class: "action", text: "<", "aria-label": "Previous version", disabled: busy || index <= 1, dataset: { focus: `${message.id}:previous`, action: "previous-version" }, onclick: () => void switchVersion(message, -1) }),
        el("span", { class: "version-label", text: `${index}/${count}` }),
        el("button", { type: "button", class: "action", text: ">", "aria-label": "Next version", disabled: busy || index >= count, dataset: { focus: `${message.id}:next`, action: "next-version" }, onclick: () => void switchVersion(message, 1) }),
      )
      : null,
  );
}

function renderEditor(message, editor) {
  const save = () => void saveEdit(message);
  const cancel = () => {
    editing.delete(message.id);
    scheduleRender();
    focusSoon(`${message.id}:edit`);
  };
  return el("form", { class: "editor", onsubmit: (event) => { event.preventDefault(); save(); } },
    el("textarea", {
      rows: String(Math.min(8, Math.max(2, editor.text.split("\n").length))), "aria-label": "Edit your message", disabled: editor.saving,
      dataset: { focus: `${message.id}:editor` },
      oninput: (event) => { editor.text = event.target.value; },
      onkeydown: (event) => {
        if (event.key === "Escape") { event.preventDefault(); cancel(); }
        else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); save(); }
      },
    }, editor.text),
    el("div", { class: "editor-buttons" },
      el("button", { type: "button", class: "secondary", text: "Cancel", disabled: editor.saving, dataset: { focus: `${message.id}:edit-cancel` }, onclick: cancel }),
      el("button", { type: "submit", class: "primary", text: editor.saving ? "Saving…" : "Save", disabled: editor.saving || !editor.text.trim(), dataset: { focus: `${message.id}:edit-save` } }),
    ),
  );
}

function replyActions(message, archived) {
  const state = rating.get(message.id);
  const given = state?.pending !== undefined ? state.pending : message.feedback || null;
  const thumb = (value, label) =>
    el("button", {
      type: "button", class: `action thumb${given === value ? " on" : ""}`, "aria-label": label, "aria-pressed": String(given === value),
      title: given === value ? `${label} (click again to withdraw)` : label, disabled: state?.sending,
      dataset: { focus: `${message.id}:${value}`, action: `thumb-${value}` }, onclick: () => void rate(message, value),
    }, icon(value));
  const row = el("div", { class: "actions reply-actions" },
    message.reply_to && !archived
      ? el("button", { type: "button", class: "action", text: "Regenerate", "aria-label": "Regenerate this reply", disabled: regenerating.has(message.id), dataset: { focus: `${message.id}:regenerate`, action: "regenerate" }, onclick: () => void regenerate(message) })
      : null,
    el("button", { type: "button", class: "action", text: copied.has(message.id) ? "Copied" : "Copy", "aria-label": "Copy this reply", dataset: { focus: `${message.id}:copy`, action: "copy" }, onclick: () => void copyReply(message) }),
    thumb("up", "Good reply"),
    thumb("down", "Bad reply"),
    el("span", { class: "sr-only", role: "status", text: copied.has(message.id) ? "Copied to the clipboard" : "" }),
  );
  if (!state?.commentOpen) return row;
  const comment = el("form", { class: "feedback-comment", onsubmit: (event) => { event.preventDefault(); void sendComment(message); } },
    el("input", {
      type: "text", maxlength: "2000", placeholder: "What was wrong? (optional)", value: state.comment, "aria-label": "What was wrong with this reply (optional)",
      disabled: state.sending, dataset: { focus: `${message.id}:comment` },
      oninput: (event) => { state.comment = event.target.value; },
      onkeydown: (event) => { if (event.key === "Escape") { event.preventDefault(); closeComment(message.id); } },
    }),
    el("button", { type: "submit", class: "primary", text: "Send", disabled: state.sending, dataset: { focus: `${message.id}:comment-send` } }),
    el("button", { type: "button", class: "secondary", text: "Skip", disabled: state.sending, dataset: { focus: `${message.id}:comment-skip` }, onclick: () => closeComment(message.id) }),
  );
  return el("div", { class: "reply-tools" }, row, comment);
}

function actionSignature(message) {
  const r = rating.get(message.id);
  const e = editing.get(message.id);
  return [
    message.versionIndex, message.versionCount, message.feedback, message.reply_to, switching.has(message.id), copied.has(message.id),
    regenerating.has(message.id),
    e ? [e.saving] : null, r ? [r.pending, r.commentOpen, r.sending] : null,
  ];
}

/** Focus the control with this `data-focus` key once the next drawing is done. */
function focusSoon(key) {
  requestAnimationFrame(() => setTimeout(() => $("messages").querySelector(`[data-focus="${CSS.escape(key)}"]`)?.focus(), 0));
}

// The SDK's store methods (docs/sdk.md, "Versions and feedback"). Each answers the server's row or
// throws its typed error, shown in the banner like the page's other errors (e.g. 409
// turn_in_progress while a turn runs and the agent refuses a second one).
async function regenerate(message) {
  const entry = current;
  if (regenerating.has(message.id)) return;
  regenerating.add(message.id);
  scheduleRender();
  try {
    await entry.conversation.regenerate(message.id);
  } catch (error) {
    showBanner(error);
  } finally {
    regenerating.delete(message.id);
    if (current === entry) scheduleRender();
  }
}

function startEdit(message) {
  editing.set(message.id, { text: message.content, saving: false });
  scheduleRender();
  focusSoon(`${message.id}:editor`);
}

async function saveEdit(message) {
  const editor = editing.get(message.id);
  const entry = current;
  if (!editor || editor.saving || !entry) return;
  const text = editor.text.trim();
  if (!text) return;
  if (text === message.content.trim()) {
    editing.delete(message.id);
    scheduleRender();
    return;
  }
  editor.saving = true;
  scheduleRender();
  try {
    await entry.conversation.edit(message.id, text);
    editing.delete(message.id);
  } catch (error) {
    editor.saving = false;
    showBanner(error);
  }
  if (current === entry) scheduleRender();
}

async function switchVersion(message, step) {
  const entry = current;
  switching.add(message.id);
  scheduleRender();
  try {
    const versions = await entry.conversation.versions(message.id);
    const target = versions.find((v) => v.version_index === message.versionIndex + step);
    if (target) await entry.conversation.setActiveVersion(target.id);
  } catch (error) {
    showBanner(error);
  } finally {
    switching.delete(message.id);
    if (current === entry) scheduleRender();
  }
}

async function copyReply(message) {
  const text = message.content;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (or not a secure context): the older way.
    const area = el("textarea", { class: "sr-only", "aria-hidden": "true" }, text);
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    if (!done) {
      showBanner(new Error("The browser did not let the page copy the reply."));
      return;
    }
  }
  clearTimeout(copied.get(message.id));
  copied.set(message.id, setTimeout(() => {
    copied.delete(message.id);
    scheduleRender();
  }, 2000));
  scheduleRender();
}

// A thumb: the same one again withdraws the rating; a thumb down is stored at once and opens a
// comment box (Send stores the comment with it, Skip closes it).
async function rate(message, value) {
  const entry = current;
  const state = rating.get(message.id) ?? { pending: undefined, commentOpen: false, comment: "", sending: false };
  const given = state.pending !== undefined ? state.pending : message.feedback || null;
  const next = given === value ? null : value;
  rating.set(message.id, { ...state, pending: next, commentOpen: next === "down", comment: next === "down" ? state.comment : "", sending: true });
  scheduleRender();
  try {
    await entry.conversation.feedback(message.id, next);
    rating.get(message.id).sending = false;
    if (next === "down") focusSoon(`${message.id}:comment`);
  } catch (error) {
    rating.delete(message.id);
    showBanner(error);
  }
  if (current === entry) scheduleRender();
}

async function sendComment(message) {
  const entry = current;
  const state = rating.get(message.id);
  if (!state) return;
  state.sending = true;
  scheduleRender();
  try {
    await entry.conversation.feedback(message.id, "down", state.comment.trim());
    state.commentOpen = false;
    focusSoon(`${message.id}:down`);
  } catch (error) {
    showBanner(error);
  } finally {
    state.sending = false;
    if (current === entry) scheduleRender();
  }
}

function closeComment(messageId) {
  const state = rating.get(messageId);
  if (state) state.commentOpen = false;
  scheduleRender();
  focusSoon(`${messageId}:down`);
}

function stepSignature(step) {
  return [step.id, step.status, step.arguments, step.result, step.error, step.approval?.status, step.answering];
}

function partSignature(part) {
  if (part.type === "text") return part.text;
  if (part.type === "tool") return stepSignature(part.step);
  return [part.message.id, part.widget?.data, part.widget?.display_data];
}

// A tool step: the call (name and arguments as the model sent them), its status, then its result
// or error; Approve / Reject (with an optional reason) while it waits for the user.
const STEP_STATUS = {
  pending: "approved, runs next",
  processing: "running…",
  awaiting_approval: "needs your approval",
  completed: "done",
  failed: "failed",
  cancelled: "cancelled",
};
const stepReasons = new Map(); // step id -> the reason typed (kept across redraws)

function renderStep(step) {
  const args = Object.entries(step.arguments ?? {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", ");
  const status = step.id === null ? "preparing…" : step.approval?.status === "rejected" ? "rejected" : step.approval?.status === "expired" ? "expired" : STEP_STATUS[step.status] ?? step.status;
  const running = step.id === null || step.status === "processing";
  const card = el("div", { class: "widget-card tool-step", dataset: { step: step.id ?? "", tool: step.name, status: step.status, call: step.call_id } },
    el("div", { class: "tool-call" },
      el("span", { class: "tool-label", text: "tool" }),
      el("code", { text: `${step.name}(${args})` }),
      el("span", { class: `step-status ${step.status}` }, running ? el("span", { class: "spinner" }) : null, status,
        step.approval?.status === "approved" ? " · approved" : "",
        step.duration_ms !== null && step.status === "completed" ? ` · ${step.duration_ms} ms` : ""),
    ),
  );
  if (step.status === "completed") card.append(el("div", { class: "step-result", text: `→ ${describeResult(step.result)}` }));
  else if (step.error) card.append(el("div", { class: "step-result bad", text: step.error.message }));
  if (step.awaitingApproval) {
    const reason = el("input", {
      type: "text", class: "reason", placeholder: "Reason (optional, sent with Reject)", maxlength: "2000", value: stepReasons.get(step.id) ?? "",
      "aria-label": `Why you reject ${step.name}`, disabled: step.answering,
      oninput: (event) => stepReasons.set(step.id, event.target.value),
    });
    card.append(el("div", { class: "approval" },
      el("button", { type: "button", class: "approve", text: "Approve", disabled: step.answering, onclick: () => answerStep(step, true) }),
      el("button", { type: "button", class: "reject", text: "Reject", disabled: step.answering, onclick: () => answerStep(step, false) }),
      reason,
    ));
  }
  return card;
}

function describeResult(result) {
  if (typeof result === "string") return result;
  if (Array.isArray(result)) return `${result.length} result${result.length === 1 ? "" : "s"}`;
  const text = JSON.stringify(result);
  return text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

async function answerStep(step, approved) {
  const conversation = current?.conversation;
  if (!conversation) return;
  try {
    if (approved) await conversation.approve(step.id);
    else await conversation.reject(step.id, stepReasons.get(step.id)?.trim() || undefined);
    stepReasons.delete(step.id);
  } catch {
    // Shown by the store (state.error: answered elsewhere, expired...); the step shows its row.
  }
}

// Messages waiting for the running reply to end, above the composer (the thread moves while a
// reply streams; this place does not). A node is rebuilt only when its item changes.
function renderQueue(entry) {
  const ids = new Set();
  const nodes = [];
  for (const item of entry.queue) {
    ids.add(item.id);
    const waitingForFiles = item.draft.some((d) => !d.settled);
    const signature = JSON.stringify([item.text, waitingForFiles, item.draft.map((d) => d.filename)]);
    let cached = queuedRendered.get(item.id);
    if (!cached || cached.signature !== signature) {
      cached = { node: renderQueued(item, waitingForFiles), signature };
      queuedRendered.set(item.id, cached);
    }
    nodes.push(cached.node);
  }
  for (const id of queuedRendered.keys()) if (!ids.has(id)) queuedRendered.delete(id);
  placeInOrder($("queue"), nodes);
}

function renderQueued(item, waitingForFiles) {
  const names = item.draft.map((d) => d.filename);
  return el("li", { class: "queued", dataset: { queued: item.id } },
    el("span", { class: "text", text: item.text.trim() || "Please read the attached file." }),
    names.length ? el("span", { class: "files muted", text: names.join(", ") }) : null,
    el("span", { class: "when muted", text: waitingForFiles ? "waits for its files" : "sent when the reply ends" }),
    el("button", { class: "link", type: "button", text: "Remove", "aria-label": `Remove the queued message “${item.text.trim().slice(0, 40)}”`, onclick: () => removeQueued(item) }),
  );
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
  const show = state.loaded && state.messages.length === 0 && current.queue.length === 0;
  box.hidden = !show;
  if (!show) return;
  const wanted = look(agentPath).suggestions.join("|");
  if (box.dataset.for === wanted) return;
  box.dataset.for = wanted;
  box.replaceChildren(...look(agentPath).suggestions.map((text) =>
    el("button", { type: "button", text, onclick: () => (text.startsWith("Attach") ? $("file-input").click() : submit(text)) })));
}

function renderComposer(state) {
  $("stop").hidden = !state.busy || state.phase === "sending";
  renderQueue(current);
  const tray = $("attachments");
  tray.replaceChildren();
  // The files of the next message, then those of queued messages still uploading.
  for (const item of [...current.draft, ...current.queue.flatMap((q) => q.draft)]) {
    if (item.refused) {
      tray.append(attachmentCard(item, "failed", item.refused.text, { status: "failed", code: item.refused.code }));
      continue;
    }
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
    tray.append(attachmentCard(item, status, label, dataset, percent));
  }
}

function attachmentCard(item, status, label, dataset, percent = 0) {
  return el("li", { class: "attachment", dataset },
    el("header", {},
      el("span", { class: "name", text: item.filename }),
      el("button", { type: "button", class: "icon-button", "aria-label": `Remove ${item.filename}`, onclick: () => removeDraft(item) }, "✕")),
    el("span", { class: "state" }, status === "pending" || status === "processing" || status === "uploading" ? el("span", { class: "spinner" }) : null, label),
    status === "uploading" ? el("div", { class: "progress" }, el("i", { style: `width:${percent}%` })) : null,
  );
}

function removeDraft(item) {
  if (!current) return;
  current.draft = current.draft.filter((d) => d !== item);
  for (const queued of current.queue) queued.draft = queued.draft.filter((d) => d !== item);
  scheduleRender();
}

function attach(files) {
  const entry = current;
  if (!entry) return;
  for (const file of files) {
    const item = { key: null, fileId: null, upload: null, promise: null, settled: false, refused: null, filename: file.name || "file" };
    if (maxUploadSize && file.size > maxUploadSize) {
      // Refused here, before a byte is sent: the server would answer 413 anyway.
      item.refused = { code: "file_too_large", text: tooLargeText() };
      item.settled = true;
      item.promise = Promise.resolve(null);
    } else {
      item.promise = entry.conversation
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
        .catch(() => null) // shown by the store (the upload's error) and in the tray
        .finally(() => {
          item.settled = true;
          if (current === entry) scheduleRender();
        });
    }
    entry.draft.push(item);
  }
  scheduleRender();
}

// Sending. A message goes to the conversation on screen, and only once it exists; while a reply
// runs it waits in the page's queue.
function submit(text, { fromInput = false } = {}) {
  const entry = current;
  if (!entry || $("composer").dataset.ready !== "true") return;
  if (!text.trim() && !entry.draft.length) return;
  const item = { id: `queued-${++queuedCount}`, text, draft: entry.draft };
  entry.draft = [];
  entry.queue.push(item);
  if (fromInput) {
    $("input").value = "";
    autoGrow();
  }
  flushQueue(entry, entry.conversation.getState());
  scheduleRender();
}

function flushQueue(entry, state) {
  if (!entry.queue.length || entry.flushing || entry.stopping || state.busy || !state.loaded) return;
  const item = entry.queue[0];
  entry.flushing = deliver(entry, item).finally(() => {
    entry.flushing = null;
    if (current === entry) {
      flushQueue(entry, entry.conversation.getState());
      scheduleRender();
    }
  });
}

async function deliver(entry, item) {
  const conversation = entry.conversation;
  await Promise.all(item.draft.map((d) => d.promise));
  const index = entry.queue.indexOf(item);
  if (index < 0) return; // removed meanwhile
  entry.queue.splice(index, 1);
  const files = item.draft.filter((d) => d.fileId).map((d) => d.fileId);
  const text = item.text.trim();
  if (!files.length && !text) return;
  const first = conversation.getState().messages.length === 0;
  try {
    const pending = conversation.send(text || "Please read the attached file.", { files });
    if (current === entry) scheduleRender();
    await pending;
    if (current === entry) conversation.clearUploads();
    if (first) client.sessions.update(entry.sessionId, { title: text.slice(0, 60) || "Files" }).catch(() => undefined);
  } catch {
    // Shown by the store: the message stays with its error (Retry / Discard).
  }
}

function removeQueued(item) {
  if (!current) return;
  current.queue = current.queue.filter((q) => q !== item);
  scheduleRender();
}

async function stopReply() {
  const entry = current;
  if (!entry) return;
  // Nothing queued is sent until the server has taken the stop (its cancel/ also drops the
  // messages waiting there).
  entry.stopping = true;
  try {
    await entry.conversation.cancel();
  } catch (error) {
    showBanner(error);
  } finally {
    entry.stopping = false;
    if (current === entry) flushQueue(entry, entry.conversation.getState());
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
    submit($("input").value, { fromInput: true });
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit($("input").value, { fromInput: true });
    }
  });
  $("input").addEventListener("input", autoGrow);
  $("file-input").addEventListener("change", (event) => {
    attach([...event.target.files]);
    event.target.value = "";
  });
  $("stop").addEventListener("click", () => void stopReply());
  $("session-search").addEventListener("input", onSearchInput);
  $("banner-close").addEventListener("click", hideBanner);
  $("missing-new").addEventListener("click", () => {
    showWelcome();
    $("agent-cards").querySelector("button")?.focus();
  });
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
  const match = location.hash.match(/^#\/c\/(.*)$/);
  if (!match) return;
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(match[1])) openConversation(match[1].toLowerCase());
  else showMissing();
}

async function boot() {
  const markdownUrl = $("app").dataset.markdown;
  let MarkdownIt = null;
  try {
    [sdk, MarkdownIt] = await Promise.all([
      import(config.sdk),
      // Without it (not built) replies show as plain text.
      markdownUrl ? import(markdownUrl).then((module) => module.default, () => null) : null,
    ]);
  } catch (error) {
    showFatal(new Error(`Could not load the SDK bundle (${config.sdk}): ${error.message}`));
    return;
  }
  if (MarkdownIt) markdown = createMarkdown(MarkdownIt);
  client = sdk.createClient({ baseUrl: config.apiBase });
  window.demo = { client, get conversation() { return current?.conversation ?? null; } };
  wire();
  renderConnection();
  let schema;
  try {
    schema = await client.schema();
  } catch (error) {
    showFatal(error);
    return;
  }
  agents = schema.agents ?? [];
  maxUploadSize = schema.uploads?.max_size ?? null;
  $("app").dataset.phase = "ready";
  renderAgents();
  showScreen("welcome");
  followConnection();
  followSessions();
  route();
}

boot();
