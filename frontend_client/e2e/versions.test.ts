/**
 * Message versions and feedback on the demo page in a real browser (Debian's Chromium driven by
 * playwright-core) against the demo backend, with the `notes` agent (NotebookAgent: its answer
 * says the turn number and the notes kept in its Context, so an answer shows which Context its
 * turn started from).
 *
 * Regenerate: a second version of the reply appears with "2/2" on the user message, answered from
 * the Context that turn started from (the same turn number, not one more); the arrows go back to
 * 1/2 (the first reply again) and forth. Edit an earlier message: the later turns leave the
 * thread, the new answer comes from the notes as they were before it, the arrows bring the old
 * path back. The arrows are off while a reply is written (the server refuses a switch then, 409
 * turn_in_progress) and switch once it is stopped. Copy puts the reply's text on the clipboard and says "Copied"; the thumbs are stored
 * (read back through the bridge), a second click withdraws, a thumb down takes a comment.
 * A screenshot of a regenerated reply ("2/2") goes to artifacts/demo-versions.png.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { chromium, type Browser, type Locator, type Page } from "playwright-core";

import type { MessageRow as SdkMessageRow } from "../src/index.js";
import { demoServer, repoRoot, type DemoServer } from "../test/helpers/server.js";

/** The message row with its feedback fields (docs/conversations.md). */
type MessageRow = SdkMessageRow & { feedback?: string; feedback_comment?: string };

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(repoRoot, "artifacts");

let server: DemoServer;
let browser: Browser;
let page: Page;
const errors: string[] = [];

async function openNotes(p: Page): Promise<string> {
  const old = p.url();
  await p.click(`#agent-list button[data-agent="notes"]`);
  await p.waitForFunction((before) => location.href !== before && /#\/c\/[0-9a-f-]{36}$/.test(location.hash), old);
  await p.waitForSelector("#connection[data-state='subscribed']");
  return p.url().split("#/c/")[1] as string;
}

/** Send `text` and wait until the thread ends with its answer, finished; the answer's id. */
async function say(p: Page, text: string): Promise<string> {
  const before = await p.locator(".message.agent.completed").count();
  await p.fill("#input", text);
  await p.press("#input", "Enter");
  await p.waitForFunction((n) => document.querySelectorAll(".message.agent.completed").length > n, before);
  return lastReplyId(p);
}

function lastReplyId(p: Page): Promise<string> {
  return p.locator(".message.agent:not(.typing)").last().getAttribute("data-id") as Promise<string>;
}

/** The thread as shown: `user:<text>` and `agent:<text>` in order. */
function thread(p: Page): Promise<string[]> {
  return p.evaluate(() =>
    [...document.querySelectorAll("#messages .message:not(.typing)")].map((node) => {
      const el = node as HTMLElement;
      const bubbles = [...el.querySelectorAll(".bubble")].map((b) => (b as HTMLElement).innerText.trim()).join(" ");
      return `${el.dataset.type}:${bubbles.replace(/\s+/g, " ")}`;
    }),
  );
}

/** The user message showing exactly `text`. */
function userMessage(p: Page, text: string): Locator {
  return p.locator(".message.user", { has: p.locator(".bubble", { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`) }) });
}

/** Wait until the thread is exactly `expected` (no agent reply still running). */
async function waitForThread(p: Page, expected: string[]): Promise<void> {
  try {
    await p.waitForFunction(
      (want) => {
        const nodes = [...document.querySelectorAll("#messages .message:not(.typing)")] as HTMLElement[];
        if (nodes.some((n) => n.dataset.type === "agent" && n.dataset.status !== "completed")) return false;
        const got = nodes.map((el) => {
          const bubbles = [...el.querySelectorAll(".bubble")].map((b) => (b as HTMLElement).innerText.trim()).join(" ");
          return `${el.dataset.type}:${bubbles.replace(/\s+/g, " ")}`;
        });
        return JSON.stringify(got) === JSON.stringify(want);
      },
      expected,
      { timeout: 20_000 },
    );
  } catch (error) {
    assert.deepEqual(await thread(p), expected, `the thread did not become the expected one (${(error as Error).message.split("\n")[0]})`);
  }
}

/** A message row read through the bridge with the page's own client (cookies, CSRF). */
function readRow(p: Page, id: string): Promise<MessageRow> {
  return p.evaluate((pk) => (window as unknown as { demo: { client: { messages: { get(pk: string): Promise<MessageRow> } } } }).demo.client.messages.get(pk), id);
}

async function waitForRow(p: Page, id: string, check: (row: MessageRow) => boolean, what: string): Promise<MessageRow> {
  const deadline = Date.now() + 20_000;
  let row = await readRow(p, id);
  while (!check(row)) {
    if (Date.now() > deadline) assert.fail(`${what}: the row is ${JSON.stringify({ feedback: row.feedback, feedback_comment: row.feedback_comment })}`);
    await p.waitForTimeout(100);
    row = await readRow(p, id);
  }
  return row;
}

const TURN = (n: number, notes: number) => `Turn ${n} of this conversation, ${notes} note(s) kept.`;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM}: install Debian's chromium (scripts/apt-packages.txt) or set CHROMIUM_PATH.`);
  server = await demoServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.origin });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(server.origin + "/");
  await page.waitForSelector(".agent-card[data-agent='notes']");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe("message versions on the demo page", () => {
  test("Regenerate: a second version answered from the same Context, then the arrows back to the first reply and forth", async () => {
    await openNotes(page);
    await say(page, "Remember: milk");
    const first = await say(page, "What do you remember?");
    const asked = userMessage(page, "What do you remember?");
    assert.equal(await asked.locator(".versions").count(), 0, "one version: no arrows");
    await waitForThread(page, [
      "user:Remember: milk",
      `agent:Noted: “milk”. milk ${TURN(1, 1)}`,
      "user:What do you remember?",
      `agent:You asked me to remember: milk ${TURN(2, 1)}`,
    ]);

    await page.locator(`.message.agent[data-id="${first}"] button[data-action="regenerate"]`).click();
    await page.waitForSelector(`.message.agent.completed:not([data-id="${first}"]) >> text=${TURN(2, 1)}`);
    await asked.locator(".version-label >> text=2/2").waitFor();
    const second = await lastReplyId(page);
    assert.notEqual(second, first);
    // Turn 2 again, not 3: the turn started from the Context it started from the first time.
    await waitForThread(page, [
      "user:Remember: milk",
      `agent:Noted: “milk”. milk ${TURN(1, 1)}`,
      "user:What do you remember?",
      `agent:You asked me to remember: milk ${TURN(2, 1)}`,
    ]);
    assert.equal(await page.locator(`.message[data-id="${first}"]`).count(), 0, "the first reply left the thread");
    assert.equal(await asked.getByRole("button", { name: "Next version" }).isDisabled(), true);

    await asked.getByRole("button", { name: "Previous version" }).click();
    await asked.locator(".version-label >> text=1/2").waitFor();
    await page.waitForSelector(`.message.agent[data-id="${first}"]`);
    assert.equal(await page.locator(`.message[data-id="${second}"]`).count(), 0);
    assert.equal(await lastReplyId(page), first);
    assert.equal(await asked.getByRole("button", { name: "Previous version" }).isDisabled(), true);

    await asked.getByRole("button", { name: "Next version" }).click();
    await asked.locator(".version-label >> text=2/2").waitFor();
    await page.waitForSelector(`.message.agent[data-id="${second}"]`);
    assert.equal(await page.locator(`.message[data-id="${first}"]`).count(), 0);
    // A reload shows the chosen path: the server keeps it.
    await page.reload();
    await userMessage(page, "What do you remember?").locator(".version-label >> text=2/2").waitFor();
    assert.equal(await lastReplyId(page), second);
    assert.deepEqual(errors, []);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.locator("#session-list li.active").hover();
    await page.waitForTimeout(300); // let the entrance animation end (for the picture only)
    await page.screenshot({ path: join(ARTIFACTS, "demo-versions.png") });
  });

  test("a double click on Regenerate makes one new version, not two", async () => {
    await openNotes(page);
    const first = await say(page, "Remember: tea");
    const asked = userMessage(page, "Remember: tea");
    await page.locator(`.message.agent[data-id="${first}"] button[data-action="regenerate"]`).dblclick();
    await asked.locator(".version-label >> text=/\\d\\/[23]/").waitFor();
    const answered = [`user:Remember: tea`, `agent:Noted: “tea”. tea ${TURN(1, 1)}`];
    await waitForThread(page, answered);
    // Every request of the clicks has been answered once the turn they started is over.
    const askedId = (await asked.getAttribute("data-id")) as string;
    const group = (await readRow(page, askedId)).version_group as string;
    type Messages = { filter(f: object): { fetch(): Promise<MessageRow[]> } };
    const versions = await page.evaluate(
      (g) => (window as unknown as { demo: { client: { messages: Messages } } }).demo.client.messages.filter({ version_group: g }).fetch(),
      group,
    );
    assert.equal(versions.length, 2, `versions made: ${versions.map((v) => v.revision).join(", ")}`);
    assert.equal(await asked.locator(".version-label").innerText(), "2/2");
    assert.deepEqual(errors, []);
  });

  test("Edit an earlier message: the later turns leave, the new answer starts from the notes before it; the arrows bring the old path back", async () => {
    await openNotes(page);
    await say(page, "Remember: milk");
    await say(page, "Remember: bread");
    const before = [
      "user:Remember: milk",
      `agent:Noted: “milk”. milk ${TURN(1, 1)}`,
      "user:Remember: bread",
      `agent:Noted: “bread”. milk bread ${TURN(2, 2)}`,
    ];
    await waitForThread(page, before);

    // Cancel (Escape) leaves the message as it was.
    const milk = userMessage(page, "Remember: milk");
    await milk.getByRole("button", { name: "Edit this message" }).click();
    const editor = page.getByRole("textbox", { name: "Edit your message" });
    await editor.waitFor();
    assert.equal(await editor.inputValue(), "Remember: milk");
    assert.equal(await editor.evaluate((node) => node === document.activeElement), true, "the editor has the focus");
    await editor.fill("Remember: nothing");
    await editor.press("Escape");
    await editor.waitFor({ state: "detached" });
    await waitForThread(page, before);

    await milk.getByRole("button", { name: "Edit this message" }).click();
    await editor.fill("Remember: eggs");
    await page.locator("form.editor").getByRole("button", { name: "Save" }).click();
    // Turn 1 again and one note: the Context as it was before the edited message.
    await waitForThread(page, ["user:Remember: eggs", `agent:Noted: “eggs”. eggs ${TURN(1, 1)}`]);
    const eggs = userMessage(page, "Remember: eggs");
    await eggs.locator(".version-label >> text=2/2").waitFor();

    await eggs.getByRole("button", { name: "Previous version" }).click();
    await waitForThread(page, before);
    await userMessage(page, "Remember: milk").locator(".version-label >> text=1/2").waitFor();
    // Sending now goes on from that path (its Context: two notes).
    await say(page, "What do you remember?");
    await waitForThread(page, [...before, "user:What do you remember?", `agent:You asked me to remember: milk bread ${TURN(3, 2)}`]);
    assert.deepEqual(errors, []);
  });

  test("the version arrows are off while a reply is written (the server would refuse, 409); after Stop they switch", async () => {
    const old = page.url();
    await page.click(`#agent-list button[data-agent="writer"]`);
    await page.waitForFunction((before) => location.href !== before && /#\/c\/[0-9a-f-]{36}$/.test(location.hash), old);
    await page.waitForSelector("#connection[data-state='subscribed']");
    await page.fill("#input", "A story about a lighthouse keeper");
    await page.press("#input", "Enter");
    await page.waitForSelector(".message.agent.streaming");
    await page.click("#stop");
    const first = page.locator(".message.agent.cancelled");
    await first.locator(".status.stopped").waitFor();
    const firstId = (await first.getAttribute("data-id")) as string;

    // A stopped reply can be answered again: the new version streams.
    await first.getByRole("button", { name: "Regenerate this reply" }).click();
    await page.waitForSelector(`.message.agent.streaming:not([data-id="${firstId}"])`);
    const asked = userMessage(page, "A story about a lighthouse keeper");
    await asked.locator(".version-label >> text=2/2").waitFor();
    // The server refuses every switch while the reply is written: the arrows are off meanwhile.
    await page.waitForFunction(() => {
      const previous = document.querySelector<HTMLButtonElement>('.message.user button[data-action="previous-version"]');
      const says = previous?.closest(".versions")?.getAttribute("title") === "Switch versions once the reply ends";
      return !!document.querySelector(".message.agent.streaming") && previous?.disabled === true && says;
    });

    await page.click("#stop");
    await page.waitForSelector(`.message.agent.cancelled:not([data-id="${firstId}"]) .status.stopped`);
    await asked.getByRole("button", { name: "Previous version" }).click();
    await asked.locator(".version-label >> text=1/2").waitFor();
    await page.waitForSelector(`.message.agent[data-id="${firstId}"]`);
    assert.equal(await page.locator(".message.agent").count(), 1);
    assert.deepEqual(errors, []);
  });

  test("Copy puts the reply on the clipboard; thumbs are stored, a second click withdraws, a thumb down takes a comment", async () => {
    await openNotes(page);
    const id = await say(page, "Remember: the keys are under the mat");
    const reply = page.locator(`.message.agent[data-id="${id}"]`);

    await reply.getByRole("button", { name: "Copy this reply" }).click();
    await reply.locator('button[data-action="copy"] >> text=Copied').waitFor();
    const row = await readRow(page, id);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), row.content);
    // "Copied" goes away by itself.
    await reply.locator('button[data-action="copy"] >> text=Copy').waitFor();

    const up = reply.getByRole("button", { name: "Good reply" });
    const down = reply.getByRole("button", { name: "Bad reply" });
    await up.click();
    await reply.locator('button[data-action="thumb-up"][aria-pressed="true"]').waitFor();
    await waitForRow(page, id, (r) => r.feedback === "up", "thumb up stored");

    await up.click();
    await reply.locator('button[data-action="thumb-up"][aria-pressed="false"]').waitFor();
    await waitForRow(page, id, (r) => r.feedback === "", "thumb up withdrawn");

    await down.click();
    await reply.locator('button[data-action="thumb-down"][aria-pressed="true"]').waitFor();
    await waitForRow(page, id, (r) => r.feedback === "down" && r.feedback_comment === "", "thumb down stored before any comment");
    const comment = reply.getByRole("textbox", { name: "What was wrong with this reply (optional)" });
    await comment.fill("It should have asked where the mat is");
    await reply.getByRole("button", { name: "Send" }).click();
    await comment.waitFor({ state: "detached" });
    await waitForRow(page, id, (r) => r.feedback === "down" && r.feedback_comment === "It should have asked where the mat is", "comment stored");
    // A reload shows the stored rating.
    await page.reload();
    await page.locator(`.message.agent[data-id="${id}"] button[data-action="thumb-down"][aria-pressed="true"]`).waitFor();
    assert.deepEqual(errors, []);
  });
});
