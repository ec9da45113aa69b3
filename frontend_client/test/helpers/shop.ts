/** The project models of tests/shop (installed by tests.settings) as the SDK tests read them. */

import type { Client, ClientOptions, Row, WireTypes } from "../../src/index.js";
import type { DemoFixture } from "./fixture.js";
import { signIn } from "./server.js";

/** `shop.Order`: an integer pk, owned by a user. */
export interface OrderRow extends Row {
  id: number;
  total: WireTypes["decimal"];
  big: WireTypes["integer"];
  duration: WireTypes["duration"] | null;
  reference: WireTypes["uuid"];
  status: string;
}

/** `shop.Ticket`: a string pk called `code`, in a conversation. */
export interface TicketRow extends Row {
  code: string;
  session: string;
  subject: string;
  order: number | null;
}

/** A client signed in as the demo user (its session cookie), sending the CSRF token as a page does. */
export async function signedInClient(demo: DemoFixture, options: Partial<ClientOptions> = {}): Promise<Client> {
  const browser = await signIn(demo.server.origin);
  return demo.client({ fetch: browser.fetch, headers: { "X-CSRFToken": browser.jar.get("csrftoken") ?? "" }, ...options });
}
