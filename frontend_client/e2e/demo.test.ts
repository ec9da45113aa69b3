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

import { demoServer, repoRoot, startDemoServer, type DemoServer } from "../test/helpers/server.js";

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
    // 415: the tray and the banner say the kind of file is not accepted, with the detected type.
    await page.waitForSelector(".attachment[data-status='failed'][data-code='unsupported_file_type']");
    const reason = await page.locator(".attachment[data-status='failed'] .state").innerText();
    assert.match(reason, /File refused, this kind of file is not accepted\. Files of type \S+ are not accepted here\./);
    assert.doesNotMatch(reason, /image\/png/, "the type comes from the bytes, not the name");
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
    assert.ok(!text.includes("knew what the words were for"), "the story was cut short");
    await page.waitForSelector("#stop", { state: "hidden" });
    assert.equal(await page.isVisible("#send"), true);
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
      // Even with the link to Alice's conversation.
      await other.goto(`${server.origin}/#/c/${supportSession}`);
      await other.waitForSelector("#banner:not([hidden])");
      await other.waitForSelector("#connection[data-state='failed']");
      assert.equal(await other.locator("#messages .message").count(), 0);
      assert.equal(await other.locator("text=How do refunds work?").count(), 0);
      // Alice still sees hers.
      assert.equal(await page.locator(`#session-list li[data-session="${supportSession}"]`).count(), 1);
    } finally {
      await bob.close();
    }
  });
});
