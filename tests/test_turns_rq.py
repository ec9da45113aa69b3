"""Turns on RQ: django-tasks-rq stores the turn task in Redis; a real ``manage.py rqworker``
process (django-rq, with django-tasks-rq's job class) runs it against the test database.

Needs a Redis server: REDIS_URL (CI sets it; default redis://127.0.0.1:6379/0). The queue name is
unique per run, so parallel runs sharing one Redis do not see each other's tasks.
"""

from __future__ import annotations

import os
import uuid

import pytest
from django.test import override_settings

from django_ai.conversations.constants import ProcessingStatus
from django_ai.conversations.service import ConversationService
from django_ai.conversations.testing import isolated_registry, task_worker, wait_until

from .turns_support import AGENT_PATHS, AGENTS, ai_settings, post, reply_to, status_of

pytest.importorskip("django_tasks_rq", reason="the 'rq' extra (django-tasks-rq) is not installed")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_available(), reason=f"no Redis server at {REDIS_URL} (CI provides one)")


@pytest.fixture
def rq_queue():
    queue = f"turns-test-{uuid.uuid4().hex[:10]}"
    tasks = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": [queue]}}
    with isolated_registry(AGENTS), override_settings(TASKS=tasks, RQ_QUEUES={queue: {"URL": REDIS_URL}}), ai_settings(
        AGENTS=AGENT_PATHS, TASK_QUEUE=queue
    ):
        yield queue
        import django_rq

        django_rq.get_queue(queue).empty()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_rq_worker_answers_messages_one_at_a_time(rq_queue):
    with task_worker(kind="rq", queue=rq_queue) as start:
        worker = start()
        session = ConversationService.create_session("counter")
        messages = [post(session, f"m{i}") for i in range(3)]
        wait_until(
            lambda: all(status_of(m) == ProcessingStatus.COMPLETED for m in messages), 30, message=worker.output()
        )
    assert [reply_to(m).content for m in messages] == ["#1", "#2", "#3"]
    session.refresh_from_db()
    assert session.context == {"count": 3, "seen": ["m0", "m1", "m2"]}
