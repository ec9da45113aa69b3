"""Settings of the task workers tests/test_telemetry_worker.py starts: the tests' settings, and an
OpenTelemetry SDK writing every span to the file ``DJANGO_AI_TEST_SPAN_FILE`` names, configured
here as an application configures its SDK (docs/observability.md, "Traces")."""

import os

from tests.settings import *  # noqa: F403
from tests.telemetry_support import SPAN_FILE_ENV, configure_file_export

configure_file_export(os.environ[SPAN_FILE_ENV])
