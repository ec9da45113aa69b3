/**
 * The demo server of one test file, and the clients and conversation stores its tests make,
 * closed after the file: `const { client, start, keep } = useDemoServer();` at the top of a file.
 */

import { after, before } from "node:test";

import { createClient, type Client, type ClientOptions, type Conversation, type JsonObject } from "../../src/index.js";
import { demoServer, type DemoServer } from "./server.js";

export interface DemoFixture {
  /** The server (the shared one of scripts/test-js.sh, or one of this file's own). */
  readonly server: DemoServer;
  /** A client of the server; `options` add to or replace the base URL's. */
  client(options?: Partial<ClientOptions>): Client;
  /** Start a conversation with `agent` and wait until its store has read it and its channel is subscribed. */
  start(c: Client, agent: string, startParams?: JsonObject): Promise<Conversation>;
  /** Close `thing` (a store or a client made otherwise) after the file. */
  keep<T extends { close(): void }>(thing: T): T;
}

/** Register the file's `before`/`after` hooks; the fixture they fill. */
export function useDemoServer(): DemoFixture {
  let server: DemoServer | null = null;
  // Stores before clients: a store closes its own subscription first.
  const stores: { close(): void }[] = [];
  const clients: { close(): void }[] = [];
  before(async () => {
    server = await demoServer();
  });
  after(async () => {
    for (const thing of [...stores, ...clients]) thing.close();
    await server?.stop();
  });
  const fixture: DemoFixture = {
    get server(): DemoServer {
      if (!server) throw new Error("The demo server is not started yet: use it inside a test.");
      return server;
    },
    client(options = {}) {
      const c = createClient({ baseUrl: fixture.server.api, ...options });
      clients.push(c);
      return c;
    },
    async start(c, agent, startParams = {}) {
      const conversation = await c.startConversation(agent, startParams);
      stores.push(conversation);
      await conversation.waitFor((s) => s.loaded && s.connection === "subscribed", { timeout: 15_000 });
      return conversation;
    },
    keep(thing) {
      stores.push(thing);
      return thing;
    },
  };
  return fixture;
}
