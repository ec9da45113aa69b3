// Build the SDK.
//   node scripts/build.mjs            everything: dist/ for npm (ESM + .d.ts through tsc, and the
//                                     one-file dist/browser/django-ai-client.js), the Python
//                                     package's static bundle with its .d.ts, the demo's markdown-it
//   node scripts/build.mjs --browser  what the demo page loads (./dev demo): the static bundle's
//                                     client.js + map and markdown-it; no tsc, no .d.ts
//   node scripts/build.mjs --static [--out DIR]
//                                     the three files the wheel ships (client.js, its map,
//                                     client.d.ts) into the package's static folder, or into DIR
//                                     (tests/test_packaging.py compares such a build with the wheel)
//   node scripts/build.mjs --tests    compile src/, test/ and e2e/ into .test-build/ for node --test
//
// The static bundle lives in the Python package (conversations/static/django_ai/conversations/,
// served as {% static "django_ai/conversations/client.js" %}) so `pip install django-ai-first`
// brings it; it is generated, never committed (.gitignore), and docs/installation.md "Releasing"
// builds it before the wheel.
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { generateDtsBundle } from "dts-bundle-generator";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const args = new Set(argv);
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
const packageStatic = join(root, "..", "conversations", "static", "django_ai", "conversations");
const demoVendor = join(root, "..", "backend", "static", "demo", "vendor");

function option(name) {
  const at = argv.indexOf(name);
  if (at === -1) return null;
  const value = argv[at + 1];
  if (!value || value.startsWith("--")) throw new Error(`${name} needs a value`);
  return resolve(value);
}

function runTsc(project) {
  execFileSync(process.execPath, [tsc, "-p", join(root, project)], { cwd: root, stdio: "inherit" });
}

const browserOptions = {
  entryPoints: [join(root, "src", "browser.ts")],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  sourcemap: true,
  minify: true,
  legalComments: "none",
  logLevel: "warning",
};

// The React and Vue bindings (src/react/, src/vue/ and their shared src/bindings/) are the
// "./react" and "./vue" exports, compiled by tsc into dist/react/ and dist/vue/ like the rest of
// src/; React and Vue are optional peer dependencies. The core stays framework-free: no bundle
// built from src/browser.ts (the core's whole API) may contain them.
const FRAMEWORK_INPUT = /(^|\/)src\/(react|vue|bindings)\/|(^|\/)node_modules\/(react|react-dom|vue|@vue)\//;

function checkFrameworkFree(metafile) {
  const found = Object.keys(metafile.inputs).filter((input) => FRAMEWORK_INPUT.test(input));
  if (found.length) {
    throw new Error(`The core bundle must not include the React/Vue bindings or a framework; it includes ${found.join(", ")}.`);
  }
}

async function npmBrowserBundle() {
  // One ESM file with pusher-js inside: the npm package's "./browser" export (for a page that
  // loads the package from a CDN). Its map points at ../../src/, which the package ships.
  const result = await build({ ...browserOptions, outfile: join(root, "dist", "browser", "django-ai-client.js"), metafile: true });
  checkFrameworkFree(result.metafile);
}

async function staticBundle(out) {
  // The same bundle as the Python package's static file. Its map names sources from the npm
  // package's root ("django-ai-first-client/src/client.ts") rather than from where it was
  // written, so the files are the same wherever they are built (the packaging test relies on it)
  // and mean something in site-packages; the sources' text is inside the map.
  const outfile = join(out, "client.js");
  const result = await build({ ...browserOptions, outfile, write: false, metafile: true });
  checkFrameworkFree(result.metafile);
  mkdirSync(out, { recursive: true });
  for (const file of result.outputFiles) {
    let contents = file.contents;
    if (file.path.endsWith(".map")) {
      const map = JSON.parse(file.text);
      // pusher-js's own map names its sources as URLs ("webpack://Pusher/..."): kept.
      map.sources = map.sources.map((source) =>
        /^[a-z][a-z0-9+.-]*:/i.test(source)
          ? source
          : "django-ai-first-client/" + relative(root, resolve(out, source)).split("\\").join("/"),
      );
      contents = JSON.stringify(map);
    }
    writeFileSync(file.path, contents);
  }
}

function staticTypes(out) {
  // One self-contained client.d.ts beside client.js (what src/browser.ts exports, nothing more),
  // so an editor or tsc reading client.js finds its types; the npm package's dist/*.d.ts are
  // many files importing each other.
  const [types] = generateDtsBundle(
    [{ filePath: join(root, "src", "browser.ts"), output: { noBanner: true, exportReferencedTypes: false } }],
    { preferredConfigPath: join(root, "tsconfig.json") },
  );
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "client.d.ts"), types);
}

async function demoMarkdown() {
  // markdown-it as one ESM file for the demo page, with the demo's own static files
  // (backend/static/demo/vendor/, generated); it is not part of the SDK, which renders no text.
  await build({
    entryPoints: ["markdown-it"],
    absWorkingDir: root,
    outfile: join(demoVendor, "markdown-it.js"),
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
  // Starts empty, so a test file that was removed or renamed is not run from an old build.
  rmSync(join(root, ".test-build"), { recursive: true, force: true });
  runTsc("tsconfig.test.json");
  // Compiled tests are ES modules.
  mkdirSync(join(root, ".test-build"), { recursive: true });
  writeFileSync(join(root, ".test-build", "package.json"), JSON.stringify({ type: "module" }) + "\n");
} else if (args.has("--static")) {
  const out = option("--out") ?? packageStatic;
  await staticBundle(out);
  staticTypes(out);
} else if (args.has("--browser")) {
  await staticBundle(packageStatic);
  await demoMarkdown();
} else {
  // dist/ starts empty, so npm pack never ships a file whose source is gone.
  rmSync(join(root, "dist"), { recursive: true, force: true });
  runTsc("tsconfig.json");
  await npmBrowserBundle();
  await staticBundle(packageStatic);
  staticTypes(packageStatic);
  await demoMarkdown();
}
