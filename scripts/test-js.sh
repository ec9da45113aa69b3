#!/usr/bin/env bash
# The JavaScript part of `./dev test`: type-check the SDK and its tests (tsc --noEmit), build the SDK
# (tsc + the browser bundle) and the React and Vue examples, then run its tests and the browser tests
# against one demo server (runserver on a free port, temporary SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CLIENT="$ROOT/frontend_client"
export PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

[ -d "$CLIENT/node_modules" ] || (cd "$CLIENT" && npm ci --no-audit --no-fund --loglevel=error)
# The AI SDK (ai, @ai-sdk/react, react) that e2e/ai-sdk.test.ts bundles its useChat page from.
AI_SDK_CLIENT="$ROOT/tests/ai_sdk_client"
[ -d "$AI_SDK_CLIENT/node_modules" ] || (cd "$AI_SDK_CLIENT" && npm ci --no-audit --no-fund --loglevel=error)

# A type error in the SDK, its tests or the benchmarks fails the run before anything starts.
echo "==> Type-checking the SDK and its tests (tsc --noEmit)" >&2
(cd "$CLIENT" && npm run --silent typecheck)

echo "==> Building the SDK" >&2
(cd "$CLIENT" && node scripts/build.mjs && node scripts/build.mjs --tests)

# The React and Vue examples (examples/, type-checked, then built into examples/*/dist/), which the
# demo server serves at /examples/react/ and /examples/vue/ for e2e/examples.test.ts.
echo "==> Type-checking and building the examples" >&2
(cd "$CLIENT" && node scripts/build-examples.mjs --check)

# One demo server for every test file (each file can also start its own when run alone).
SERVER_LOG=$(mktemp)
node "$CLIENT/scripts/demo-server.mjs" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  rm -f "$SERVER_LOG"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  if grep -q '^ready ' "$SERVER_LOG"; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$SERVER_LOG" >&2; echo "The demo server did not start." >&2; exit 1; fi
  sleep 0.1
done
DJANGO_AI_TEST_SERVER=$(sed -n 's/^ready //p' "$SERVER_LOG" | head -1)
[ -n "$DJANGO_AI_TEST_SERVER" ] || { cat "$SERVER_LOG" >&2; echo "The demo server did not start in time." >&2; exit 1; }
export DJANGO_AI_TEST_SERVER

echo "==> SDK tests and browser test against $DJANGO_AI_TEST_SERVER" >&2
cd "$CLIENT"
node --test --test-concurrency=1 .test-build/test/*.test.js .test-build/e2e/*.test.js
