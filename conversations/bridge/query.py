"""Running a query: a parsed :class:`~.query_parser.Query` -> a permission-scoped queryset -> the
normalized answer ``{"data", "included", "meta"}``; and the answer of a write
(:func:`serialize_instance`).

Rows come from the exposed model's read scope; when its permissions need the per-row object check,
rows are read in one streaming query and counted only once they pass, so pagination never reveals
refused rows. Related rows (``include``, many-to-many ids) come from the related exposed model's
own scope and read check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db import models
from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects

from ..constants import BridgeAction
from .fields import wire_pk
from .query_parser import Condition, Query, parse_query
from .serialization import RowWriter, concrete_attnames

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["include_rows", "normalized", "run_query", "scoped_rows", "serialize_instance"]


def _apply(queryset: QuerySet, query: Query) -> QuerySet:
    plain_filter = Q()
    for cond in query.filter:
        if cond.path is None:
            queryset = cond.filter.filter(queryset, cond.value)
        else:
            plain_filter &= cond.q()
    if plain_filter:
        queryset = queryset.filter(plain_filter)
    for group in query.exclude:
        queryset = _exclude(queryset, group)
    if query.distinct:
        queryset = queryset.distinct()
    return queryset


def _exclude(queryset: QuerySet, group: list[Condition]) -> QuerySet:
    """Drop the rows that match every condition of ``group``."""
    plain = Q()
    custom = []
    for cond in group:
        if cond.path is None:
            custom.append(cond)
        else:
            plain &= cond.q()
    if not custom:
        return queryset.exclude(plain)
    # A filter with a method runs on a queryset: collect the matching pks, then exclude them.
    matching = queryset.model._default_manager.all()
    if plain:
        matching = matching.filter(plain)
    for cond in custom:
        matching = cond.filter.filter(matching, cond.value)
    return queryset.exclude(pk__in=matching.values("pk"))


def _prefetches(exposed: ExposedModel, request: Request, fields: list[str]) -> list[Prefetch]:
    result = []
    for name in fields:
        field = exposed.model._meta.get_field(name)
        if field.many_to_many:
            related = exposed.get_related(name)
            queryset = (
                related.get_queryset(request, BridgeAction.READ)
                if related is not None
                else cast(type[models.Model], field.related_model)._default_manager.all()
            )
            if related is None or related.get_read_check(request) is None:
                # Only the ids travel; rows the read check looks at are loaded whole.
                queryset = queryset.only("pk")
            result.append(Prefetch(name, queryset=queryset))
    return result


def _related_checks(exposed: ExposedModel, request: Request, fields: list[str]) -> dict[str, Any]:
    """Many-to-many field -> the read check its related rows must pass to be listed."""
    checks = {}
    for name in fields:
        if exposed.model._meta.get_field(name).many_to_many:
            related = exposed.get_related(name)
            check = related.get_read_check(request) if related is not None else None
            if check is not None:
                checks[name] = check
    return checks


#: Rows fetched per round trip when reads scan rows through a per-row object check.
CHECKED_SCAN_CHUNK_SIZE = 500


def _checked_rows(
    exposed: ExposedModel, request: Request, query: Query, queryset: QuerySet, check: Any
) -> tuple[list[models.Model], bool, int | None]:
    """The page when reads need the per-row object check: the ordered scope is read in one
    streaming query and rows count only once they pass, so ``offset``, ``has_more`` and ``count``
    are about rows the caller may read and never reveal how many were refused. The price: the
    scan reads every row up to the end of the page (with ``count``, every row of the scope)."""
    page: list[models.Model] = []
    passed = 0
    end = query.offset + query.limit
    for obj in queryset.iterator(chunk_size=CHECKED_SCAN_CHUNK_SIZE):
        if not check(obj):
            continue
        passed += 1
        if passed > end:
            if not query.count:
                break
        elif passed > query.offset:
            page.append(obj)
    prefetches = _prefetches(exposed, request, query.fields)
    if prefetches and page:
        prefetch_related_objects(page, *prefetches)
    return page, passed > end, passed if query.count else None


def scoped_rows(exposed: ExposedModel, request: Request, query: Query) -> tuple[list[models.Model], bool, int | None]:
    """(rows of the page, has_more, count or None)."""
    queryset = exposed.filter_queryset(request, _apply(exposed.get_queryset(request, BridgeAction.READ), query), query)
    pk_name = exposed.model._meta.pk.name
    ordering = list(query.order_by)
    if not any(o.lstrip("-") in (pk_name, "pk") for o in ordering):
        # A stable order makes limit/offset pages not overlap.
        ordering.append("-pk" if ordering and ordering[-1].startswith("-") else "pk")
    check = exposed.get_read_check(request)
    if check is not None:
        # Whole rows: the check may look at any column (no deferred load per row).
        return _checked_rows(exposed, request, query, queryset.order_by(*ordering), check)
    count = queryset.count() if query.count else None
    if query.limit == 0:
        # No rows, but has_more still says whether any row follows the offset (as with a page).
        if count is not None:
            return [], query.offset < count, count
        return [], queryset.order_by()[query.offset : query.offset + 1].exists(), None
    queryset = queryset.order_by(*ordering).only(*concrete_attnames(exposed, query.fields))
    prefetches = _prefetches(exposed, request, query.fields)
    if prefetches:
        queryset = queryset.prefetch_related(*prefetches)
    rows = list(queryset[query.offset : query.offset + query.limit + 1])
    has_more = len(rows) > query.limit
    return rows[: query.limit], has_more, count


def normalized(data: Any, included: dict[str, dict[str, Any]], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"data": data, "included": included, "meta": meta or {}}


def include_rows(
    exposed: ExposedModel,
    request: Request,
    rows: list[models.Model],
    names: list[str],
    included: dict[str, dict[str, Any]],
) -> None:
    """Add the related rows of ``names`` to ``included``: one query per relation, scoped by the
    related model's permissions and passing its read check (rows the caller may not read are
    left out)."""
    for name in names:
        related = exposed.get_related(name)
        if related is None:
            continue
        # An included relation is a field of the model (reverse relations are not exposed).
        field = cast(models.Field, exposed.model._meta.get_field(name))
        pks: set[Any] = set()
        for row in rows:
            if field.many_to_many:
                pks.update(r.pk for r in getattr(row, name).all())
            else:
                value = getattr(row, field.attname)
                if value is not None:
                    pks.add(value)
        if not pks:
            continue
        fields = [
            f
            for f in (related.default_fields or related.get_fields(request, BridgeAction.READ))
            if f in related.get_fields(request, BridgeAction.READ)
        ]
        check = related.get_read_check(request)
        queryset = related.get_queryset(request, BridgeAction.READ).filter(pk__in=pks)
        if check is None:
            queryset = queryset.only(*concrete_attnames(related, fields))
        prefetches = _prefetches(related, request, fields)
        if prefetches:
            queryset = queryset.prefetch_related(*prefetches)
        writer = RowWriter(related, fields, related_checks=_related_checks(related, request, fields))
        bucket = included.setdefault(related.name, {})
        for obj in queryset:
            if check is None or check(obj):
                bucket[str(wire_pk(related.model, obj.pk))] = writer(obj)


def run_query(exposed: ExposedModel, request: Request, body: Any) -> dict[str, Any]:
    """Parse, check and run a query; the normalized answer."""
    query = parse_query(exposed, request, body)
    rows, has_more, count = scoped_rows(exposed, request, query)
    writer = RowWriter(exposed, query.fields, related_checks=_related_checks(exposed, request, query.fields))
    bucket: dict[str, Any] = {}
    data = []
    for obj in rows:
        key = wire_pk(exposed.model, obj.pk)
        data.append(key)
        bucket[str(key)] = writer(obj)
    included = {exposed.name: bucket}
    include_rows(exposed, request, rows, query.include, included)
    meta: dict[str, Any] = {"limit": query.limit, "offset": query.offset, "has_more": has_more}
    if count is not None:
        meta["count"] = count
    return normalized(data, included, meta)


def serialize_instance(exposed: ExposedModel, request: Request, instance: models.Model) -> dict[str, Any]:
    """The normalized answer of a write: the row as the caller may read it now."""
    fields = exposed.get_fields(request, BridgeAction.READ)
    fields = [f for f in (exposed.default_fields or fields) if f in fields]
    obj = exposed.get_queryset(request, BridgeAction.READ).filter(pk=instance.pk)
    prefetches = _prefetches(exposed, request, fields)
    if prefetches:
        obj = obj.prefetch_related(*prefetches)
    row = obj.first()
    check = exposed.get_read_check(request)
    if row is not None and check is not None and not check(row):
        row = None  # written, but not readable by the caller: the answer carries only the id
    key = wire_pk(exposed.model, instance.pk)
    included: dict[str, dict[str, Any]] = {exposed.name: {}}
    if row is not None:
        included[exposed.name][str(key)] = RowWriter(
            exposed, fields, related_checks=_related_checks(exposed, request, fields)
        )(row)
    return normalized(key, included)
