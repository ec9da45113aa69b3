"""The app's HTTP layer, shared by the bridge, uploads and realtime views.

- :mod:`.views`: :class:`~.views.BaseAPIView`, the base of every API view of the app (error
  envelope, body-size limit, JSON only, CSRF for cookie-identified anonymous visitors).
- :mod:`.parsing`: :class:`~.parsing.StrictJSONParser`, how JSON bodies are read (UTF-8, bounded
  size and nesting, nothing a database cannot store).
- :mod:`.throttling`: the app's throttles (per user, anonymous visitor, client address) and
  :func:`~.throttling.client_address`, the address the deployment trusts.
- :mod:`.checks`: the system check that names project throttles trusting ``X-Forwarded-For``.
- :mod:`.errors`: the error envelope ``{"errors": [{"code", "message", "field"?}]}`` and the
  exception handler that builds it.

Imports run one way: the bridge, ``files/`` and ``realtime/`` import this package; it imports
neither of them (nor the models: ``asgi.py`` imports it before Django is set up), only
``realtime.channels`` for the digest an anonymous visitor is counted under.
"""
