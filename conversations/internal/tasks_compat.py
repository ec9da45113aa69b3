"""Django's Tasks API from one place: ``django.tasks`` on Django 6, the ``django-tasks`` backport
on Django 5.2."""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    from django.tasks import default_task_backend, task, task_backends
    from django.tasks.backends.immediate import ImmediateBackend
    from django.tasks.base import Task, TaskResult, TaskResultStatus
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
    from django.tasks.signals import task_enqueued
except ImportError:  # Django 5.2
    # mypy checks against Django 6's django.tasks (the stubs follow the newest Django): the
    # backport's classes are other classes of the same shape, which it would call a redefinition.
    if not TYPE_CHECKING:
        from django_tasks import default_task_backend, task, task_backends
        from django_tasks.backends.immediate import ImmediateBackend
        from django_tasks.base import Task, TaskResult, TaskResultStatus

        # The backport names them with an "Error" suffix.
        from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.signals import task_enqueued

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
    "task_enqueued",
]
