/**
 * Entry of the browser bundle (`dist/browser/django-ai-client.js`): the whole SDK with pusher-js
 * inside, so a page can `import { createClient } from ".../django-ai-client.js"` with no build
 * step and talk to a Pusher (or soketi) backend as well as to the Local (SSE) one.
 */

import Pusher from "pusher-js";
import { createClient as createBaseClient, type Client, type ClientOptions } from "./client.js";
import { autoRealtime } from "./realtime/hub.js";
import type { PusherConstructor } from "./realtime/pusher.js";

export * from "./index.js";

/** `createClient` whose default realtime uses the bundled pusher-js when the server uses Pusher. */
export function createClient(options: ClientOptions): Client {
  return createBaseClient({
    ...options,
    realtime: options.realtime ?? autoRealtime({ Pusher: Pusher as unknown as PusherConstructor }),
  });
}
