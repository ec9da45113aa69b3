/** The transport against the real demo server: headers through the given fetch, CSRF, a server
 * that is down, rate limits, a relative base URL outside a page. */

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createClient, isApiError, isNetworkError, isRateLimited, RateLimitedError } from "../src/index.js";
import { useDemoServer } from "./helpers/fixture.js";
import { freePort, signIn } from "./helpers/server.js";
import type { OrderRow } from "./helpers/shop.js";

const demo = useDemoServer();
const { client } = demo;

describe("transport", () => {
  test("headers and getHeaders go with every request, through the given fetch", async () => {
    const sent: Headers[] = [];
    const c = client({
      headers: { "X-Static": "one" },
      getHeaders: async () => ({ "X-Dynamic": "two" }),
      fetch: (url, init) => {
        sent.push(new Headers(init?.headers));
        return fetch(url, init);
      },
    });
    const conversation = await c.startConversation("echo");
    conversation.close();
    await c.sessions.fetch();
    assert.ok(sent.length >= 2);
    assert.ok(sent.every((h) => h.get("X-Static") === "one" && h.get("X-Dynamic") === "two"));
    // After start, a stateless client sends its anonymous id back.
    assert.equal(sent.at(-1)?.get("X-Conversation-Anonymous-Id"), c.anonymousId);
  });

  test("the first read of a signed-in browser needs no CSRF token", async () => {
    const browser = await signIn(demo.server.origin);
    browser.jar.delete("csrftoken"); // a page that never loaded a form: no cookie, no header
    const c = client({ fetch: browser.fetch, realtime: "none" });
    assert.ok(Array.isArray(await c.model<OrderRow>("order").fetch()));
    assert.ok(Array.isArray(await c.sessions.fetch()));
    // Writes still need it.
    await assert.rejects(c.model<OrderRow>("order").create({ total: "1.00" }), (error: unknown) => {
      assert.ok(isApiError(error) && error.status === 403, String(error));
      return true;
    });
  });

  test("a server that is down is a NetworkError", async () => {
    const port = await freePort();
    const c = createClient({ baseUrl: `http://127.0.0.1:${port}/api/conversations/`, realtime: "none" });
    await assert.rejects(c.sessions.fetch(), (error: unknown) => {
      assert.ok(isNetworkError(error));
      assert.equal(error.code, "network_error");
      return true;
    });
  });

  test("message bursts are rate limited with a RateLimitedError", async () => {
    const c = client();
    const conversation = await c.startConversation("echo");
    conversation.close();
    let limited: unknown = null;
    for (let i = 0; i < 40 && !limited; i++) {
      try {
        await c.messages.create({ session: conversation.sessionId, content: `message ${i}` });
      } catch (error) {
        limited = error;
      }
    }
    assert.ok(isRateLimited(limited), `expected a 429, got ${String(limited)}`);
    assert.ok(limited instanceof RateLimitedError);
    assert.equal(limited.status, 429);
    assert.ok((limited.retryAfter ?? 0) > 0);
    assert.ok(limited.message.length > 0);
  });

  test("a relative baseUrl outside a page is refused with a clear message", () => {
    assert.throws(() => createClient({ baseUrl: "/api/conversations/" }), /relative/);
  });
});
