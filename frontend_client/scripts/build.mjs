// Build the SDK.
//   node scripts/build.mjs            dist/ (ESM + .d.ts through tsc) and the browser bundle
//   node scripts/build.mjs --browser  only the browser bundles (what the demo page loads)
//   node scripts/build.mjs --tests    compile src/, test/ and e2e/ into .test-build/ for node --test
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

function runTsc(project) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project)], { cwd: root, stdio: "inherit" });
}

async function browserBundle() {
  // One ESM file with pusher-js inside, served by the demo at /static/sdk/django-ai-client.js.
  await build({
    entryPoints: [join(root, "src", "browser.ts")],
    outfile: join(root, "dist", "browser", "django-ai-client.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    sourcemap: true,
    minify: true,
    legalComments: "none",
    logLevel: "warning",
  });
}

async function demoMarkdown() {
  // markdown-it as one ESM file for the demo page (served at /static/sdk/markdown-it.js); it is
  // not part of the SDK, which renders no text (package.json "files" leaves it out).
  await build({
    entryPoints: ["markdown-it"],
    absWorkingDir: root,
    outfile: join(root, "dist", "browser", "markdown-it.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    sourcemap: true,
    minify: true,
    legalComments: "eof",
    logLevel: "warning",
  });
}

if (args.has("--tests")) {
  runTsc("tsconfig.test.json");
  // Compiled tests are ES modules.
  mkdirSync(join(root, ".test-build"), { recursive: true });
  writeFileSync(join(root, ".test-build", "package.json"), JSON.stringify({ type: "module" }) + "\n");
} else if (args.has("--browser")) {
  await browserBundle();
  await demoMarkdown();
} else {
  runTsc("tsconfig.json");
  await browserBundle();
  await demoMarkdown();
}
