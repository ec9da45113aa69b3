// Build the chat examples of examples/ (docs/examples.md) with esbuild:
//   node scripts/build-examples.mjs           install examples/' npm packages (React, Vue) when its
//                                             lock changed, then build each example into
//                                             examples/<name>/dist/ (index.html, app.js, app.css)
//   node scripts/build-examples.mjs --check   the same, after type-checking the examples (tsc)
//
// The examples import the SDK as a project does ("django-ai-first-client", ".../react",
// ".../vue"); examples/tsconfig.json maps those names to frontend_client/src/, so a build needs no
// npm pack and always has the SDK of the checkout. esbuild follows the same `paths`.
// The demo server serves the result at /examples/react/ and /examples/vue/ (backend/demo_urls.py),
// same origin as the API, so the session cookie and CSRF work as for the demo page.
// dist/ is generated, never committed (.gitignore); scripts/test-js.sh runs this before the tests.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const examples = join(root, "..", "examples");
const args = new Set(process.argv.slice(2));

/** Each example: its folder, and the entry module under its src/. */
const EXAMPLES = [
  { name: "react-chat", entry: "main.tsx" },
  { name: "vue-chat", entry: "main.ts" },
];

function installPackages() {
  // The same stamp as ./dev's ensure_node_packages: `npm ci` again only when package.json or the
  // lock changed, so running this after ./dev setup (or twice) installs nothing.
  const hash = createHash("sha256");
  for (const file of ["package.json", "package-lock.json"]) hash.update(readFileSync(join(examples, file)));
  const want = hash.digest("hex").slice(0, 16);
  const stamp = join(examples, "node_modules", ".installed");
  if (existsSync(stamp) && readFileSync(stamp, "utf8").trim() === want) return;
  process.stderr.write("==> Installing the examples' npm packages (npm ci in examples/)\n");
  execFileSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: examples, stdio: "inherit" });
  writeFileSync(stamp, want + "\n");
}

/**
 * One copy of each framework in a bundle: the SDK's bindings (frontend_client/src/react, /vue)
 * would otherwise find React or Vue in frontend_client/node_modules (the SDK's own test copies)
 * and the example its own in examples/node_modules; two Reacts break hooks, two Vues break
 * provide/inject. Every import of them resolves from examples/.
 */
const oneFrameworkCopy = {
  name: "one-framework-copy",
  setup(plugin) {
    plugin.onResolve({ filter: /^(react|react-dom|scheduler|vue|@vue\/[^/]+)(\/.*)?$/ }, (resolveArgs) => {
      if (resolveArgs.pluginData?.fromExamples) return undefined;
      return plugin.resolve(resolveArgs.path, {
        kind: resolveArgs.kind,
        resolveDir: examples,
        pluginData: { fromExamples: true },
      });
    });
  },
};

async function buildExample({ name, entry }) {
  const folder = join(examples, name);
  const out = join(folder, "dist");
  // Starts empty, so no file of an older build is served.
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: { app: join(folder, "src", entry) },
    outdir: out,
    absWorkingDir: examples,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["es2022"],
    sourcemap: true,
    minify: true,
    legalComments: "eof",
    logLevel: "warning",
    plugins: [oneFrameworkCopy],
    define: {
      "process.env.NODE_ENV": '"production"',
      // Vue's esm-bundler build asks the bundler for its feature flags.
      __VUE_OPTIONS_API__: "false",
      __VUE_PROD_DEVTOOLS__: "false",
      __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
    },
  });
  copyFileSync(join(folder, "index.html"), join(out, "index.html"));
}

installPackages();
if (args.has("--check")) {
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", join(examples, "tsconfig.json"), "--noEmit"], { stdio: "inherit" });
  } catch {
    process.stderr.write("The examples do not type-check (above).\n");
    process.exit(1);
  }
}
for (const example of EXAMPLES) await buildExample(example);
process.stderr.write(`==> Built ${EXAMPLES.map((e) => `examples/${e.name}/dist/`).join(", ")}\n`);
