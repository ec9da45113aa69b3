"""Files: uploads and the extraction of their text, one job per module.

- ``views.py``: ``POST files/`` (who uploads, where to, the body's size while it is read);
- ``uploads.py``: :func:`save_upload`, the checks of one file and its storage;
- ``sniffing.py``: what a file is, from its content;
- ``throttles.py``: the upload throttle;
- ``extraction/``: the text extractors, their limits and isolation, and the extraction task.

This package imports nothing at its own import: ``extraction/_child.py`` runs in a process without
Django's app registry, below this package.

The upload's wire errors (``FileTooLarge``, ``UnsupportedFileType``, ``InvalidUpload``) and
``ExtractionError`` are in ``conversations/exceptions.py`` with every other one.
``django_ai.conversations.uploads`` and ``django_ai.conversations.extraction`` are the documented
aliases of ``files.uploads``/``files.views`` and ``files.extraction``.
"""
