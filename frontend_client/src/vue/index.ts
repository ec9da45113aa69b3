/**
 * Vue 3 bindings: `import { provideClient, useConversation, useLive } from
 * "django-ai-first-client/vue"`. See docs/frameworks.md.
 *
 * Composables returning refs (shallow: a snapshot is replaced, never changed in place, so Vue need
 * not proxy it). Each is cleaned up with the effect scope that called it (a component's unmount),
 * follows a ref or getter argument when it changes, and changes its refs at most once per
 * animation frame however many chunks arrive (`bindings/frame.ts`). Conversation stores are shared
 * with any other component showing the same id (`bindings/conversation.ts`).
 */

import {
  computed,
  hasInjectionContext,
  inject,
  onScopeDispose,
  provide,
  shallowRef,
  toValue,
  watch,
  type ComputedRef,
  type InjectionKey,
  type MaybeRefOrGetter,
  type ShallowRef,
} from "vue";

import type { Client } from "../client.js";
import type { ConversationOptions } from "../conversation.js";
import { UsageError } from "../errors.js";
import { entryFor, type ConversationTarget, type ConversationView } from "../bindings/conversation.js";
import { LiveBinding, liveKey, type LiveInput, type LiveView, type UseLiveOptions } from "../bindings/live.js";
import type { Row } from "../types.js";

export type { ConversationActions, ConversationTarget, ConversationView } from "../bindings/conversation.js";
export type { LiveInput, LiveView, UseLiveOptions } from "../bindings/live.js";

/** The injection key of the client: `app.provide(clientKey, client)` provides it to a whole app. */
export const clientKey: InjectionKey<Client> = /* @__PURE__ */ Symbol("django-ai-first-client");

/** Provide `client` to this component and its descendants (call it in `setup`). */
export function provideClient(client: Client): void {
  provide(clientKey, client);
}

function noClient(): never {
  throw new UsageError("No client: call provideClient(createClient(...)) in a parent's setup, app.provide(clientKey, client), or pass { client }.", {
    code: "no_client",
  });
}

function injectedClient(): Client | null {
  return hasInjectionContext() ? inject(clientKey, null) : null;
}

/** The provided client (call it in `setup`); throws a `UsageError` when none was provided. */
export function useClient(): Client {
  return injectedClient() ?? noClient();
}

export interface UseConversationOptions extends ConversationOptions {
  /** The client to use instead of the provided one. */
  client?: Client;
}

/**
 * The conversation `target` (a session id or a store you made; a ref or getter of one to follow
 * it) as a shallow ref of its `ConversationView`: the store's snapshot (messages with their
 * streaming text, widgets, files, uploads, phase, busy, ...) with its methods bound (`send`,
 * `cancel`, `retry`, ...); null while the target is null/undefined/empty. Stops showing the store
 * when the calling scope ends (a component's unmount). On a server (no `window`) it stays null and
 * nothing is made or fetched.
 */
export function useConversation(
  target: MaybeRefOrGetter<ConversationTarget>,
  options: UseConversationOptions = {},
): Readonly<ShallowRef<ConversationView | null>> {
  const client = options.client ?? injectedClient();
  const conversationOptions = options.history !== undefined ? { history: options.history } : undefined;
  const view = shallowRef<ConversationView | null>(null);
  let stop: (() => void) | null = null;
  // Rendering on a server: nothing is made or fetched there.
  if (onServer()) return view;
  watch(
    () => toValue(target),
    (current) => {
      stop?.();
      stop = null;
      const entry = entryFor(current, client, conversationOptions, noClient);
      if (!entry) {
        view.value = null;
        return;
      }
      stop = entry.subscribe(() => {
        view.value = entry.value.get();
      });
      view.value = entry.value.get();
    },
    { immediate: true },
  );
  onScopeDispose(() => {
    stop?.();
    stop = null;
  });
  return view;
}

/** What the Vue `useLive()` gives: each part of `LiveView` as a ref, and `refetch()`. */
export interface LiveRefs<T extends Row = Row> {
  rows: ComputedRef<T[]>;
  loading: ComputedRef<boolean>;
  error: ComputedRef<LiveView<T>["error"]>;
  meta: ComputedRef<LiveView<T>["meta"]>;
  included: ComputedRef<LiveView<T>["included"]>;
  connection: ComputedRef<LiveView<T>["connection"]>;
  /** The whole view, one object per change. */
  state: Readonly<ShallowRef<LiveView<T>>>;
  /** Read the rows again now. */
  refetch: () => Promise<void>;
}

/**
 * A live queryset's rows as refs: `const { rows, loading, error, refetch } =
 * useLive(() => client.sessions.filter({ title__icontains: search.value }))`. A getter or ref is
 * followed: the live result is started again only when the queryset's identity changes
 * (`liveKey()`: its client, model, query and options), not for every new queryset object. On a
 * server (no `window`) it gives the first state (`loading`, no rows) and fetches nothing.
 */
export function useLive<T extends Row>(source: MaybeRefOrGetter<LiveInput<T>>, options: UseLiveOptions = {}): LiveRefs<T> {
  let binding: LiveBinding<T> | null = null;
  let stop: (() => void) | null = null;
  const start = (input: LiveInput<T>): LiveView<T> => {
    const current = new LiveBinding<T>(input, options);
    stop?.();
    binding = current;
    stop = current.subscribe(() => {
      state.value = current.value.get();
    });
    return current.value.get();
  };
  const state = shallowRef<LiveView<T>>(undefined as unknown as LiveView<T>);
  if (onServer()) {
    // Rendering on a server: the first state (loading, no rows); nothing is fetched there.
    state.value = new LiveBinding<T>(toValue(source), options).value.get();
    return refsOf(state, () => Promise.resolve());
  }
  state.value = start(toValue(source));
  watch(
    () => liveKey(toValue(source) as LiveInput, options),
    () => {
      state.value = start(toValue(source));
    },
  );
  onScopeDispose(() => {
    stop?.();
    stop = null;
  });
  return refsOf(state, () => (binding ? binding.value.get().refetch() : Promise.resolve()));
}

function refsOf<T extends Row>(state: ShallowRef<LiveView<T>>, refetch: () => Promise<void>): LiveRefs<T> {
  return {
    rows: computed(() => state.value.rows),
    loading: computed(() => state.value.loading),
    error: computed(() => state.value.error),
    meta: computed(() => state.value.meta),
    included: computed(() => state.value.included),
    connection: computed(() => state.value.connection),
    state,
    refetch,
  };
}

/** No `window`: rendering on a server (Nuxt, `@vue/server-renderer`). */
function onServer(): boolean {
  return typeof window === "undefined";
}
