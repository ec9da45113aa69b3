/**
 * Approval before a tool runs, on the demo page in a real browser (Debian's Chromium driven by
 * playwright-core) against the demo backend: the sales agent's `apply_discount` above 10 % waits
 * for the user. The step shows among the reply's parts with Approve / Reject; a reload while it
 * waits shows the buttons again (they come from the step's row); Approve runs the tool and the
 * same reply goes on after the step; Reject with a reason tells the model. Screenshots of the
 * waiting step and of the approved reply go to artifacts/demo-approval-waiting.png and
 * artifacts/demo-approval.png.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { chromium, type Browser, type Page } from "playwright-core";

import { demoServer, repoRoot, type DemoServer } from "../test/helpers/server.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(repoRoot, "artifacts");

let server: DemoServer;
let browser: Browser;
let page: Page;
const errors: string[] = [];

async function openSales(p: Page): Promise<string> {
  const old = p.url();
  await p.click(`#agent-list button[data-agent="sales"]`);
  await p.waitForFunction((before) => location.href !== before && /#\/c\/[0-9a-f-]{36}$/.test(location.hash), old);
  await p.waitForSelector("#connection[data-state='subscribed']");
  return p.url().split("#/c/")[1] as string;
}

async function send(p: Page, text: string): Promise<void> {
  await p.fill("#input", text);
  await p.press("#input", "Enter");
}

/** The step of `tool` awaiting approval, once its buttons show. */
const waitingStep = (tool: string) => `.message.agent .tool-step[data-tool="${tool}"][data-status="awaiting_approval"]`;

/** What the last agent message shows, in order: `tool:<name>:<status>` for a step, `text:<text>` for text. */
function lastReplyParts(p: Page): Promise<string[]> {
  return p.evaluate(() => {
    const replies = [...document.querySelectorAll(".message.agent:not(.typing)")];
    const stack = replies.at(-1)?.querySelector(".stack");
    return [...(stack?.children ?? [])].map((node) => {
      const el = node as HTMLElement;
      if (el.classList.contains("tool-step")) return `tool:${el.dataset.tool}:${el.dataset.status}`;
      if (el.classList.contains("bubble")) return `text:${el.innerText.trim()}`;
      return `other:${el.className}`;
    });
  });
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}: install Debian's chromium (scripts/apt-packages.txt) or set CHROMIUM_PATH.`);
  server = await demoServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(server.origin + "/");
  await page.waitForSelector(".agent-card[data-agent='sales']");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe("approval on the demo page", () => {
  test("the sales agent asks before a discount; after a reload the buttons are still there; Approve and the reply goes on", async () => {
    await openSales(page);
    await send(page, "Can I get a 20% discount on pro-features?");
    const step = page.locator(waitingStep("apply_discount"));
    await step.locator("button.approve").waitFor();
    assert.match(await step.locator("code").innerText(), /apply_discount\(product_id: "pro-features", percent: 20\)/);
    await page.waitForSelector("#conversation-subtitle >> text=Waiting for your approval");
    // The subtitle shows from the moment the step does; Stop goes once the turn has stopped for it
    // (its suspension recorded a moment later): waited for, not checked at once (a race).
    await page.waitForSelector("#stop", { state: "hidden" });

    // The buttons come from the step's row: a reload shows them again.
    await page.reload();
    await page.locator(waitingStep("apply_discount")).locator("button.approve").waitFor();
    assert.deepEqual(await lastReplyParts(page), ["tool:apply_discount:awaiting_approval"]);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.waitForTimeout(300); // let the entrance animation end (for the picture only)
    await page.screenshot({ path: join(ARTIFACTS, "demo-approval-waiting.png") });

    await page.locator(waitingStep("apply_discount")).locator("button.approve").click();
    await page.waitForSelector('.tool-step[data-tool="apply_discount"][data-status="completed"]');
    await page.waitForSelector(".message.agent.completed >> text=20 % off Pro features is applied");
    assert.deepEqual(await lastReplyParts(page), ["tool:apply_discount:completed", "text:Done: 20 % off Pro features is applied to your account."]);
    assert.equal(await page.locator(".tool-step button.approve").count(), 0, "an answered step has no buttons");
    assert.equal(await page.locator(".message.system").count(), 0, "nothing failed");
    await page.waitForTimeout(300); // let the last message's entrance animation end
    await page.screenshot({ path: join(ARTIFACTS, "demo-approval.png") });
  });

  test("Reject with a reason: the tool does not run and the model is told", async () => {
    await openSales(page);
    await send(page, "A 30% discount on team-seats, please");
    const step = page.locator(waitingStep("apply_discount"));
    await step.locator("input.reason").fill("Too generous");
    await step.locator("button.reject").click();
    await page.waitForSelector('.tool-step[data-tool="apply_discount"][data-status="failed"] >> text=rejected');
    await page.waitForSelector(".message.agent.completed >> text=I did not apply that discount");
    assert.deepEqual(await lastReplyParts(page), [
      "tool:apply_discount:failed",
      "text:Understood: I did not apply that discount.",
    ]);
    assert.match(await page.locator('.tool-step[data-tool="apply_discount"] .step-result').innerText(), /Too generous/);
    assert.deepEqual(errors, []);
  });

  test("an answer given elsewhere first is said in the banner; the step shows it approved and the reply goes on", async () => {
    await openSales(page);
    await send(page, "Can I get a 20% discount on pro-features?");
    const step = page.locator(waitingStep("apply_discount"));
    await step.locator("button.approve").waitFor();
    // Just before this page's answer reaches the server, the same visitor approves the step
    // elsewhere (a real request with the page's cookies): the page's answer gets the real 409.
    let answeredElsewhere = false;
    await page.route("**/approve/", async (route) => {
      answeredElsewhere = (await page.context().request.fetch(route.request())).ok();
      await route.continue();
    });
    try {
      await step.locator("button.approve").click();
      await page.waitForSelector("#banner:not([hidden]) >> text=approved already");
      assert.ok(answeredElsewhere, "the other answer was accepted");
      await page.waitForSelector(".message.agent.completed >> text=20 % off Pro features is applied");
      assert.deepEqual(await lastReplyParts(page), ["tool:apply_discount:completed", "text:Done: 20 % off Pro features is applied to your account."]);
      await page.click("#banner-action");
      await page.waitForSelector("#banner", { state: "hidden" });
    } finally {
      await page.unroute("**/approve/");
    }
    assert.deepEqual(errors, []);
  });
});
