/**
 * The conversation stores the React and Vue bindings share, one per client and session id, and the
 * view a component gets: the store's snapshot with the store's methods bound.
 *
 * A component asks for a conversation by id while it renders. The first one to ask creates the
 * store (`client.conversation(id)`: it subscribes to the channel and reads the rows); the others,
 * and a second render of the same component (React's StrictMode renders twice), get the same
 * store. Components that show it subscribe to it; when the last one stops, and no component has
 * subscribed again after `RELEASE_AFTER_MS` (a remount, StrictMode's unmount-mount, a render whose
 * commit is still coming), the store is closed and forgotten. A store that a render created but
 * that nothing subscribes to is closed the same way. A store the caller made itself
 * (`useConversation(conversation)`) is shared the same way but never closed by the bindings.
 */

import type { Client } from "../client.js";
import type { Conversation, ConversationOptions } from "../conversation.js";
import type { ConversationState } from "../store/state.js";
import { FrameValue } from "./frame.js";

/** How long (ms) a store nothing shows stays open for a component that may show it again. */
export const RELEASE_AFTER_MS = 1000;

type Methods<T> = {
  [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K];
};

/** The store's methods a view carries, bound (`send`, `cancel`, `retry`, `upload`, ...): every public
 * method of `Conversation` but those that manage its life, which the bindings own. */
export type ConversationActions = Omit<Methods<Conversation>, "subscribe" | "close" | "getState">;

/**
 * What `useConversation()` gives: the store's snapshot (`ConversationState`: messages with their
 * streaming text, widgets, files, uploads, phase, busy, connection, error, and whatever else the
 * store shows), its methods bound, and the store itself as `conversation`. One object per snapshot:
 * it stays the same object until the store changes.
 */
export type ConversationView = ConversationState & ConversationActions & { readonly conversation: Conversation };

/** Methods that are not actions: the store's life (owned by the bindings) and its own internals. */
const NOT_ACTIONS = new Set(["constructor", "subscribe", "close", "getState", "dispatch", "notify", "onEvent", "onChannelState"]);

/** Every method of the store's class (and its bases) but `NOT_ACTIONS`, bound to `conversation`. */
function bindActions(conversation: Conversation): ConversationActions {
  const actions: Record<string, unknown> = {};
  for (let proto = Object.getPrototypeOf(conversation); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (NOT_ACTIONS.has(name) || name in actions) continue;
      const value = Object.getOwnPropertyDescriptor(proto, name)?.value;
      if (typeof value === "function") actions[name] = value.bind(conversation);
    }
  }
  return actions as ConversationActions;
}

/** One store as the bindings share it. */
export class ConversationEntry {
  readonly value: FrameValue<ConversationView>;
  private conversation: Conversation;
  private actions: ConversationActions;
  private stop: (() => void) | null = null;
  private users = 0;
  private releaseTimer: ReturnType<typeof setTimeout> | null = null;
  private lastState: ConversationState | null = null;
  private lastView: ConversationView | null = null;
  /** The store was closed here: nothing showed it for `RELEASE_AFTER_MS`. */
  private released = false;

  /** `create` makes the store (again, if it was released before a component subscribed); null:
   * the caller's own store, never closed here. `registered(true)` puts the entry in the shared
   * map (again), `registered(false)` takes it out. */
  constructor(
    conversation: Conversation,
    private readonly create: (() => Conversation) | null,
    private readonly registered: (yes: boolean) => void,
  ) {
    this.conversation = conversation;
    this.actions = bindActions(conversation);
    this.value = new FrameValue(() => this.view());
    this.scheduleRelease();
  }

  /** The view of the store's current snapshot (the same object while it has not changed). */
  private view(): ConversationView {
    const state = this.conversation.getState();
    if (state !== this.lastState || !this.lastView) {
      this.lastState = state;
      this.lastView = { ...state, ...this.actions, conversation: this.conversation };
    }
    return this.lastView;
  }

  /** Show the store: `listener` is called in each frame where its snapshot changed. */
  subscribe(listener: () => void): () => void {
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    this.releaseTimer = null;
    if (this.released) this.reopen();
    const stopValue = this.value.subscribe(listener);
    this.users += 1;
    if (this.users === 1) {
      this.stop = this.conversation.subscribe(() => this.value.changed());
      // What the component rendered may be older than the store by now.
      this.value.update();
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      stopValue();
      this.users -= 1;
      if (this.users === 0) {
        this.stop?.();
        this.stop = null;
        this.scheduleRelease();
      }
    };
  }

  /** The store was released while a render waited for its commit: make a new one. */
  private reopen(): void {
    if (!this.create) return;
    this.released = false;
    this.conversation = this.create();
    this.registered(true);
    this.actions = bindActions(this.conversation);
    this.lastView = null;
    this.scheduleRelease();
  }

  private scheduleRelease(): void {
    if (!this.create || this.users > 0) return;
    if (this.releaseTimer) clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(() => {
      this.releaseTimer = null;
      if (this.users > 0) return;
      this.released = true;
      this.conversation.close();
      this.registered(false);
    }, RELEASE_AFTER_MS);
  }
}

const byClient = new WeakMap<Client, Map<string, ConversationEntry>>();
const byStore = new WeakMap<Conversation, ConversationEntry>();

/** The shared store of `sessionId` on `client` (`options` apply when it is created). */
export function conversationEntry(client: Client, sessionId: string, options?: ConversationOptions): ConversationEntry {
  let entries = byClient.get(client);
  if (!entries) {
    entries = new Map();
    byClient.set(client, entries);
  }
  const found = entries.get(sessionId);
  if (found) return found;
  const create = () => client.conversation(sessionId, options);
  const map = entries;
  const entry: ConversationEntry = new ConversationEntry(create(), create, (yes) => {
    if (yes && !map.has(sessionId)) map.set(sessionId, entry);
    else if (!yes && map.get(sessionId) === entry) map.delete(sessionId);
  });
  map.set(sessionId, entry);
  return entry;
}

/** The entry of a store the caller made (`client.startConversation()` returns one). */
export function ownStoreEntry(conversation: Conversation): ConversationEntry {
  let entry = byStore.get(conversation);
  if (!entry) {
    entry = new ConversationEntry(conversation, null, () => undefined);
    byStore.set(conversation, entry);
  }
  return entry;
}

/** What a binding is given to find a conversation: a session id, a store, or nothing (yet). */
export type ConversationTarget = string | Conversation | null | undefined;

/** The entry of `target`, or null; `client` is needed for a session id. */
export function entryFor(
  target: ConversationTarget,
  client: Client | null,
  options: ConversationOptions | undefined,
  needClient: () => never,
): ConversationEntry | null {
  if (target === null || target === undefined || target === "") return null;
  if (typeof target !== "string") return ownStoreEntry(target);
  return conversationEntry(client ?? needClient(), target, options);
}
