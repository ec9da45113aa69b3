// The React chat example: the SDK's client, given to the components by <ClientProvider>.
import { createClient } from "django-ai-first-client";
import { ClientProvider } from "django-ai-first-client/react";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";

import "../../shared/chat.css";
import { App } from "./App";

// Where the project mounts django_ai.conversations.urls (the demo: /api/conversations/). The page is
// served from the API's origin: the session cookie says who the visitor is, CSRF works as usual.
const client = createClient({ baseUrl: "/api/conversations/" });

createRoot(document.getElementById("root") as HTMLElement).render(
  <StrictMode>
    <ClientProvider client={client}>
      <App />
    </ClientProvider>
  </StrictMode>,
);
