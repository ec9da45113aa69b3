/**
 * The React example of docs/frameworks.md type-checks as written against the bindings' types
 * (strict TypeScript, the JSX of React 19), the package names mapped to this checkout's sources.
 * No server: it is the page's code, not its behaviour (react-bindings.test.ts renders the hooks).
 */

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import ts from "typescript";

import { repoRoot } from "./helpers/server.js";

const client = join(repoRoot, "frontend_client");

test("docs/frameworks.md's React example type-checks", () => {
  const page = readFileSync(join(repoRoot, "docs", "frameworks.md"), "utf8");
  const blocks = [...page.matchAll(/```tsx\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  assert.equal(blocks.length, 1, "docs/frameworks.md has one tsx example");
  const dir = mkdtempSync(join(tmpdir(), "frameworks-doc-"));
  try {
    const file = join(dir, "example.tsx");
    writeFileSync(file, blocks[0] as string);
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      jsx: ts.JsxEmit.ReactJSX,
      lib: ["lib.es2022.d.ts", "lib.dom.d.ts", "lib.dom.iterable.d.ts"],
      types: [],
      skipLibCheck: true,
      typeRoots: [join(client, "node_modules", "@types")],
      paths: {
        "django-ai-first-client": [join(client, "src", "index.ts")],
        "django-ai-first-client/react": [join(client, "src", "react", "index.ts")],
        "react": [join(client, "node_modules", "@types", "react", "index.d.ts")],
        "react/jsx-runtime": [join(client, "node_modules", "@types", "react", "jsx-runtime.d.ts")],
      },
    });
    const problems = ts
      .getPreEmitDiagnostics(program)
      .map((d) => `${d.file ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}: ` : ""}${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
    assert.deepEqual(problems, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
