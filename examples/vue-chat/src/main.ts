// The Vue chat example: the SDK's client, provided to the components by the root's setup().
import { createClient } from "django-ai-first-client";
import { provideClient } from "django-ai-first-client/vue";
import { createApp, defineComponent, h } from "vue";

import "../../shared/chat.css";
import { App } from "./App";

// Where the project mounts django_ai.conversations.urls (the demo: /api/conversations/). The page is
// served from the API's origin: the session cookie says who the visitor is, CSRF works as usual.
const client = createClient({ baseUrl: "/api/conversations/" });

const Root = defineComponent({
  name: "Root",
  setup() {
    provideClient(client);
    return () => h(App);
  },
});

createApp(Root).mount("#root");
