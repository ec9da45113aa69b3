// The real `ai` package (its DefaultChatTransport and readUIMessageStream) consuming the app's
// UI message stream endpoint on a real demo server. Run by tests/test_ai_sdk_node.py, which starts
// the server (runserver and uvicorn) and passes its API root in AI_SDK_TEST_API, e.g.
// http://127.0.0.1:41234/api/conversations/. The agent is tests/ai_sdk_agents.py ("ai-sdk-test").
//
// The client is stateless, as a Node or mobile client is: the anonymous id that start/ returns
// travels in the X-Conversation-Anonymous-Id header (no cookie, hence no CSRF token to send).
import assert from "node:assert/strict";
import { test } from "node:test";
import { Chat } from "@ai-sdk/react";
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithApprovalResponses, readUIMessageStream } from "ai";

const API = process.env.AI_SDK_TEST_API;
if (!API) throw new Error("AI_SDK_TEST_API is not set: run tests/test_ai_sdk_node.py");
const TIMEOUT = 30_000;

async function startConversation(agent = "ai-sdk-test") {
  const response = await fetch(`${API}start/`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ agent_path: agent }),
  });
  assert.equal(response.status, 201, await response.clone().text());
  const { session_id, anonymous_id } = await response.json();
  const headers = { "X-Conversation-Anonymous-Id": anonymous_id };
  const transport = new DefaultChatTransport({ api: `${API}ai-sdk/chat`, headers });
  return { id: session_id, headers, transport };
}

let counter = 0;
function userMessage(text) {
  counter += 1;
  return { id: `u${counter}-${Date.now()}`, role: "user", parts: [{ type: "text", text }] };
}

/** The transport's chunk stream for a new message, with the chunks it carried. */
async function send(chat, text, abortSignal = new AbortController().signal) {
  return chat.transport.sendMessages({
    chatId: chat.id,
    messages: [userMessage(text)],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal,
  });
}

/** Tee a chunk stream: the chunks (as seen) and the UI message the package builds from them. */
async function consume(stream, { onChunk = () => {} } = {}) {
  const chunks = [];
  const errors = [];
  const [mine, theirs] = stream.tee();
  const reading = (async () => {
    for await (const chunk of mine) {
      chunks.push(chunk);
      onChunk(chunk, chunks);
    }
  })();
  let message;
  for await (const snapshot of readUIMessageStream({ stream: theirs, onError: (e) => errors.push(e) })) {
    message = snapshot;
  }
  await reading;
  return { chunks, message, errors };
}

function text(message) {
  return message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
}

async function messages(chat) {
  const response = await fetch(`${API}models/message/query/`, {
    method: "POST",
    headers: { "content-type": "application/json", ...chat.headers },
    body: JSON.stringify({ filter: { session: chat.id }, order_by: ["timestamp"] }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  return body.data.map((pk) => body.included.message[String(pk)]);
}

async function waitFor(check, what) {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const words = (n) => Array.from({ length: n }, (_, k) => `w${k} `).join("");

test("a streamed reply becomes one assistant message with the agent's text", { timeout: TIMEOUT }, async () => {
  const chat = await startConversation();
  const { chunks, message, errors } = await consume(await send(chat, "hello from node"));
  assert.deepEqual(errors, []);
  assert.equal(chunks[0].type, "start");
  assert.equal(chunks.at(-1).type, "finish");
  assert.equal(message.role, "assistant");
  assert.equal(text(message), "You said: hello from node ");
  const rows = await messages(chat);
  const agent = rows.find((r) => r.message_type === "agent");
  assert.equal(message.id, agent.id);
  assert.equal(agent.content, text(message));
});

test("widgets and tool steps are parts of the message, in order", { timeout: TIMEOUT }, async () => {
  const chat = await startConversation();
  const widget = await consume(await send(chat, "widget"));
  assert.deepEqual(
    widget.message.parts.map((p) => p.type),
    ["text", "data-widget", "text"],
  );
  const part = widget.message.parts[1];
  assert.equal(part.data.widget_type, "poll");
  assert.deepEqual(part.data.data, { question: "Tea or coffee?" });
  assert.deepEqual(part.data.display_data, { answered: true }, "the update replaced the part's data");

  const tool = await consume(await send(chat, "tool"));
  assert.deepEqual(
    tool.message.parts.map((p) => p.type),
    ["text", "tool-search_products", "text"],
  );
  const step = tool.message.parts[1];
  assert.equal(step.state, "output-available");
  assert.equal(step.toolCallId, "call_1");
  assert.deepEqual(step.input, { query: "tea" });
  assert.deepEqual(step.output, { count: 2 });
});

test("a failed turn reaches the client as an error with the notice", { timeout: TIMEOUT }, async () => {
  const chat = await startConversation();
  const { errors, message } = await consume(await send(chat, "fail"));
  assert.equal(errors.length, 1);
  const notice = (await messages(chat)).find((r) => r.message_type === "system");
  assert.equal(errors[0].message, notice.content);
  assert.equal(text(message), "Partial ");
});

test("aborting the request (stop) cancels the turn", { timeout: TIMEOUT }, async () => {
  const chat = await startConversation();
  const abort = new AbortController();
  const stream = await send(chat, "slow 500", abort.signal);
  const reader = stream.getReader();
  for (;;) {
    const { value } = await reader.read();
    if (value.type === "text-delta") break;
  }
  abort.abort();
  await reader.cancel().catch(() => {});
  const user = await waitFor(async () => {
    const row = (await messages(chat)).find((r) => r.message_type === "user");
    return row.processing_status === "cancelled" ? row : null;
  }, "the user message to be cancelled");
  assert.equal(user.processing_status, "cancelled");
  const agent = await waitFor(async () => {
    const row = (await messages(chat)).find((r) => r.message_type === "agent");
    return row && row.processing_status === "cancelled" ? row : null;
  }, "the reply to end cancelled");
  assert.ok(agent.content.split(" ").length < 500, "the reply stopped early");
});

test("reconnectToStream re-attaches to a reply being written, and finds none after", { timeout: TIMEOUT }, async () => {
  const chat = await startConversation();
  const first = await send(chat, "slow 150");
  const seen = [];
  const firstReader = first.getReader();
  while (!seen.join("").includes("w5 ")) {
    const { value } = await firstReader.read();
    if (value.type === "text-delta") seen.push(value.delta);
  }
  const resumed = await chat.transport.reconnectToStream({ chatId: chat.id });
  assert.ok(resumed, "a reply is streaming: not a 204");
  const { chunks, message, errors } = await consume(resumed);
  assert.deepEqual(errors, []);
  assert.equal(chunks[0].type, "start", "replayed from its start");
  assert.equal(text(message), words(150));
  await firstReader.cancel().catch(() => {});
  assert.equal(await chat.transport.reconnectToStream({ chatId: chat.id }), null, "204: nothing streams");
  const agent = (await messages(chat)).find((r) => r.message_type === "agent");
  assert.equal(agent.processing_status, "completed", "the first client's leaving after the end cancels nothing");
});

test("another visitor's conversation is an API error, not a stream", { timeout: TIMEOUT }, async () => {
  const mine = await startConversation();
  const theirs = await startConversation();
  const intruder = { ...theirs, id: mine.id };
  await assert.rejects(send(intruder, "hi"), (error) => {
    assert.equal(error.statusCode, 404);
    return true;
  });
});

test("useChat's Chat answers a tool approval with addToolApprovalResponse", { timeout: TIMEOUT }, async () => {
  // Chat is what useChat runs (@ai-sdk/react), without React rendering it.
  const conversation = await startConversation("ai-sdk-refund");
  const chat = new Chat({
    id: conversation.id,
    transport: conversation.transport,
    sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
  });
  await chat.sendMessage({ text: "refund 5" });
  assert.equal(chat.status, "ready", String(chat.error));
  const asked = chat.messages.at(-1).parts.find((p) => p.type === "tool-refund");
  assert.equal(asked.state, "approval-requested");
  assert.deepEqual(asked.input, { amount: 5 });
  const step = (await messages(conversation)).find((r) => r.message_type === "tool");
  assert.equal(asked.approval.id, step.id, "the approval is named by the step's row");

  await chat.addToolApprovalResponse({ id: asked.approval.id, approved: true });
  const done = await waitFor(() => {
    const part = chat.messages.at(-1).parts.find((p) => p.type === "tool-refund");
    return chat.status === "ready" && part?.state === "output-available" ? part : null;
  }, "the approved step's output");
  assert.equal(done.output, "Refunded 5.");
  assert.equal(chat.messages.length, 2, "the same assistant message goes on");
  const reply = chat.messages.at(-1);
  const agent = await waitFor(async () => {
    const row = (await messages(conversation)).find((r) => r.message_type === "agent");
    return row.processing_status === "completed" ? row : null;
  }, "the reply to complete");
  assert.equal(reply.id, agent.id);
  assert.equal(agent.content, text(reply));
  assert.equal(text(reply), "Let me see. The tool answered: Refunded 5.");
});

test("useChat's Chat regenerates a reply: a new version of the message, answered again", { timeout: TIMEOUT }, async () => {
  const conversation = await startConversation();
  // The transport of docs/ai-sdk.md: only the last message, with the trigger and messageId.
  const transport = new DefaultChatTransport({
    api: `${API}ai-sdk/chat`,
    headers: conversation.headers,
    prepareSendMessagesRequest: ({ id, messages, trigger, messageId }) => ({
      body: { id, messages: messages.slice(-1), trigger, messageId },
    }),
  });
  const chat = new Chat({ id: conversation.id, transport });
  await chat.sendMessage({ text: "once more" });
  assert.equal(chat.status, "ready", String(chat.error));
  const first = chat.messages.at(-1);

  await chat.regenerate({ messageId: first.id });
  assert.equal(chat.status, "ready", String(chat.error));
  assert.equal(chat.messages.length, 2, "the old reply was replaced by the new one");
  const second = chat.messages.at(-1);
  assert.notEqual(second.id, first.id);
  assert.equal(text(second), "You said: once more ");
  // The conversation's active path is the new version and its reply; the first is kept, inactive.
  let rows = await messages(conversation);
  assert.deepEqual(rows.map((r) => [r.message_type, r.version_index]), [["user", 2], ["agent", 1]]);
  assert.equal(rows[1].id, second.id);

  // Without a messageId: the last message sent (the user's, by the client's own id) is answered again.
  await chat.regenerate();
  assert.equal(chat.status, "ready", String(chat.error));
  rows = await messages(conversation);
  assert.equal(rows[0].version_count, 3);
  assert.equal(chat.messages.at(-1).id, rows[1].id);
  assert.equal(text(chat.messages.at(-1)), "You said: once more ");
});
