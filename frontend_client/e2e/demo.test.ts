/**
 * The demo page in a real browser: Debian's Chromium driven by playwright-core, against the demo
 * backend (runserver, temporary SQLite, Local realtime over Server-Sent Events, embedded Tika +
 * tesseract for the PNG). A screenshot of the finished conversation goes to artifacts/.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

import type { Client } from "../src/index.js";
import { demoServer, repoRoot, startDemoServer, type DemoServer } from "../test/helpers/server.js";

type DemoClient = Client;

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(repoRoot, "artifacts");

let server: DemoServer;
let browser: Browser;
let alice: BrowserContext;
let page: Page;
let supportSession = "";

async function openAgent(p: Page, agent: string): Promise<string> {
  const before = p.url();
  await p.click(`#agent-list button[data-agent="${agent}"]`);
  await p.waitForFunction((old) => location.href !== old && /#\/c\/[0-9a-f-]{36}$/.test(location.hash), before);
  await p.waitForSelector("#connection[data-state='subscribed']");
  return p.url().split("#/c/")[1] as string;
}

async function send(p: Page, text: string): Promise<void> {
  await p.fill("#input", text);
  await p.press("#input", "Enter");
}

function lastAgentText(p: Page): Promise<string> {
  return p.locator(".message.agent:not(.typing) .bubble").last().innerText();
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}: install Debian's chromium (scripts/apt-packages.txt) or set CHROMIUM_PATH.`);
  server = await demoServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
  alice = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await alice.newPage();
  page.setDefaultTimeout(20_000);
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(server.origin + "/");
  await page.waitForSelector(".agent-card[data-agent='support']");
  assert.deepEqual(errors, []);
});

after(async () => {
  // The page as the run left it, whatever failed (the first test saves the finished conversation).
  if (page && !page.isClosed()) {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "demo-last-state.png") }).catch(() => undefined);
  }
  await browser?.close();
  await server?.stop();
});

describe("the demo page", () => {
  test("start a conversation, see the reply stream in, then pick a widget slot", async () => {
    supportSession = await openAgent(page, "support");
    // An empty conversation offers suggestions.
    await page.waitForSelector("#suggestions button");
    assert.equal(await page.locator("#messages .message").count(), 0);

    // Whether the typing indicator showed at any moment before the first words (however brief).
    await page.evaluate(() => {
      const w = window as unknown as { sawTyping: boolean };
      w.sawTyping = false;
      new MutationObserver((records) => {
        for (const record of records) {
          for (const node of record.addedNodes) {
            if (node instanceof HTMLElement && node.matches(".message.agent.typing")) w.sawTyping = true;
          }
        }
      }).observe(document.getElementById("messages") as HTMLElement, { childList: true, subtree: true });
    });
    await send(page, "How do refunds work?");
    await page.waitForSelector(".message.user .bubble >> text=How do refunds work?");
    // While it streams: a growing partial text with the caret, and the stop button.
    await page.waitForSelector(".message.agent.streaming");
    const lengths: number[] = [];
    while (await page.locator(".message.agent.streaming").count()) {
      lengths.push((await lastAgentText(page)).length);
      await page.waitForTimeout(40);
    }
    assert.ok(new Set(lengths.filter((n) => n > 0)).size >= 3, `saw only ${JSON.stringify(lengths)} while streaming`);
    await page.waitForSelector(".message.agent.completed");
    assert.match(await lastAgentText(page), /Refunds for annual plans are pro-rated/);
    assert.equal(await page.evaluate(() => (window as unknown as { sawTyping: boolean }).sawTyping), true, "no typing indicator");
    assert.equal(await page.locator("#messages .message.agent.typing").count(), 0, "the typing indicator went away");
    assert.equal(await page.isVisible("#stop"), false);
    // The live session list picked the conversation up, titled from its first message.
    await page.waitForSelector(`#session-list li.active[data-session="${supportSession}"] >> text=How do refunds work?`);

    await send(page, "I'd like to book a call");
    const slot = page.locator(".widget-card.appointment .slot").nth(1);
    await slot.waitFor();
    await page.waitForSelector(".slot:not([disabled])");
    const value = (await slot.getAttribute("data-slot")) as string;
    await slot.click();
    await page.waitForSelector(`.message.user .bubble >> text=Book ${value}`);
    await page.waitForFunction((v) => {
      const agents = [...document.querySelectorAll(".message.agent:not(.typing) .bubble")];
      return agents.at(-1)?.textContent?.includes(`booked for ${v}`);
    }, value);
    await page.waitForSelector(".widget-card.appointment .confirmed");
    assert.equal(await page.locator(".slot.selected").getAttribute("data-slot"), value);
    assert.equal(await page.locator(".slot:not([disabled])").count(), 0, "a booked form takes no second pick");
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.waitForTimeout(300); // let the last message's entrance animation end
    await page.screenshot({ path: join(ARTIFACTS, "demo-conversation.png") });
  });

  test("upload a PNG and get its text (OCR) used in the answer", async () => {
    await openAgent(page, "files");
    // A PNG made by the page's own canvas: black text on white, read back by tesseract.
    const png = await page.evaluate(async () => {
      const canvas = document.createElement("canvas");
      canvas.width = 900;
      canvas.height = 220;
      const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.fillStyle = "#000";
      ctx.font = "bold 64px sans-serif";
      ctx.fillText("INVOICE 4711", 40, 100);
      ctx.font = "48px sans-serif";
      ctx.fillText("Total due 120 EUR", 40, 180);
      const blob: Blob = await new Promise((resolve) => canvas.toBlob((b) => resolve(b as Blob), "image/png"));
      return [...new Uint8Array(await blob.arrayBuffer())];
    });
    await page.setInputFiles("#file-input", { name: "scan.png", mimeType: "image/png", buffer: Buffer.from(png) });
    await page.waitForSelector(".attachment >> text=scan.png");
    await page.waitForSelector(".attachment[data-status='done']", { timeout: 60_000 });
    await send(page, "What is the invoice number?");
    await page.waitForSelector(".message.user .chip[data-status='done'] >> text=scan.png");
    await page.waitForSelector(".message.agent.completed", { timeout: 60_000 });
    const answer = await lastAgentText(page);
    assert.match(answer, /scan\.png/);
    assert.match(answer, /4711/);
    assert.match(answer, /INVOICE/i);
  });

  test("a large upload shows its progress rising, then extraction, then the text is used", async () => {
    const slow = await browser.newContext();
    try {
      const p = await slow.newPage();
      await p.goto(server.origin + "/");
      await openAgent(p, "files");
      // Chromium's own network throttling (DevTools protocol): about 1 MB/s up, so the XHR's
      // progress events have time to report between the first and the last byte.
      const cdp = await slow.newCDPSession(p);
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", {
        offline: false, latency: 5, downloadThroughput: -1, uploadThroughput: 1024 * 1024,
      });
      await p.evaluate(() => {
        const w = window as unknown as { labels: string[] };
        w.labels = [];
        new MutationObserver(() => {
          const label = document.querySelector("#attachments .attachment .state")?.textContent;
          if (label && label !== w.labels.at(-1)) w.labels.push(label);
        }).observe(document.getElementById("attachments") as HTMLElement, { childList: true, subtree: true, characterData: true });
      });
      const line = "Order 9182 shipped to Lisbon on the third of March.\n";
      const body = Buffer.from(line.repeat(Math.ceil((2 * 1024 * 1024) / line.length)));
      await p.setInputFiles("#file-input", { name: "orders.txt", mimeType: "text/plain", buffer: body });
      await p.waitForSelector(".attachment[data-status='done'] >> text=Text extracted", { timeout: 60_000 });
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
      const labels = await p.evaluate(() => (window as unknown as { labels: string[] }).labels);
      const percents = labels.map((l) => /^Uploading… (\d+)%$/.exec(l)?.[1]).filter((n): n is string => !!n).map(Number);
      const between = percents.filter((n) => n > 0 && n < 100);
      assert.ok(new Set(between).size >= 3, `progress seen: ${JSON.stringify(labels)}`);
      assert.deepEqual([...percents].sort((a, b) => a - b), percents, "progress never goes back");
      assert.ok(labels.indexOf("Text extracted") > labels.findIndex((l) => l.startsWith("Uploading…")));
      await send(p, "Where was order 9182 shipped?");
      await p.waitForSelector(".message.agent.completed >> text=orders.txt", { timeout: 30_000 });
      assert.match(await lastAgentText(p), /Lisbon/);
    } finally {
      await slow.close();
    }
  });

  test("a refused file says why, and the typed message is kept", async () => {
    await openAgent(page, "files");
    // An executable is refused whatever its name says.
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(120)]);
    await page.setInputFiles("#file-input", { name: "photo.png", mimeType: "image/png", buffer: elf });
    // 415: the tray and the banner say in words which kind of file the server found in the bytes
    // (not the name, not a MIME type).
    await page.waitForSelector(".attachment[data-status='failed'][data-code='unsupported_file_type']");
    const reason = await page.locator(".attachment[data-status='failed'] .state").innerText();
    assert.equal(reason, "This kind of file (a program) isn’t accepted.");
    await page.waitForSelector("#banner:not([hidden])");
    assert.equal(await page.locator("#banner-text").innerText(), reason);
    assert.equal(await page.locator("#messages .message").count(), 0, "nothing was sent");
  });

  test("the server being down is said plainly", async () => {
    const offline = await browser.newContext();
    try {
      const p = await offline.newPage();
      // The page loads, then every API call fails as if the server had stopped.
      await p.route("**/api/conversations/**", (route) => route.abort("connectionrefused"));
      await p.goto(server.origin + "/");
      await p.waitForSelector("#fatal:not([hidden])");
      assert.match(await p.locator("#fatal h1").innerText(), /Can’t reach the server/);
    } finally {
      await offline.close();
    }
  });

  test("sending too fast is said plainly, and the refused message can be sent again", async () => {
    // A server of its own with a tight rate on message creation (two a minute per visitor).
    const strict = await startDemoServer({ DJANGO_AI_SETTINGS_JSON: JSON.stringify({ MESSAGE_CREATE_THROTTLE_RATE: "2/min" }) });
    const visitor = await browser.newContext();
    try {
      const p = await visitor.newPage();
      await p.goto(strict.origin + "/");
      await openAgent(p, "echo");
      for (const text of ["one", "two"]) {
        await send(p, text);
        await p.waitForSelector(`.message.agent.completed >> text=You said: ${text}`);
      }
      await send(p, "three");
      // The third is refused with a 429: the banner says so with the server's Retry-After, and the
      // message stays on the page, marked not sent, with Retry and Discard.
      await p.waitForSelector("#banner:not([hidden])");
      assert.equal(await p.getAttribute("#banner", "data-kind"), "warn");
      assert.match(await p.locator("#banner-text").innerText(), /You’re sending messages too fast\. Try again in \d+ s\./);
      const refused = p.locator(".message.user.failed");
      await refused.waitFor();
      assert.equal(await refused.locator(".bubble").innerText(), "three");
      assert.match(await refused.locator(".status .bad").innerText(), /^Not sent: You’re sending messages too fast/);
      assert.equal(await refused.locator("button >> text=Retry").count(), 1);
      assert.equal(await p.locator(".message.agent >> text=You said: three").count(), 0, "nothing answered it");
      // The composer is free again: no turn is running.
      assert.equal(await p.isVisible("#send"), true);
      // Discard removes it from the page; the server never had it.
      await refused.locator("button >> text=Discard").click();
      await p.waitForSelector(".message.user.failed", { state: "detached" });
      assert.deepEqual(await p.locator(".message.user .bubble").allInnerTexts(), ["one", "two"]);
    } finally {
      await visitor.close();
      await strict.stop();
    }
  });

  test("stop a long reply: the partial text stays", async () => {
    await openAgent(page, "writer");
    await send(page, "A story about a dragon");
    await page.waitForFunction(() => (document.querySelector(".message.agent.streaming .bubble")?.textContent?.length ?? 0) > 80);
    assert.equal(await page.isVisible("#stop"), true);
    await page.click("#stop");
    await page.waitForSelector(".message.agent.cancelled");
    const text = await lastAgentText(page);
    assert.ok(text.length > 80);
    assert.ok(!text.includes("The end."), "the story was cut short");
    await page.waitForSelector("#stop", { state: "hidden" });
    assert.equal(await page.isVisible("#send"), true);
    // Only the reply is marked stopped; the person's own message (cancelled too) is not.
    await page.waitForSelector(".message.user[data-status='cancelled']");
    const user = page.locator(".message.user").last();
    const drawn = await user.locator(".bubble").evaluate((bubble) => getComputedStyle(bubble, "::after").content);
    assert.ok(drawn === "none" || drawn === "normal", `the user's bubble draws ${drawn}`);
    assert.doesNotMatch(await user.innerText(), /stopped/i);
    assert.equal(await page.locator(".message.agent.cancelled .stopped").innerText(), "Stopped");
  });

  test("a message sent while a reply streams waits its turn: Stop stops the running reply only", async () => {
    await openAgent(page, "writer");
    await send(page, "A story about a dragon");
    await page.waitForFunction(() => (document.querySelector(".message.agent.streaming .bubble")?.textContent?.length ?? 0) > 40);
    await send(page, "A story about a cat");
    await send(page, "A story about an owl");
    // Both wait above the composer, in order, each with a way to take it back.
    await page.waitForFunction(() => document.querySelectorAll("#queue .queued").length === 2);
    const queued = page.locator("#queue .queued");
    assert.deepEqual(await queued.locator(".text").allInnerTexts(), ["A story about a cat", "A story about an owl"]);
    assert.equal(await page.locator(".message.user .bubble >> text=A story about a cat").count(), 0, "not sent yet");
    await queued.nth(1).locator("button >> text=Remove").click();
    await page.waitForFunction(() => document.querySelectorAll("#queue .queued").length === 1);

    await page.click("#stop");
    await page.waitForSelector(".message.agent.cancelled");
    // The waiting message is sent once the stopped reply has ended, and answered.
    await page.waitForFunction(() =>
      [...document.querySelectorAll(".message.agent.streaming .bubble")].some((b) => b.textContent?.includes("a cat")),
    );
    assert.equal(await page.locator("#queue .queued").count(), 0);
    const cat = page.locator(".message.user").filter({ hasText: "A story about a cat" });
    assert.notEqual(await cat.getAttribute("data-status"), "cancelled");
    // Stop that one too (the story is long).
    await page.click("#stop");
    await page.waitForFunction(() => document.querySelectorAll(".message.agent.cancelled").length === 2);
    await page.waitForSelector("#stop", { state: "hidden" });
    // The removed message was never sent.
    const sessionId = page.url().split("#/c/")[1] as string;
    const contents = await page.evaluate(async (id) => {
      const { client } = (window as unknown as { demo: { client: DemoClient } }).demo;
      const rows = await client.messages.filter({ session: id }).orderBy("timestamp").fetch();
      return rows.filter((m) => m.message_type === "user").map((m) => [m.content, m.processing_status]);
    }, sessionId);
    assert.deepEqual(contents, [
      ["A story about a dragon", "cancelled"],
      ["A story about a cat", "cancelled"],
    ]);
  });

  test("a message goes to the conversation on screen, also right after picking another agent", async () => {
    const first = await openAgent(page, "echo");
    const supportName = await page.locator('#agent-list button[data-agent="support"] strong').innerText();
    // The next conversation's start is held at the server's door until the test lets it through.
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let arrived!: () => void;
    const reached = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const pattern = "**/api/conversations/start/";
    let passed: Promise<void> = Promise.resolve();
    await page.route(pattern, (route) => {
      arrived();
      passed = held.then(() => route.continue());
      return passed;
    });
    try {
      await page.fill("#input", "meant for the new one");
      await page.click('#agent-list button[data-agent="support"]');
      await reached;
      // Until the new conversation exists nothing can be sent, and the typed text stays.
      await page.press("#input", "Enter");
      assert.equal(await page.inputValue("#input"), "meant for the new one", "the typed text stays");
      assert.equal(await page.isDisabled("#send"), true);
      // The screen already shows the new conversation.
      await page.waitForSelector(`#conversation-agent >> text=${supportName}`);
      release();
      await page.waitForFunction((old) => /#\/c\/[0-9a-f-]{36}$/.test(location.hash) && !location.hash.endsWith(old), first);
      const second = page.url().split("#/c/")[1] as string;
      await page.waitForSelector("#send:not([disabled])");
      await page.press("#input", "Enter");
      await page.waitForSelector(".message.user .bubble >> text=meant for the new one");
      assert.equal(page.url().split("#/c/")[1], second);
      await page.waitForSelector(".message.user:not(.local)");
      const sent = await page.evaluate(async (ids) => {
        const { client } = (window as unknown as { demo: { client: DemoClient } }).demo;
        const read = async (id: string) =>
          (await client.messages.filter({ session: id }).fetch()).filter((m) => m.message_type === "user").map((m) => m.content);
        return [await read(ids[0] as string), await read(ids[1] as string)];
      }, [first, second]);
      assert.deepEqual(sent, [[], ["meant for the new one"]]);
    } finally {
      release();
      await passed;
      await page.unroute(pattern);
    }
  });

  test("the sidebar's live dot and the top bar show the same connection state", async () => {
    // A server of its own, stopped halfway: every realtime connection of the page drops.
    const own = await startDemoServer();
    let running = true;
    const visitor = await browser.newContext();
    try {
      const p = await visitor.newPage();
      await p.goto(own.origin + "/");
      await openAgent(p, "echo");
      await p.waitForSelector("#sessions-live.on");
      await own.stop();
      running = false;
      await p.waitForSelector("#connection[data-state='reconnecting']");
      assert.equal(await p.locator("#sessions-live.on").count(), 0, "the live dot went out with the connection");
      assert.equal(await p.getAttribute("#sessions-live", "data-state"), "reconnecting");
    } finally {
      await visitor.close();
      if (running) await own.stop();
    }
  });

  test("a file over the server's upload limit is refused before it is sent", async () => {
    await openAgent(page, "files");
    const schema = (await (await fetch(server.api + "schema/")).json()) as { uploads?: { max_size?: number } };
    const limit = schema.uploads?.max_size ?? 20 * 1024 * 1024;
    const uploads: string[] = [];
    const watch = (request: { url(): string }) => {
      if (request.url().includes("/api/conversations/files/")) uploads.push(request.url());
    };
    page.on("request", watch);
    try {
      // Picked through the real file input; the file is made in the page (sending 20 MB of bytes
      // through the DevTools protocol would take long).
      await page.evaluate((size) => {
        const picked = new DataTransfer();
        picked.items.add(new File([new Uint8Array(size).fill(97)], "huge.txt", { type: "text/plain" }));
        const input = document.getElementById("file-input") as HTMLInputElement;
        input.files = picked.files;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      }, limit + 1);
      await page.waitForSelector(".attachment[data-status='failed'][data-code='file_too_large'] >> text=huge.txt");
      const reason = await page.locator(".attachment[data-status='failed'] .state").innerText();
      assert.equal(reason, `Too large: files up to ${Math.round(limit / 1024 / 1024)} MB are accepted.`);
      assert.deepEqual(uploads, [], "nothing was uploaded");
      // Taken out of the tray, it leaves nothing behind.
      await page.click(".attachment button[aria-label='Remove huge.txt']");
      await page.waitForSelector(".attachment", { state: "detached" });
    } finally {
      page.off("request", watch);
    }
  });

  test("replies render Markdown, and nothing in them runs", async () => {
    await openAgent(page, "echo");
    const text = [
      "**bold** and `code` and [a link](https://example.com/docs)",
      "",
      "- one",
      "- two",
      "",
      "```",
      "let x = 1;",
      "```",
      "",
      '<img src=x onerror="window.pwned = 1"> [click](javascript:window.pwned=2)',
    ].join("\n");
    await send(page, text);
    const reply = page.locator(".message.agent.completed").last();
    await reply.waitFor();
    const bubble = reply.locator(".bubble");
    assert.equal(await bubble.locator("strong").innerText(), "bold");
    assert.equal(await bubble.locator("p code").innerText(), "code");
    assert.deepEqual(await bubble.locator("ul > li").allInnerTexts(), ["one", "two"]);
    assert.equal((await bubble.locator("pre code").innerText()).trim(), "let x = 1;");
    const links = bubble.locator("a");
    assert.equal(await links.count(), 1, "the javascript: link is no link");
    assert.equal(await links.getAttribute("href"), "https://example.com/docs");
    assert.match((await links.getAttribute("rel")) ?? "", /noopener/);
    // Raw HTML stays text: no element, nothing ran.
    assert.equal(await bubble.locator("img").count(), 0);
    const shown = await bubble.innerText();
    assert.match(shown, /<img src=x onerror="window\.pwned = 1">/);
    assert.match(shown, /\[click\]\(javascript:window\.pwned=2\)/);
    assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
    // The person's own message stays plain text.
    assert.equal(await page.locator(".message.user .bubble").last().innerText(), text);
  });

  test("a signed-in user chats too (session cookie + CSRF token through the SDK)", async () => {
    const signedIn = await browser.newContext();
    try {
      const p = await signedIn.newPage();
      await p.goto(`${server.origin}/admin/login/?next=/`);
      await p.fill("#id_username", "demo");
      await p.fill("#id_password", "demo");
      await p.click("input[type=submit]");
      await p.waitForURL(`${server.origin}/`);
      await p.waitForSelector(".account >> text=Signed in as");
      await openAgent(p, "echo");
      await send(p, "hello from demo");
      await p.waitForSelector(".message.agent.completed >> text=You said: hello from demo");
      await p.waitForSelector("#session-list li >> text=hello from demo");
    } finally {
      await signedIn.close();
    }
  });

  test("another visitor cannot see the first visitor's conversations", async () => {
    const bob = await browser.newContext({ viewport: { width: 390, height: 800 } });
    try {
      const other = await bob.newPage();
      await other.goto(server.origin + "/");
      await other.waitForSelector("#no-sessions", { state: "visible" });
      assert.equal(await other.locator("#session-list li").count(), 0);
      // Even with the link to Alice's conversation: one plain sentence and a way back, no raw
      // server text, no endless loading, nothing to type into.
      await other.goto(`${server.origin}/#/c/${supportSession}`);
      await other.waitForSelector("#missing:not([hidden])");
      assert.equal(await other.locator("#missing h1").innerText(), "This conversation doesn’t exist or isn’t yours");
      assert.equal(await other.isVisible("#composer"), false);
      assert.equal(await other.isVisible("#banner"), false);
      const body = await other.locator("body").innerText();
      assert.doesNotMatch(body, /No session matches|Invalid pk|does not exist\.|Loading…/);
      assert.equal(await other.locator("#messages .message").count(), 0);
      assert.equal(await other.locator("text=How do refunds work?").count(), 0);
      // The way back: the agents to start a conversation of one's own.
      await other.click("#missing >> text=Start a new conversation");
      await other.waitForSelector("#welcome:not([hidden]) .agent-card");
      assert.equal(await other.isVisible("#missing"), false);
      assert.doesNotMatch(other.url(), /#\/c\//);
      // A link to no conversation at all says the same.
      await other.goto(`${server.origin}/#/c/00000000-0000-4000-8000-000000000000`);
      await other.waitForSelector("#missing:not([hidden])");
      // Alice still sees hers.
      assert.equal(await page.locator(`#session-list li[data-session="${supportSession}"]`).count(), 1);
    } finally {
      await bob.close();
    }
  });
});
