/**
 * Entry of the browser bundle: the whole SDK with pusher-js inside, so a page can
 * `import { createClient } from ".../client.js"` with no build step and talk to a Pusher (or
 * soketi) backend as well as to the Local (SSE) one. The Python package ships it as the static
 * file `django_ai/conversations/client.js`; the npm package as `django-ai-first-client/browser`.
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
