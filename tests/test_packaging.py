"""The distributions as ``pip install django-ai-first`` and ``npm install django-ai-first-client``
deliver them.

The wheel is built from this checkout (setuptools, no build isolation: nothing is downloaded) and
unpacked into a folder of its own; a small project outside the repository, set up as
docs/installation.md says, then runs on that folder alone: ``check``, ``migrate``, a turn of the
seed's echo agent through ``ConversationService``, and the bridge's ``start/`` and query paths
through Django's test client. The checkout's editable install is not what gets imported: the child
prints the module's file and the test asserts it lies in the unpacked wheel.

The wheel ships the SDK's browser bundle as the app's static files (client.js, its source map and
client.d.ts). They are generated, not in git: the wheel fixture builds them first, as the release
steps do (docs/installation.md, "Releasing"), and a test compares the wheel's copy with a fresh
build; the project collects them with ManifestStaticFilesStorage and node imports the collected
bundle.

The npm tarball is made by ``npm pack`` (its prepack script builds dist/) and installed from the
file, offline, into a new TypeScript project outside the checkout, configured as a Vite project
(bundler resolution) and as a Node ESM one; tsc, the checkout's own, type-checks code that uses
the SDK's typed API against the installed package, and node runs the Node build.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "frontend_client"
TSC = CLIENT / "node_modules" / "typescript" / "bin" / "tsc"
# The SDK's browser bundle: where the wheel has it, and the files (build.mjs --static writes them).
BUNDLE_DIR = "django_ai/conversations/static/django_ai/conversations/"
BUNDLE_FILES = ("client.js", "client.js.map", "client.d.ts")

pytestmark = [pytest.mark.slow, pytest.mark.once]

SETTINGS = """
SECRET_KEY = "packaging-test"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "site_urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "django_ai.conversations",
]
STATIC_URL = "static/"
STATIC_ROOT = "collected"
# Production's storage: hashed names, and a bundle's sourceMappingURL must name a file that exists.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
DJANGO_AI = {"AGENTS": {"echo": "site_agents.EchoAgent"}}
"""

URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/conversations/", include("django_ai.conversations.urls")),
]
"""

AGENTS = """
from django_ai.conversations import ConversationAgent


class EchoAgent(ConversationAgent):
    async def get_response(self, message, request=None, **kwargs):
        return f"You said: {message}"
"""

SCRIPT = """
import json
import django

django.setup()

import django_ai.conversations as app
from django.template import engines
from django.test import Client
from django_ai.conversations.service import ConversationService

session = ConversationService.create_session("echo")
result = ConversationService.send_message(session_id=session.id, message="hello wheel")

client = Client()
started = client.post("/api/conversations/start/", {"agent_path": "echo"}, content_type="application/json")
query = client.post("/api/conversations/models/session/query/", {}, content_type="application/json")
sdk_url = engines["django"].from_string('{% load static %}{% static "django_ai/conversations/client.js" %}').render({})
print(json.dumps({
    "file": app.__file__,
    "result": result,
    "start": started.status_code,
    "sessions": len(query.json()["data"]),
    "sdk": sdk_url,
}))
"""

# A Node ESM script that imports the collected bundle. The bundle is for browsers: pusher-js inside
# it reads the global `self` as it loads, which Node lacks.
IMPORT_BUNDLE = """
globalThis.self = globalThis;
const sdk = await import(process.env.BUNDLE);
const client = sdk.createClient({ baseUrl: "http://127.0.0.1:9/api/conversations/" });
console.log(JSON.stringify({ createClient: typeof sdk.createClient, isRateLimited: typeof sdk.isRateLimited,
  query: typeof client.sessions.filter({ agent_path: "echo" }).fetch }));
"""


def _run(args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def _build_bundle(*args: str) -> None:
    assert shutil.which("node") and TSC.exists(), (
        "Node.js 20+ and the SDK's npm packages are needed: run ./dev setup (or npm ci in frontend_client/)."
    )
    _run(["node", "scripts/build.mjs", "--static", *args], cwd=CLIENT)


def _listed_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_listed_in_pyproject():
    # The folder is mapped by hand: a sub-package left out of the list would be missing from the wheel.
    on_disk = {
        "django_ai.conversations"
        + "".join("." + part for part in init.parent.relative_to(ROOT / "conversations").parts)
        for init in (ROOT / "conversations").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk == _listed_packages()


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    # The release steps: the bundle first (into conversations/static/), then the sdist.
    _build_bundle()
    out = tmp_path_factory.mktemp("sdist")
    _run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})"], cwd=ROOT)
    (built,) = out.glob("django_ai_first-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory) -> Path:
    # Built from the unpacked sdist, as `python -m build` does: there is no Node there, nor the
    # checkout's build/ folder, whose leftovers (a module or migration deleted since) setuptools
    # would pack into a wheel built from the checkout.
    tree = tmp_path_factory.mktemp("sdist-tree")
    with tarfile.open(sdist) as archive:
        archive.extractall(tree, filter="data")
    (source,) = tree.iterdir()
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        cwd=tree,
    )
    (built,) = out.glob("django_ai_first-*.whl")
    return built


def test_the_wheel_holds_every_module_and_no_project_folder(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {
        "django_ai/conversations/" + str(path.relative_to(ROOT / "conversations"))
        for path in (ROOT / "conversations").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert sources <= names, sorted(sources - names)
    assert "django_ai/conversations/py.typed" in names
    assert any(n.startswith("django_ai/conversations/migrations/0001_") for n in names)
    # The demo project, its agents and the tests stay out of the distribution.
    assert not [
        n for n in names if n.split("/")[0] in {"backend", "agents", "tests", "conversations", "frontend_client"}
    ]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Name: django-ai-first" in text
    assert "License-Expression: MIT" in text or "License: MIT" in text
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the MIT text ships with the wheel"
    assert "Requires-Python: >=3.12" in text


def test_the_wheel_ships_a_current_sdk_bundle_as_static_files(wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {BUNDLE_DIR + name for name in BUNDLE_FILES} <= names, sorted(n for n in names if "static" in n)
    # What a build from the sources gives now, byte for byte (a stale copy left in setuptools'
    # build/ folder, or a bundle built from other sources, would differ).
    fresh = tmp_path / "fresh"
    _build_bundle("--out", str(fresh))
    for name in BUNDLE_FILES:
        assert zipfile.ZipFile(wheel).read(BUNDLE_DIR + name) == (fresh / name).read_bytes(), name
    bundle = (fresh / "client.js").read_text()
    assert bundle.rstrip().endswith("//# sourceMappingURL=client.js.map")
    assert "export declare function createClient(" in (fresh / "client.d.ts").read_text()


def test_the_sdist_holds_the_sdk_bundle_and_no_frontend_sources(sdist):
    # So a wheel built from it needs no Node.
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"conversations/static/django_ai/conversations/" + name for name in BUNDLE_FILES} <= names
    # (setuptools adds tests/test*.py to every sdist; the SDK's sources stay out.)
    assert not [n for n in names if n.split("/")[0] in {"frontend_client", "node_modules", "backend"}]


def test_a_project_outside_the_checkout_runs_on_the_wheel_alone(wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    project = tmp_path / "project"
    project.mkdir()
    (project / "site_settings.py").write_text(SETTINGS)
    (project / "site_urls.py").write_text(URLS)
    (project / "site_agents.py").write_text(AGENTS)
    (project / "run.py").write_text(SCRIPT)
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{site}:{project}",
        "DJANGO_SETTINGS_MODULE": "site_settings",
        "HOME": str(tmp_path),
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("-m", "django", "check", "--fail-level", "ERROR")
    run("-m", "django", "migrate", "--noinput", "-v", "0")
    run("-m", "django", "collectstatic", "--noinput", "-v", "0")
    report = json.loads(run("run.py").strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(site), report["file"]
    assert report["result"]["status"] == "success"
    assert report["result"]["response"] == "You said: hello wheel"
    assert report["start"] == 201
    assert report["sessions"] == 1

    # The SDK's browser bundle as a page gets it: collected under a hashed name, its source map
    # beside it, and a module that exports the SDK.
    assert report["sdk"].startswith("/static/django_ai/conversations/client.") and report["sdk"].endswith(".js")
    collected = project / "collected" / report["sdk"].removeprefix("/static/")
    map_name = collected.read_text().rstrip().rsplit("//# sourceMappingURL=", 1)[1]
    assert map_name.startswith("client.js.") and (collected.parent / map_name).is_file()
    assert (project / "collected" / "django_ai" / "conversations" / "client.d.ts").is_file()
    loaded = _run(
        ["node", "--input-type=module", "-e", IMPORT_BUNDLE],
        cwd=project,
        timeout=60,
        env={**env, "BUNDLE": str(collected)},
    )
    assert json.loads(loaded.strip().splitlines()[-1]) == {
        "createClient": "function",
        "isRateLimited": "function",
        "query": "function",
    }


# What a Vite project's main.ts might do with the SDK, each call typed; run by node in the Node
# ESM project (building a client and a query sends nothing).
CONSUMER_MAIN = """
import { createClient, isRateLimited, type MessageRow, type Row, type WireTypes } from "django-ai-first-client";

interface OrderRow extends Row {
  id: number;
  total: WireTypes["decimal"];
}

const client = createClient({ baseUrl: "http://127.0.0.1:9/api/conversations/", realtime: "none" });
const latest: Promise<MessageRow[]> = client.messages
  .filter({ message_type: "agent" })
  .orderBy("-timestamp")
  .limit(5)
  .fetch();
latest.catch(() => undefined);
const paid = client.model<OrderRow>("order").filter({ total__gte: "10.00" });

export async function totals(): Promise<string[]> {
  try {
    return (await paid.fetch()).map((order) => order.total);
  } catch (error) {
    if (isRateLimited(error)) return [];
    throw error;
  }
}

export function follow(render: (text: string) => void): () => void {
  return client.sessions
    .orderBy("-updated_at")
    .limit(20)
    .live(({ rows }) => render(rows.map((row) => row.title).join(", ")));
}

console.log(JSON.stringify({ createClient: typeof createClient, follow: typeof follow, paid: typeof paid.fetch }));
"""

# A React component on the React binding, rendered on a server (no window: nothing is fetched;
# useConversation is null there, useLive gives its first state). No JSX: plain tsc settings.
CONSUMER_REACT = """
import { createClient, type SessionRow } from "django-ai-first-client";
import { ClientProvider, useClient, useConversation, useLive } from "django-ai-first-client/react";
import type { ConversationView } from "django-ai-first-client/react";
import { createElement } from "react";
import { renderToString } from "react-dom/server";

function Chat({ id }: { id: string }) {
  const chat: ConversationView | null = useConversation(id);
  const { rows, loading } = useLive<SessionRow>(useClient().sessions.orderBy("-updated_at"));
  const titles: string[] = rows.map((row) => row.title);
  return createElement("p", null, `${chat?.phase ?? "none"} ${loading ? "loading" : titles.join(",")}`);
}

const client = createClient({ baseUrl: "http://127.0.0.1:9/api/conversations/", realtime: "none" });
console.log(renderToString(createElement(ClientProvider, { client }, createElement(Chat, { id: "some-id" }))));
"""

# The same with the Vue binding's composables and Vue's server renderer.
CONSUMER_VUE = """
import { createClient, type SessionRow } from "django-ai-first-client";
import { provideClient, useConversation, useLive } from "django-ai-first-client/vue";
import { createSSRApp, defineComponent, h, ref } from "vue";
import { renderToString } from "vue/server-renderer";

const client = createClient({ baseUrl: "http://127.0.0.1:9/api/conversations/", realtime: "none" });
const app = createSSRApp(
  defineComponent({
    setup() {
      provideClient(client);
      const id = ref<string | null>("some-id");
      const chat = useConversation(id);
      const { rows, loading } = useLive<SessionRow>(() => client.sessions.orderBy("-updated_at"));
      return () => h("p", `${chat.value?.phase ?? "none"} ${loading.value} ${rows.value.length}`);
    },
  }),
);
console.log(await renderToString(app));
"""

# A page of the Vite project that uses the one-file browser bundle (pusher-js inside).
CONSUMER_PAGE = """
import { createClient } from "django-ai-first-client/browser";

export const client = createClient({ baseUrl: "/api/conversations/" });
export const started: Promise<string> = client
  .startConversation("support", { tier: "premium" })
  .then((c) => c.sessionId);
"""

COMPILER_OPTIONS = {
    "target": "ES2022",
    "lib": ["ES2022", "DOM", "DOM.Iterable"],
    "types": [],
    "strict": True,
    "skipLibCheck": False,
    "isolatedModules": True,
    "verbatimModuleSyntax": True,
}


def test_the_npm_tarball_installs_into_a_typescript_project(tmp_path):
    assert shutil.which("npm") and TSC.exists(), (
        "npm and the SDK's npm packages are needed: run ./dev setup (or npm ci in frontend_client/)."
    )
    packed = tmp_path / "packed"
    packed.mkdir()
    (report,) = json.loads(_run(["npm", "pack", "--json", "--pack-destination", str(packed)], cwd=CLIENT, timeout=600))
    # One version for the two packages (and django_ai.conversations.__version__).
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert report["name"] == "django-ai-first-client" and report["version"] == version
    assert f'__version__ = "{version}"' in (ROOT / "conversations" / "__init__.py").read_text()
    package = json.loads((CLIENT / "package.json").read_text())
    assert package["license"] == "MIT"
    assert (
        package["repository"]["url"].endswith("/django-ai-first.git")
        and package["repository"]["directory"] == "frontend_client"
    )
    files = {entry["path"] for entry in report["files"]}
    assert {
        "package.json",
        "README.md",
        "LICENSE",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/browser.d.ts",
        "dist/browser/django-ai-client.js",
    } <= files
    # Only the SDK: not its tests, build scripts or the demo's markdown-it.
    assert not [
        f
        for f in files
        if f.split("/")[0] in {"test", "e2e", "bench", "scripts", "node_modules", ".test-build"} or "markdown-it" in f
    ]

    project = tmp_path / "consumer"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "consumer", "private": True, "type": "module"}))
    _run(["npm", "install", "--offline", "--no-audit", "--no-fund", str(packed / report["filename"])], cwd=project)
    (project / "main.ts").write_text(CONSUMER_MAIN)
    (project / "page.ts").write_text(CONSUMER_PAGE)
    vite = {
        "compilerOptions": {**COMPILER_OPTIONS, "module": "ESNext", "moduleResolution": "bundler", "noEmit": True},
        "include": ["main.ts", "page.ts"],
    }
    (project / "tsconfig.json").write_text(json.dumps(vite))
    node = {
        "compilerOptions": {**COMPILER_OPTIONS, "module": "NodeNext", "moduleResolution": "NodeNext", "outDir": "out"},
        "include": ["main.ts"],
    }
    (project / "tsconfig.node.json").write_text(json.dumps(node))
    _run(["node", str(TSC), "-p", "tsconfig.json"], cwd=project)
    _run(["node", str(TSC), "-p", "tsconfig.node.json"], cwd=project)
    ran = _run(["node", "out/main.js"], cwd=project, timeout=60)
    assert json.loads(ran.strip().splitlines()[-1]) == {
        "createClient": "function",
        "follow": "function",
        "paid": "function",
    }
    _check_framework_bindings(project, files)


# The packages a React or Vue project installs beside the SDK (its optional peer dependencies, and
# Node's types, which vue/server-renderer's name): linked from frontend_client/node_modules, where
# ./dev setup put them (nothing is downloaded).
FRAMEWORK_PACKAGES = ("react", "react-dom", "@types/react", "@types/react-dom", "vue", "@types/node")
# An import of a framework, or of the bindings' own folders, in a compiled module of the core.
FRAMEWORK_IMPORT = re.compile(
    r"""(?:from|import)\s*\(?\s*["'](?:react|react-dom|vue|@vue/[^"']+|[./]+(?:react|vue|bindings)/[^"']*)["']"""
)


def _check_framework_bindings(project: Path, files: set[str]) -> None:
    """The ``./react`` and ``./vue`` subpath exports (docs/frameworks.md) as a React or Vue project
    gets them from the tarball: shipped with their types, type-checked in the Vite and the Node
    ESM configurations, and rendered on a server by the project's own React and Vue (one copy of
    each: the provider's client reaches the hooks). The core's modules import neither framework
    nor the bindings, so ``import "django-ai-first-client"`` works without React or Vue."""
    assert {
        "dist/react/index.js",
        "dist/react/index.d.ts",
        "dist/vue/index.js",
        "dist/vue/index.d.ts",
        "dist/bindings/frame.js",
    } <= files
    installed = project / "node_modules" / "django-ai-first-client"
    package = json.loads((installed / "package.json").read_text())
    assert package["peerDependenciesMeta"]["react"] == {"optional": True}
    assert package["peerDependenciesMeta"]["vue"] == {"optional": True}
    core = [
        path
        for path in (installed / "dist").rglob("*.js")
        if path.relative_to(installed / "dist").parts[0] not in {"react", "vue", "bindings", "browser"}
    ]
    assert core and [str(p) for p in core if FRAMEWORK_IMPORT.search(p.read_text())] == []

    for name in FRAMEWORK_PACKAGES:
        link = project / "node_modules" / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(CLIENT / "node_modules" / name, target_is_directory=True)
    (project / "react.ts").write_text(CONSUMER_REACT)
    (project / "vue.ts").write_text(CONSUMER_VUE)
    for config in ("tsconfig.json", "tsconfig.node.json"):
        settings = json.loads((project / config).read_text())
        settings["include"] = [*settings["include"], "react.ts", "vue.ts"]
        settings["compilerOptions"]["types"] = ["node"]
        (project / config).write_text(json.dumps(settings))
    _run(["node", str(TSC), "-p", "tsconfig.json"], cwd=project)
    _run(["node", str(TSC), "-p", "tsconfig.node.json"], cwd=project)
    react = _run(["node", "out/react.js"], cwd=project, timeout=60)
    assert react.strip().splitlines()[-1] == "<p>none loading</p>"
    vue = _run(["node", "out/vue.js"], cwd=project, timeout=60)
    assert vue.strip().splitlines()[-1] == "<p>none true 0</p>"
