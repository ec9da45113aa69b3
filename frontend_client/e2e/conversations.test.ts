/**
 * Managing conversations in the demo page's sidebar, in a real browser (Debian's Chromium driven
 * by playwright-core) against the demo backend: rename inline (Enter saves, Escape cancels),
 * archive and unarchive (an archived conversation takes no message until unarchived), delete
 * after a confirmation (Cancel keeps it; once deleted it is gone from the list, its link says it
 * does not exist, the bridge answers 404; another tab showing it says so too), and the search box, which filters the list through the
 * server's `search` filter on titles and message text.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, test } from "node:test";

import { chromium, type Browser, type Locator, type Page } from "playwright-core";

import { demoServer, type DemoServer } from "../test/helpers/server.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let server: DemoServer;
let browser: Browser;
let page: Page;
const errors: string[] = [];

/** Start a conversation with the echo agent and send `text`; its id once answered. */
async function conversationWith(p: Page, ...texts: string[]): Promise<string> {
  const old = p.url();
  await p.click(`#agent-list button[data-agent="echo"]`);
  await p.waitForFunction((before) => location.href !== before && /#\/c\/[0-9a-f-]{36}$/.test(location.hash), old);
  await p.waitForSelector("#connection[data-state='subscribed']");
  const id = p.url().split("#/c/")[1] as string;
  for (const text of texts) {
    await p.fill("#input", text);
    await p.press("#input", "Enter");
    await p.waitForSelector(`.message.agent.completed >> text=You said: ${text}`);
  }
  // Titled from its first message (the page does it once the message is sent).
  await p.waitForSelector(`#session-list li[data-session="${id}"] .title >> text=${texts[0]}`);
  return id;
}

function item(p: Page, id: string): Locator {
  return p.locator(`#session-list li[data-session="${id}"]`);
}

/** The conversations the list shows once it shows the results for `term`. */
async function listFor(p: Page, term: string): Promise<string[]> {
  await p.fill("#session-search", term);
  await p.waitForSelector(`#session-list[data-search="${term}"]`, { state: "attached" });
  return p.locator("#session-list li").evaluateAll((nodes) => nodes.map((n) => (n as HTMLElement).dataset.session as string));
}

/** The session row through the bridge, with the page's own client; null when it is not found. */
function readSession(p: Page, id: string): Promise<{ title: string; status: string } | null> {
  type Sessions = { get(pk: string): Promise<{ title: string; status: string }> };
  return p.evaluate(async (pk) => {
    const { client } = (window as unknown as { demo: { client: { sessions: Sessions } } }).demo;
    try {
      return await client.sessions.get(pk);
    } catch (error) {
      if ((error as { status?: number }).status === 404) return null;
      throw error;
    }
  }, id);
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
  await page.waitForSelector(".agent-card[data-agent='echo']");
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe("managing conversations on the demo page", () => {
  test("rename inline: Escape cancels, Enter saves; the server keeps the title", async () => {
    const id = await conversationWith(page, "first words");
    await item(page, id).getByRole("button", { name: "Rename “first words”" }).click();
    const input = page.getByRole("textbox", { name: "New title of “first words”" });
    assert.equal(await input.inputValue(), "first words");
    assert.equal(await input.evaluate((node) => node === document.activeElement), true, "the field has the focus");
    await input.fill("Not this one");
    await input.press("Escape");
    await input.waitFor({ state: "detached" });
    await item(page, id).locator(".title >> text=first words").waitFor();
    // The focus goes back to the Rename button (keyboard users stay where they were).
    assert.equal(await page.evaluate(() => (document.activeElement as HTMLElement | null)?.getAttribute("aria-label")), "Rename “first words”");

    await page.keyboard.press("Enter"); // the focused Rename button
    await input.fill("  Shopping list  ");
    await input.press("Enter");
    await item(page, id).locator(".title >> text=Shopping list").waitFor();
    assert.equal((await readSession(page, id))?.title, "Shopping list");
    await page.reload();
    await item(page, id).locator(".title >> text=Shopping list").waitFor();
    assert.deepEqual(errors, []);
  });

  test("archive: the conversation takes no message, and offers no Edit or Regenerate, until unarchived", async () => {
    const id = await conversationWith(page, "to be archived");
    await item(page, id).getByRole("button", { name: "Archive “to be archived”" }).click();
    await page.waitForSelector(`#session-list li.archived[data-session="${id}"][data-status="archived"]`);
    assert.equal((await readSession(page, id))?.status, "archived");
    await page.waitForSelector("#archived:not([hidden])");
    assert.equal(await page.isDisabled("#input"), true);
    // Edit and Regenerate would be refused (409 session_not_active): not offered; the thumbs stay.
    await page.locator('.message.user button[data-action="edit"]').waitFor({ state: "detached" });
    await page.locator('.message.agent button[data-action="regenerate"]').waitFor({ state: "detached" });
    await page.locator('.message.agent button[data-action="thumb-up"]').waitFor();

    await page.click("#unarchive");
    await page.waitForSelector(`#session-list li[data-session="${id}"][data-status="active"]`);
    await page.waitForSelector("#archived", { state: "hidden" });
    assert.equal(await page.isDisabled("#input"), false);
    await page.locator('.message.user button[data-action="edit"]').waitFor();
    await page.locator('.message.agent button[data-action="regenerate"]').waitFor();
    await page.fill("#input", "back again");
    await page.press("#input", "Enter");
    await page.waitForSelector(".message.agent.completed >> text=You said: back again");
    assert.equal((await readSession(page, id))?.status, "active");
    assert.deepEqual(errors, []);
  });

  test("delete asks first: Cancel keeps it, Delete removes it for good (list, link, bridge)", async () => {
    const keep = await conversationWith(page, "a keeper");
    const id = await conversationWith(page, "delete me");
    await item(page, id).getByRole("button", { name: "Delete “delete me”" }).click();
    const confirm = item(page, id).getByRole("group", { name: "Delete “delete me”?" });
    await confirm.waitFor();
    await confirm.getByRole("button", { name: "Cancel" }).click();
    await confirm.waitFor({ state: "detached" });
    assert.notEqual(await readSession(page, id), null, "Cancel deleted nothing");

    await item(page, id).getByRole("button", { name: "Delete “delete me”" }).click();
    await confirm.getByRole("button", { name: "Delete" }).click();
    await item(page, id).waitFor({ state: "detached" });
    // It was the open conversation: the page goes back to the agents.
    await page.waitForSelector("#welcome:not([hidden])");
    assert.equal(await readSession(page, id), null, "the bridge says 404");
    assert.notEqual(await readSession(page, keep), null, "only that one went");
    await item(page, keep).waitFor();
    // Its link: the page says it does not exist.
    await page.goto(`${server.origin}/#/c/${id}`);
    await page.waitForSelector("#missing:not([hidden])");
    await page.reload();
    await page.waitForSelector("#missing:not([hidden])");
    assert.equal(await item(page, id).count(), 0);
    assert.deepEqual(errors, []);
  });

  test("a conversation deleted in another tab leaves that tab's list, and its screen says it doesn't exist", async () => {
    const id = await conversationWith(page, "open in two tabs");
    const other = await page.context().newPage();
    try {
      other.on("pageerror", (error) => errors.push(error.message));
      await other.goto(`${server.origin}/#/c/${id}`);
      await other.waitForSelector(".message.agent.completed >> text=You said: open in two tabs");
      await other.waitForSelector("#connection[data-state='subscribed']");
      await item(page, id).getByRole("button", { name: "Delete “open in two tabs”" }).click();
      await item(page, id).getByRole("button", { name: "Delete", exact: true }).click();
      await item(other, id).waitFor({ state: "detached" });
      await other.waitForSelector("#missing:not([hidden])");
      assert.equal(await other.isVisible("#composer"), false);
    } finally {
      await other.close();
    }
    assert.deepEqual(errors, []);
  });

  test("search finds a conversation by a word of a message, not only of its title", async () => {
    // The titles are the first messages; the words searched for are in the second ones.
    const zebra = await conversationWith(page, "Animals", "the zebra crossing");
    const violin = await conversationWith(page, "Music", "violin lessons on Tuesday");
    assert.deepEqual(await listFor(page, "zebra"), [zebra]);
    assert.deepEqual(await listFor(page, "violin"), [violin]);
    assert.deepEqual(await listFor(page, "music"), [violin], "the title, whatever the case");
    assert.deepEqual(await listFor(page, "xylophone-unheard-of"), []);
    await page.waitForSelector("#no-sessions >> text=No conversation matches “xylophone-unheard-of”.");
    // Cleared: the whole list again.
    const all = await listFor(page, "");
    assert.ok(all.includes(zebra) && all.includes(violin), `${all.length} conversations`);
    assert.deepEqual(errors, []);
  });
});
