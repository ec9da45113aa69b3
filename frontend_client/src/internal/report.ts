/**
 * An error thrown by a caller's listener (a render function, a raw event handler). The SDK keeps
 * going (the other listeners still run, the realtime connection stays up) and reports the error
 * where the platform reports uncaught errors: `reportError` in browsers (the page's `error` event
 * and the console), else `console.error`.
 */
export function reportListenerError(error: unknown): void {
  const report = (globalThis as { reportError?: (error: unknown) => void }).reportError;
  if (typeof report === "function") report(error);
  else console.error("django-ai-first-client: a listener threw:", error);
}

/** Call `listener` with `args`, reporting (not propagating) what it throws. */
export function callListener<A extends unknown[]>(listener: (...args: A) => void, ...args: A): void {
  try {
    listener(...args);
  } catch (error) {
    reportListenerError(error);
  }
}
