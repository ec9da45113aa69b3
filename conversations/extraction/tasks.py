"""The documented alias of :mod:`django_ai.conversations.files.extraction.tasks`: it only re-exports.

Task queues of a running deployment hold extraction tasks by their path
``django_ai.conversations.extraction.tasks.extract_file_task`` (the path before the ``files/``
package); a worker resolves that path here to the same task. Tasks enqueued now carry the new path
``django_ai.conversations.files.extraction.tasks.extract_file_task``.
"""

from __future__ import annotations

from ..files.extraction.tasks import *  # noqa: F403 - an alias re-exports the whole public surface
from ..files.extraction.tasks import __all__ as __all__
