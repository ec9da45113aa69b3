"""Django's Tasks API from one place: ``django.tasks`` on Django 6, the ``django-tasks`` backport
on Django 5.2."""

from __future__ import annotations

try:
    from django.tasks import default_task_backend, task, task_backends
    from django.tasks.backends.immediate import ImmediateBackend
    from django.tasks.base import Task, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
except ImportError:  # Django 5.2
    from django_tasks import default_task_backend, task, task_backends  # type: ignore[no-redef]
    from django_tasks.backends.immediate import ImmediateBackend  # type: ignore[no-redef]
    from django_tasks.base import Task, TaskResult, TaskResultStatus  # type: ignore[no-redef]

    # The backport names them with an "Error" suffix.
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend  # type: ignore[no-redef]
    from django_tasks.exceptions import InvalidTaskError as InvalidTask  # type: ignore[no-redef]

__all__ = [
    "ImmediateBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskResult",
    "TaskResultStatus",
    "default_task_backend",
    "task",
    "task_backends",
]
