"""A project's own models, as a shop would have them, for the bridge and SDK tests.

Installed by ``tests.settings`` (pytest, and the SDK's test server), never by the demo
(``backend.settings``). ``Order`` has an integer primary key, a plain foreign key to its owner and
the value types JSON numbers cannot carry exactly (a decimal, a big integer, a duration, a UUID);
``Ticket`` has a primary key of another name and type and belongs to a conversation.
"""
