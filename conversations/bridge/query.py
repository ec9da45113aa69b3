"""The query compiler: ``{"filter", "exclude", "order_by", "limit", "offset", "fields", "count",
"include"}`` -> a permission-scoped queryset -> the normalized answer.

Every path a client names is checked against what the exposed model declares, whatever the key it
appears under: ``filter``/``exclude`` keys must be filters of its django-filter FilterSet (field
path + lookup), ``order_by`` entries must be in ``orderings``, ``fields`` in the readable fields,
``include`` in ``relations``. Nothing else reaches the ORM. Values are checked against the model
field at the end of the path (type, range, length) so bad input is a 400, never a database error.
"""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from ..conf import ai_settings
from ..constants import BridgeAction
from .errors import BridgeError, FieldNotAllowed, InvalidQuery, MultipleErrors, ObjectNotFound
from .fields import ResolvedPath, resolve_path, wire_pk
from .serialization import RowWriter, concrete_attnames

if TYPE_CHECKING:
    from .registry import ExposedModel

__all__ = ["Query", "parse_query", "run_query", "filter_specs", "clean_pk", "normalized"]

QUERY_KEYS = frozenset({"filter", "exclude", "order_by", "limit", "offset", "fields", "count", "include"})
#: Deep pagination is slow on every database; page with a filter on the ordering field instead.
MAX_OFFSET = 100_000
MAX_ORDER_BY = 5
MAX_EXCLUDE_GROUPS = 10
SCALAR_LOOKUPS = frozenset(
    {"exact", "iexact", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "gt", "gte", "lt", "lte"}
)
TEXT_LOOKUPS = frozenset({"iexact", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith"})
MODEL_LOOKUPS = SCALAR_LOOKUPS | {"in", "range", "isnull"}
#: An integer written as a JSON string (big integers travel so): an optional minus, 1-20 digits.
INTEGER_STRING = re.compile(r"-?[0-9]{1,20}")


@dataclass(frozen=True)
class Condition:
    key: str
    filter: Any  # the django-filter Filter
    path: ResolvedPath | None
    lookup: str
    value: Any

    def q(self) -> Q:
        return Q(**{f"{self.path.path}__{self.lookup}" if self.path else self.key: self.value})


@dataclass
class Query:
    filter: list[Condition] = field(default_factory=list)
    # One group per exclude object: a row is dropped when it matches every condition of a group
    # (Django's ``.exclude(a=1, b=2)``); several groups drop each (``.exclude(a=1).exclude(b=2)``).
    exclude: list[list[Condition]] = field(default_factory=list)
    order_by: list[str] = field(default_factory=list)
    limit: int = 50
    offset: int = 0
    fields: list[str] = field(default_factory=list)
    count: bool = False
    include: list[str] = field(default_factory=list)
    distinct: bool = False


def filter_specs(exposed: ExposedModel) -> dict[str, set[str]]:
    """Filter key -> lookups, as the query accepts them: a query filters with ``key`` for the
    ``exact`` lookup and ``key__lookup`` for the others. Keys are the FilterSet's filter names (a
    filter called ``title__icontains`` is ``title: [icontains]``; one called ``q`` that looks up
    ``title__icontains`` is ``q: [icontains]``), never the model field behind them."""
    specs: dict[str, set[str]] = {}
    for name, flt in _filters(exposed).items():
        if flt.method is not None:
            specs.setdefault(name, set()).add("exact")
            continue
        lookup = flt.lookup_expr
        suffix = f"__{lookup}"
        key = name[: -len(suffix)] if lookup != "exact" and name.endswith(suffix) else name
        specs.setdefault(key, set()).add(lookup)
    return specs


def _filters(exposed: ExposedModel) -> dict[str, Any]:
    """The FilterSet's filters, plus ``pk`` and ``pk__in`` (Django's alias of the primary key,
    whatever its name) unless it declares those names itself: a client can always find a row by
    the pk it was given (the SDK's ``get(pk)``). The pk is readable on every model, so filtering
    by it shows nothing the caller could not read."""
    filterset = exposed.filterset_class
    filters = dict(filterset.base_filters) if filterset is not None else {}
    pk_name = exposed.model._meta.pk.name
    filters.setdefault("pk", django_filters.Filter(field_name=pk_name, lookup_expr="exact"))
    filters.setdefault("pk__in", django_filters.Filter(field_name=pk_name, lookup_expr="in"))
    return filters


def _lookup_filter(exposed: ExposedModel, key: str) -> Any:
    filters = _filters(exposed)
    found = filters.get(key)
    if found is None and "__" in key:
        # ``name__lookup`` names the filter ``name`` when that is its own lookup (``title__exact``
        # for ``title``; ``q__icontains`` for ``q = CharFilter(lookup_expr="icontains")``), as
        # ``schema/`` lists it.
        for name, flt in filters.items():
            if flt.method is None and key == f"{name}__{flt.lookup_expr}":
                return flt
    return found


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise InvalidQuery("Text values may not contain NUL characters.", field=where)


def clean_value(model_field: Any, value: Any, where: str, *, text_lookup: bool = False) -> Any:
    """One filter value, checked against ``model_field`` (strict JSON types, range, length)."""
    if value is None:
        raise InvalidQuery("null is only allowed with the isnull lookup.", field=where)
    if isinstance(value, (dict, list)):
        raise InvalidQuery("Expected a single value.", field=where)
    if isinstance(value, str):
        _check_text(value, where)
    if text_lookup:
        if not isinstance(value, str):
            raise InvalidQuery("Expected a string.", field=where)
        if len(value) > 1000:
            raise InvalidQuery("The text is too long (1000 characters at most).", field=where)
        return value
    internal = model_field.get_internal_type()
    try:
        if isinstance(model_field, models.BooleanField):
            if not isinstance(value, bool):
                raise InvalidQuery("Expected true or false.", field=where)
            return value
        if isinstance(value, bool):
            raise InvalidQuery(f"Expected a {internal} value, not a boolean.", field=where)
        if isinstance(model_field, (models.IntegerField, models.AutoField)) or internal.endswith("AutoField"):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, str) and INTEGER_STRING.fullmatch(value):
                # The form big integers travel in (and a pk taken from a URL): "9007199254740993".
                value = int(value)
            if not isinstance(value, int):
                raise InvalidQuery("Expected an integer (a JSON number, or a string of digits).", field=where)
            model_field.run_validators(value)
            return value
        if isinstance(model_field, models.FloatField):
            if not isinstance(value, (int, float)):
                raise InvalidQuery("Expected a number.", field=where)
            return float(value)
        if isinstance(model_field, models.DecimalField):
            if not isinstance(value, (int, float, str)):
                raise InvalidQuery("Expected a number.", field=where)
            try:
                result = Decimal(str(value))
            except InvalidOperation as exc:
                raise InvalidQuery("Expected a number.", field=where) from exc
            if not result.is_finite():
                raise InvalidQuery("Expected a finite number.", field=where)
            return model_field.to_python(result)
        if isinstance(model_field, models.UUIDField):
            if not isinstance(value, str):
                raise InvalidQuery("Expected a UUID string.", field=where)
            try:
                return uuid.UUID(value)
            except ValueError as exc:
                raise InvalidQuery("Expected a UUID.", field=where) from exc
        if isinstance(model_field, models.DateTimeField):
            if not isinstance(value, str):
                raise InvalidQuery("Expected an ISO 8601 date-time string.", field=where)
            parsed = model_field.to_python(value)
            if parsed is None:
                raise InvalidQuery("Expected an ISO 8601 date-time.", field=where)
            if timezone.is_naive(parsed):
                parsed = timezone.make_aware(parsed, datetime.UTC)
            try:
                # The database compares in UTC: a value at the ends of the calendar may not fit.
                parsed.astimezone(datetime.UTC)
            except OverflowError as exc:
                raise InvalidQuery("The date-time is out of range.", field=where) from exc
            return parsed
        if isinstance(model_field, (models.DateField, models.TimeField, models.DurationField)):
            if not isinstance(value, str):
                raise InvalidQuery("Expected an ISO 8601 string.", field=where)
            parsed = model_field.to_python(value)
            if parsed is None:
                raise InvalidQuery("Expected an ISO 8601 value.", field=where)
            return parsed
        if isinstance(model_field, models.JSONField):
            return value
        # Text-like fields.
        if not isinstance(value, str):
            raise InvalidQuery("Expected a string.", field=where)
        max_length = getattr(model_field, "max_length", None)
        if max_length and len(value) > max_length:
            raise InvalidQuery(f"Longer than this field can be ({max_length}).", field=where)
        return value
    except DjangoValidationError as exc:
        raise InvalidQuery("; ".join(exc.messages) or "Invalid value.", field=where) from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidQuery("Invalid value.", field=where) from exc


def _condition(exposed: ExposedModel, key: Any, value: Any, where: str) -> Condition:
    if not isinstance(key, str):
        raise FieldNotAllowed("Filter keys are strings.", field=where)
    flt = _lookup_filter(exposed, key)
    if flt is None:
        raise FieldNotAllowed(f"{key[:100]!r} is not a filter of {exposed.name}.", code="unknown_filter", field=where)
    if not (_is_scalar(value) or isinstance(value, list)):
        raise InvalidQuery("Filter values are JSON scalars or lists.", field=where)
    if flt.method is not None or flt.lookup_expr not in MODEL_LOOKUPS:
        # A custom filter: its own form field decides what a value is.
        if isinstance(value, str):
            _check_text(value, where)
        if not _is_scalar(value) or value is None:
            raise InvalidQuery("Expected a single value.", field=where)
        try:
            cleaned = flt.field.clean(value)
        except DjangoValidationError as exc:
            raise InvalidQuery("; ".join(exc.messages) or "Invalid value.", field=where) from exc
        return Condition(key, flt, None, flt.lookup_expr, cleaned)
    path = resolve_path(exposed.model, flt.field_name)
    lookup = flt.lookup_expr
    target = path.value_field
    if lookup == "isnull":
        if not isinstance(value, bool):
            raise InvalidQuery("isnull takes true or false.", field=where)
        cleaned: Any = value
    elif lookup == "in":
        limit = ai_settings.QUERY_MAX_IN_VALUES
        if not isinstance(value, list):
            raise InvalidQuery("__in takes a list.", field=where)
        if len(value) > limit:
            raise InvalidQuery(f"__in takes at most {limit} values.", field=where)
        cleaned = [clean_value(target, v, where) for v in value]
    elif lookup == "range":
        if not isinstance(value, list) or len(value) != 2:
            raise InvalidQuery("__range takes a list of two values.", field=where)
        cleaned = [clean_value(target, v, where) for v in value]
    else:
        if lookup == "exact" and value is None and path.last.null:
            return Condition(key, flt, path, "isnull", True)
        cleaned = clean_value(target, value, where, text_lookup=lookup in TEXT_LOOKUPS)
    return Condition(key, flt, path, lookup, cleaned)


def _conditions(exposed: ExposedModel, raw: Any, name: str, errors: list[BridgeError]) -> list[Condition]:
    if raw is None:
        return []
    if not isinstance(raw, dict):
        errors.append(InvalidQuery(f"{name} must be an object of path__lookup: value.", field=name))
        return []
    if len(raw) > 50:
        errors.append(InvalidQuery(f"{name} has too many conditions (50 at most).", field=name))
        return []
    result = []
    for key, value in raw.items():
        where = f"{name}.{str(key)[:100]}"
        try:
            result.append(_condition(exposed, key, value, where))
        except BridgeError as exc:
            errors.append(exc)
    return result


def _exclude_groups(exposed: ExposedModel, request: Any, raw: Any, errors: list[BridgeError]) -> list[list[Condition]]:
    """``exclude``: one object of conditions, or a list of them (each excluded on its own)."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        groups = [("exclude", raw)]
    elif isinstance(raw, list):
        if len(raw) > MAX_EXCLUDE_GROUPS:
            errors.append(InvalidQuery(f"exclude has too many objects ({MAX_EXCLUDE_GROUPS} at most).", field="exclude"))
            return []
        groups = [(f"exclude[{i}]", item) for i, item in enumerate(raw)]
    else:
        errors.append(InvalidQuery("exclude must be an object of path__lookup: value, or a list of them.", field="exclude"))
        return []
    result = []
    for name, item in groups:
        conditions = _bind_methods(exposed, request, _conditions(exposed, item, name, errors))
        if conditions:
            result.append(conditions)
    return result


def _int(raw: Any, name: str, *, low: int, high: int, errors: list[BridgeError]) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int):
        errors.append(InvalidQuery(f"{name} must be an integer.", field=name))
        return None
    if not low <= raw <= high:
        errors.append(InvalidQuery(f"{name} must be from {low} to {high}.", code=f"invalid_{name}", field=name))
        return None
    return raw


def _names(raw: Any, name: str, errors: list[BridgeError], *, limit: int = 100) -> list[str] | None:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        errors.append(InvalidQuery(f"{name} must be a list of strings.", field=name))
        return None
    if len(raw) > limit:
        errors.append(InvalidQuery(f"{name} has too many entries ({limit} at most).", field=name))
        return None
    return raw


def _bind_methods(exposed: ExposedModel, request: Any, conditions: list[Condition]) -> list[Condition]:
    """Filters with ``method="name"`` find that method on their FilterSet: give them one (bound
    to the request, as django-filter does), not the unbound class-level filter."""
    if not any(c.filter.method is not None for c in conditions):
        return conditions
    filterset = exposed.filterset_class(queryset=exposed.model._default_manager.none(), request=request)
    return [replace(c, filter=filterset.filters[c.key]) if c.filter.method is not None else c for c in conditions]


def parse_query(exposed: ExposedModel, request: Any, body: Any) -> Query:
    """Validate a query body; every problem is reported (MultipleErrors), nothing is run."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidQuery("The query must be a JSON object.", code="invalid_body")
    errors: list[BridgeError] = []
    for key in body:
        if key not in QUERY_KEYS:
            errors.append(InvalidQuery(f"Unknown query key {str(key)[:64]!r}.", code="unknown_key", field=str(key)[:64]))
    query = Query(limit=exposed.get_default_limit())
    query.filter = _bind_methods(exposed, request, _conditions(exposed, body.get("filter"), "filter", errors))
    query.exclude = _exclude_groups(exposed, request, body.get("exclude"), errors)
    query.distinct = any(
        c.path is not None and c.path.many for c in [*query.filter, *(c for group in query.exclude for c in group)]
    )

    order_by = body.get("order_by")
    if order_by is not None:
        names = _names(order_by, "order_by", errors, limit=MAX_ORDER_BY)
        for entry in names or []:
            bare = entry[1:] if entry.startswith("-") else entry
            if bare not in exposed.orderings:
                errors.append(FieldNotAllowed(f"Cannot order {exposed.name} by {entry[:100]!r}.", field="order_by"))
            else:
                query.order_by.append(entry)
    else:
        query.order_by = list(exposed.default_ordering)

    if "limit" in body:
        value = _int(body["limit"], "limit", low=0, high=exposed.get_max_limit(), errors=errors)
        if value is not None:
            query.limit = value
    if "offset" in body:
        value = _int(body["offset"], "offset", low=0, high=MAX_OFFSET, errors=errors)
        if value is not None:
            query.offset = value

    readable = exposed.get_fields(request, BridgeAction.READ)
    default = [f for f in (exposed.default_fields or readable) if f in readable]
    if body.get("fields") is not None:
        names = _names(body["fields"], "fields", errors)
        for name in names or []:
            if name not in readable:
                errors.append(FieldNotAllowed(f"{exposed.name} has no readable field {name[:100]!r}.", field="fields"))
        if names is not None:
            pk_name = exposed.model._meta.pk.name
            query.fields = [pk_name, *[n for n in dict.fromkeys(names) if n in readable and n != pk_name]]
    else:
        query.fields = default

    if "count" in body:
        if not isinstance(body["count"], bool):
            errors.append(InvalidQuery("count must be true or false.", field="count"))
        else:
            query.count = body["count"]

    if body.get("include") is not None:
        names = _names(body["include"], "include", errors, limit=10)
        for name in names or []:
            if name not in exposed.relations or name not in readable:
                errors.append(FieldNotAllowed(f"{exposed.name} has no includable relation {name[:100]!r}.", field="include"))
            else:
                query.include.append(name)
        if not errors:
            # An included relation's pks come from the row, so the field is read too.
            query.fields += [n for n in query.include if n not in query.fields]
    if errors:
        raise MultipleErrors(errors)
    return query


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


def _related(exposed: ExposedModel, field_name: str) -> ExposedModel | None:
    from .registry import bridge_registry

    name = exposed.relations.get(field_name)
    if name is None:
        related = exposed.model._meta.get_field(field_name).related_model
        name = bridge_registry.name_for_model(related)
    return bridge_registry.get(name) if name else None


def _prefetches(exposed: ExposedModel, request: Any, fields: list[str]) -> list[Prefetch]:
    result = []
    for name in fields:
        field = exposed.model._meta.get_field(name)
        if field.many_to_many:
            related = _related(exposed, name)
            queryset = (
                related.get_queryset(request, BridgeAction.READ)
                if related is not None
                else field.related_model._default_manager.all()
            )
            if related is None or related.get_read_check(request) is None:
                # Only the ids travel; rows the read check looks at are loaded whole.
                queryset = queryset.only("pk")
            result.append(Prefetch(name, queryset=queryset))
    return result


def _related_checks(exposed: ExposedModel, request: Any, fields: list[str]) -> dict[str, Any]:
    """Many-to-many field -> the read check its related rows must pass to be listed."""
    checks = {}
    for name in fields:
        if exposed.model._meta.get_field(name).many_to_many:
            related = _related(exposed, name)
            check = related.get_read_check(request) if related is not None else None
            if check is not None:
                checks[name] = check
    return checks


#: Rows fetched per round trip when reads scan rows through a per-row object check.
CHECKED_SCAN_CHUNK_SIZE = 500


def _checked_rows(
    exposed: ExposedModel, request: Any, query: Query, queryset: QuerySet, check: Any
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


def scoped_rows(exposed: ExposedModel, request: Any, query: Query) -> tuple[list[models.Model], bool, int | None]:
    """(rows of the page, has_more, count or None)."""
    queryset = _apply(exposed.get_queryset(request, BridgeAction.READ), query)
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


def include_rows(exposed: ExposedModel, request: Any, rows: list[models.Model], names: list[str], included: dict[str, dict[str, Any]]) -> None:
    """Add the related rows of ``names`` to ``included``: one query per relation, scoped by the
    related model's permissions and passing its read check (rows the caller may not read are
    left out)."""
    for name in names:
        related = _related(exposed, name)
        if related is None:
            continue
        field = exposed.model._meta.get_field(name)
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
        fields = [f for f in (related.default_fields or related.get_fields(request, BridgeAction.READ))
                  if f in related.get_fields(request, BridgeAction.READ)]
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


def run_query(exposed: ExposedModel, request: Any, body: Any) -> dict[str, Any]:
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


def clean_pk(exposed: ExposedModel, value: Any) -> Any:
    """A primary key from a URL or body, or ObjectNotFound (a malformed id is just not found)."""
    pk_field = exposed.model._meta.pk
    try:
        if isinstance(pk_field, (models.IntegerField, models.AutoField)) and isinstance(value, str):
            if not value.isascii() or not value.isdigit() or len(value) > 19:
                raise ValueError(value)
            value = int(value)
        return clean_value(pk_field, value, "pk")
    except (BridgeError, ValueError) as exc:
        raise ObjectNotFound(f"No {exposed.name} with id {str(value)[:64]} exists.") from exc


def serialize_instance(exposed: ExposedModel, request: Any, instance: models.Model) -> dict[str, Any]:
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
        included[exposed.name][str(key)] = RowWriter(exposed, fields, related_checks=_related_checks(exposed, request, fields))(row)
    return normalized(key, included)
