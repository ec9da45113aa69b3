"""Settings of the processes ``bench_load`` starts (uvicorn web processes, ``db_worker``): the
benchmark settings, then every key of the JSON object in ``BENCH_LOAD_SETTINGS`` (the throw-away
database, the task backend, ``DJANGO_AI`` with soketi's keys), which the benchmark writes."""

import json
import os

from tests.bench.settings import *  # noqa: F403

globals().update(json.loads(os.environ["BENCH_LOAD_SETTINGS"]))
