"""The GIN index behind the ``search`` filter of conversations on PostgreSQL (conversations/search.py).

Created only on PostgreSQL; other databases search without an index. It is not in the model's
``Meta.indexes`` (an index of every database), so the migration state does not know it and
``makemigrations`` never asks to drop it. Built from the very expression the search filters on
(``SearchVector("content", config="simple")``), so the planner can use it.
"""

from typing import Any

from django.db import migrations

try:
    from django.contrib.postgres.indexes import GinIndex
    from django.contrib.postgres.search import SearchVector
except ImportError:  # no psycopg: not PostgreSQL, and the index is made on PostgreSQL only
    GinIndex = SearchVector = None  # type: ignore[assignment,misc]

INDEX_NAME = "convmsg_content_search"


def _index() -> Any:
    return GinIndex(SearchVector("content", config="simple"), name=INDEX_NAME)


def create_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    model = apps.get_model("django_ai_conversations", "ConversationMessage")
    with schema_editor.connection.cursor() as cursor:
        # Made beforehand with CREATE INDEX CONCURRENTLY (docs/conversations.md, "Search"), so that
        # a large table is not locked against writes while it is built: kept as it is.
        cursor.execute(
            "SELECT 1 FROM pg_indexes WHERE tablename = %s AND indexname = %s", [model._meta.db_table, INDEX_NAME]
        )
        if cursor.fetchone():
            return
    schema_editor.add_index(model, _index())


def drop_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.remove_index(apps.get_model("django_ai_conversations", "ConversationMessage"), _index())


class Migration(migrations.Migration):
    dependencies = [
        ("django_ai_conversations", "0003_versions_feedback_soft_delete"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
