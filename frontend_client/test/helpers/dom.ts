/**
 * A DOM in Node for the React and Vue binding tests: a happy-dom window whose `window` and
 * `document` (with the element classes Vue tests a mount point against, and `navigator` where
 * Node has none) become globals as soon as this module is imported. Import it first: Vue's DOM
 * renderer reads `document`, and React DOM `navigator`, when they are imported. Only those globals: `fetch`, timers and the rest stay Node's (the SDK talks to the
 * real server). They stay until the test file's process ends (React may still read `window` in
 * work it scheduled before an unmount); `closeDom()` stops the window's own tasks.
 */

import { Window } from "happy-dom";

const window = new Window({ url: "http://localhost/" });
const globals = globalThis as Record<string, unknown>;
globals.window = window;
globals.document = window.document;
for (const name of ["Node", "Element", "HTMLElement", "SVGElement", "MathMLElement"]) {
  const value = (window as unknown as Record<string, unknown>)[name];
  if (value) globals[name] = value;
}
// Node 21 and later have their own.
if (!("navigator" in globalThis)) globals.navigator = window.navigator;

export async function closeDom(): Promise<void> {
  await window.happyDOM.close();
}
