/**
 * The React and Vue chat examples (examples/, docs/examples.md) in a real browser: Debian's
 * Chromium driven by playwright-core, against the demo server, which serves their build at
 * /examples/react/ and /examples/vue/ (backend/demo_urls.py). scripts/test-js.sh builds them
 * first; run alone: `node scripts/build-examples.mjs` in frontend_client/, then this file.
 * Both examples share their markup's class names (examples/shared/chat.css), so one set of
 * steps drives both.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { chromium, type Browser, type Page } from "playwright-core";

import { demoServer, repoRoot, type DemoServer } from "../test/helpers/server.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(repoRoot, "artifacts");
const EXAMPLES = [
  { name: "react", folder: "react-chat", title: "React chat" },
  { name: "vue", folder: "vue-chat", title: "Vue chat" },
];

let server: DemoServer;
let browser: Browser;

/** A new visitor (its own cookies) on the example's page, with the page's errors collected. */
async function openExample(name: string): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  await page.goto(`${server.origin}/examples/${name}/`);
  await page.waitForSelector(".chat-app[data-ready]");
  return { page, errors };
}

/** Start a conversation with `agent` from the sidebar; resolves with its id once its channel is up. */
async function start(page: Page, agent: string): Promise<string> {
  await page.selectOption(".agent-select", agent);
  await page.click(".new-chat .start");
  await page.waitForFunction(() => /^#\/c\/[0-9a-f-]{36}$/.test(location.hash));
  const id = (await page.evaluate(() => location.hash.slice("#/c/".length))) as string;
  await page.waitForSelector(`.chat[data-session="${id}"] .connection[data-state="subscribed"]`);
  return id;
}

async function send(page: Page, text: string): Promise<void> {
  await page.fill(".composer input", text);
  await page.press(".composer input", "Enter");
}

/** Record, from now on, each distinct length of the streaming agent message's text. */
async function watchStreaming(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { streamedLengths: number[] };
    w.streamedLengths = [];
    new MutationObserver(() => {
      const text = document.querySelector(".message.agent.streaming .text")?.textContent ?? "";
      if (text.length && text.length !== w.streamedLengths.at(-1)) w.streamedLengths.push(text.length);
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
  });
}

function streamedLengths(page: Page): Promise<number[]> {
  return page.evaluate(() => (window as unknown as { streamedLengths: number[] }).streamedLengths);
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}: install Debian's chromium (scripts/apt-packages.txt) or set CHROMIUM_PATH.`);
  for (const { folder } of EXAMPLES) {
    assert.ok(
      existsSync(join(repoRoot, "examples", folder, "dist", "app.js")),
      `examples/${folder} is not built: run \`node scripts/build-examples.mjs\` in frontend_client/ (scripts/test-js.sh does).`,
    );
  }
  server = await demoServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

for (const example of EXAMPLES) {
  describe(`the ${example.name} example`, () => {
    test("start a conversation, send a message, the reply streams in and completes; a reload shows it again", async () => {
      const { page, errors } = await openExample(example.name);
      try {
        assert.equal(await page.locator(".sidebar h1").innerText(), example.title);
        const id = await start(page, "support");
        await watchStreaming(page);
        await send(page, "How do refunds work?");
        await page.waitForSelector(".message.user >> text=How do refunds work?");
        const reply = page.locator(".message.agent[data-status='completed'] .text").last();
        await reply.waitFor();
        assert.match(await reply.innerText(), /Refunds for annual plans are pro-rated/);
        // It streamed: the text grew in steps before it completed, with Stop shown meanwhile.
        const lengths = await streamedLengths(page);
        assert.ok(lengths.length >= 3, `saw only ${JSON.stringify(lengths)} while streaming`);
        await page.waitForSelector(".composer .stop", { state: "detached" });
        assert.equal(await page.locator(".message.agent.streaming").count(), 0);
        // The live conversation list has it, titled from its first message.
        await page.waitForSelector(`.conversation-list li.active[data-session="${id}"] >> text=How do refunds work?`);
        mkdirSync(ARTIFACTS, { recursive: true });
        await page.screenshot({ path: join(ARTIFACTS, `example-${example.name}.png`) });

        // The open conversation is in the URL: a reload reads it back from the server.
        await page.reload();
        await page.waitForSelector(".chat-app[data-ready]");
        await page.waitForSelector(`.chat[data-session="${id}"] .message.user >> text=How do refunds work?`);
        assert.match(await page.locator(".message.agent[data-status='completed'] .text").last().innerText(), /pro-rated/);
        assert.deepEqual(errors, []);
      } finally {
        await page.context().close();
      }
    });

    test("a tool step waits for approval: Approve runs it and the reply goes on, Reject refuses it", async () => {
      const { page, errors } = await openExample(example.name);
      try {
        // The sales agent's apply_discount asks first above 10 %.
        await start(page, "sales");
        await send(page, "Can I get a 20% discount on pro-features?");
        const waiting = page.locator(".step[data-status='awaiting_approval']");
        await waiting.locator("button.approve").waitFor();
        assert.match(await waiting.locator("code").innerText(), /apply_discount/);
        assert.match(await waiting.locator("pre").first().innerText(), /"percent": 20/);
        await page.waitForSelector(".chat[data-phase='awaiting_approval']");
        // Both examples alike: no turn runs while the step waits (busy is false once the turn has
        // stopped for it), so Stop goes; Approve / Reject answer the step.
        await page.waitForSelector(".composer .stop", { state: "detached" });
        await waiting.locator("button.approve").click();
        const done = page.locator(".message.agent[data-status='completed']").last();
        await done.locator(".step[data-status='completed'] >> text=apply_discount").waitFor();
        assert.match(await done.locator(".body").innerText(), /Done: 20 % off Pro features is applied/);
        assert.equal(await page.locator(".step button.approve").count(), 0, "an answered step has no buttons");

        await send(page, "A 30% discount on team-seats, please");
        await page.locator(".step[data-status='awaiting_approval'] button.reject").click();
        await page.waitForSelector(".message.agent[data-status='completed'] >> text=I did not apply that discount");
        await page.waitForSelector(".step[data-status='failed'] >> text=apply_discount");
        assert.deepEqual(errors, []);
      } finally {
        await page.context().close();
      }
    });

    test("an answer refused by the server (answered in another tab meanwhile) shows the store's error, and Dismiss clears it", async () => {
      const { page, errors } = await openExample(example.name);
      try {
        await start(page, "sales");
        await send(page, "Can I get a 20% discount on pro-features?");
        const waiting = page.locator(".step[data-status='awaiting_approval']");
        await waiting.locator("button.approve").waitFor();
        // Just before this page's answer reaches the server, the same visitor approves the step
        // elsewhere (a real request with the page's cookies); the page's own answer then gets the
        // server's real 409 approval_already_answered.
        let answeredElsewhere = false;
        await page.route("**/approve/", async (route) => {
          const other = await page.context().request.fetch(route.request());
          answeredElsewhere = other.ok();
          await route.continue();
        });
        await waiting.locator("button.approve").click();
        const shown = page.locator(".chat .error");
        await shown.waitFor();
        assert.ok(answeredElsewhere, "the other answer was accepted");
        assert.match(await shown.innerText(), /approved already/);
        // The step shows what it is now (approved, then run), and the reply goes on.
        await page.locator(".message.agent[data-status='completed'] .step[data-status='completed'] >> text=apply_discount").waitFor();
        await shown.locator("button.dismiss").click();
        await shown.waitFor({ state: "detached" });
        // The browser logs the 409 itself; nothing else went wrong.
        assert.deepEqual(
          errors.filter((e) => !/status of 409/.test(e)),
          [],
        );
      } finally {
        await page.context().close();
      }
    });

    test("Stop ends a long reply, keeps its text, and marks it stopped", async () => {
      const { page, errors } = await openExample(example.name);
      try {
        await start(page, "writer");
        await send(page, "a story about a lighthouse keeper");
        // Some words first, so there is text to keep.
        await page.waitForFunction(() => (document.querySelector(".message.agent.streaming .text")?.textContent ?? "").length > 20);
        await page.click(".composer .stop");
        const stopped = page.locator(".message.agent[data-status='cancelled']");
        await stopped.waitFor();
        assert.match(await stopped.locator(".note").innerText(), /Stopped/);
        assert.ok((await stopped.locator(".text").innerText()).length > 20, "the partial text stays");
        await page.waitForSelector(".composer .stop", { state: "detached" });
        assert.deepEqual(errors, []);
      } finally {
        await page.context().close();
      }
    });
  });
}
