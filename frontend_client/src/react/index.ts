/**
 * React bindings (React 18 and 19): `import { ClientProvider, useConversation, useLive } from
 * "django-ai-first-client/react"`. See docs/frameworks.md.
 *
 * Hooks over the SDK's own objects, built on `useSyncExternalStore` (concurrent-safe: a render
 * never sees two versions of one store). A component renders at most once per animation frame for
 * a store however many chunks arrive (`bindings/frame.ts`). Renders have no side effect but
 * creating a conversation store the first time an id is asked for (shared, closed once nothing
 * shows it: `bindings/conversation.ts`); subscriptions start in React's commit, so StrictMode's
 * double render and double mount leave one subscription, not two.
 */

import { createContext, createElement, useCallback, useContext, useMemo, useSyncExternalStore, type ReactNode } from "react";

import type { Client } from "../client.js";
import type { ConversationOptions } from "../conversation.js";
import { UsageError } from "../errors.js";
import { entryFor, type ConversationTarget, type ConversationView } from "../bindings/conversation.js";
import { LiveBinding, liveKey, type LiveInput, type LiveView, type UseLiveOptions } from "../bindings/live.js";
import type { Row } from "../types.js";

export type { ConversationActions, ConversationTarget, ConversationView } from "../bindings/conversation.js";
export type { LiveInput, LiveView, UseLiveOptions } from "../bindings/live.js";

function clientContext() {
  const context = createContext<Client | null>(null);
  context.displayName = "DjangoAIClient";
  return context;
}

const ClientContext = /* @__PURE__ */ clientContext();

export interface ClientProviderProps {
  client: Client;
  children?: ReactNode;
}

/** Make `client` the one `useClient()`, `useConversation()` and `useLive()` use below it. */
export function ClientProvider({ client, children }: ClientProviderProps): ReactNode {
  return createElement(ClientContext.Provider, { value: client }, children);
}

function noClient(): never {
  throw new UsageError("No client: wrap the component in <ClientProvider client={createClient(...)}>, or pass { client }.", {
    code: "no_client",
  });
}

/** The client of the nearest `<ClientProvider>`; throws a `UsageError` when there is none. */
export function useClient(): Client {
  return useContext(ClientContext) ?? noClient();
}

export interface UseConversationOptions extends ConversationOptions {
  /** The client to use instead of the provider's. */
  client?: Client;
}

const noSubscription = () => () => undefined;
const nothing = () => null;

/**
 * The conversation `target` (a session id, or a store you made, e.g. the one `startConversation()`
 * returns) as a `ConversationView`: its snapshot (messages with their streaming text, widgets,
 * files, uploads, phase, busy, ...) and its methods bound (`send`, `cancel`, `retry`, ...), one
 * object per snapshot; null for a null/undefined/empty target. Components asking for the same
 * id share one store. `options` (e.g. `history`) apply when the store is created.
 *
 * Null too while rendering on a server (no `window`: nothing is fetched there) and while hydrating
 * what it rendered; the store is made once the page runs in the browser.
 */
export function useConversation(target: ConversationTarget, options: UseConversationOptions = {}): ConversationView | null {
  const provided = useContext(ClientContext);
  const client = options.client ?? provided;
  const { history } = options;
  const onServer = typeof window === "undefined";
  const entry = useMemo(
    () => (onServer ? null : entryFor(target, client, history !== undefined ? { history } : undefined, noClient)),
    [onServer, target, client, history],
  );
  const subscribe = useCallback((onChange: () => void) => (entry ? entry.subscribe(onChange) : noSubscription()), [entry]);
  const getSnapshot = useMemo(() => (entry ? () => entry.value.get() : nothing), [entry]);
  return useSyncExternalStore(subscribe, getSnapshot, nothing);
}

/**
 * A live queryset's rows, kept current: `useLive(client.sessions.orderBy("-updated_at"))` ->
 * `{ rows, loading, error, refetch, meta, included, connection }`. The live result starts when
 * the component mounts and stops when it unmounts. A queryset built anew at each render is the
 * same one while its client, model, query and options are (`liveKey()`); a change of any of
 * them stops the old live result and starts the new one.
 */
export function useLive<T extends Row>(source: LiveInput<T>, options: UseLiveOptions = {}): LiveView<T> {
  const key = liveKey(source as LiveInput, options);
  // The binding belongs to the key: the source and options it was made with are the key's.
  const binding = useMemo(() => new LiveBinding<T>(source, options), [key]);
  const subscribe = useCallback((onChange: () => void) => binding.subscribe(onChange), [binding]);
  const getSnapshot = useCallback(() => binding.value.get(), [binding]);
  return useSyncExternalStore(subscribe, getSnapshot, getSnapshot);
}
