"""The query language: ``{"filter", "exclude", "order_by", "limit", "offset", "fields", "count",
"include"}`` checked against what an exposed model declares, into a :class:`Query`.

Every path a client names is checked whatever the key it appears under: ``filter``/``exclude`` keys
must be filters of the model's django-filter FilterSet (field path + lookup), ``order_by`` entries
must be in ``orderings``, ``fields`` in the readable fields, ``include`` in ``relations``. Nothing
else reaches the ORM. Values are checked against the model field at the end of the path
(:mod:`.values`). Running a parsed query is :mod:`.query`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q

from ..conf import ai_settings
from ..constants import BridgeAction, ErrorCode
from .errors import BridgeError, FieldNotAllowed, InvalidQuery, MultipleErrors
from .fields import ResolvedPath, resolve_path
from .values import check_text, clean_value

if TYPE_CHECKING:
    from rest_framework.request import Request

    from .exposed import ExposedModel

__all__ = ["Condition", "Query", "filter_specs", "parse_query"]

QUERY_KEYS = frozenset({"filter", "exclude", "order_by", "limit", "offset", "fields", "count", "include"})
#: Deep pagination is slow on every database; page with a filter on the ordering field instead.
MAX_OFFSET = 100_000
MAX_ORDER_BY = 5
MAX_EXCLUDE_GROUPS = 10
SCALAR_LOOKUPS = frozenset(
    {
        "exact",
        "iexact",
        "contains",
        "icontains",
        "startswith",
        "istartswith",
        "endswith",
        "iendswith",
        "gt",
        "gte",
        "lt",
        "lte",
    }
)
TEXT_LOOKUPS = frozenset({"iexact", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith"})
MODEL_LOOKUPS = SCALAR_LOOKUPS | {"in", "range", "isnull"}


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


def _condition(exposed: ExposedModel, key: Any, value: Any, where: str) -> Condition:
    if not isinstance(key, str):
        raise FieldNotAllowed("Filter keys are strings.", field=where)
    flt = _lookup_filter(exposed, key)
    if flt is None:
        raise FieldNotAllowed(
            f"{key[:100]!r} is not a filter of {exposed.name}.", code=ErrorCode.UNKNOWN_FILTER, field=where
        )
    if not (_is_scalar(value) or isinstance(value, list)):
        raise InvalidQuery("Filter values are JSON scalars or lists.", field=where)
    if flt.method is not None or flt.lookup_expr not in MODEL_LOOKUPS:
        # A custom filter: its own form field decides what a value is.
        if isinstance(value, str):
            check_text(value, where)
        if not _is_scalar(value) or value is None:
            raise InvalidQuery("Expected a single value.", field=where)
        try:
            return Condition(key, flt, None, flt.lookup_expr, flt.field.clean(value))
        except DjangoValidationError as exc:
            raise InvalidQuery("; ".join(exc.messages) or "Invalid value.", field=where) from exc
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


def _exclude_groups(
    exposed: ExposedModel, request: Request, raw: Any, errors: list[BridgeError]
) -> list[list[Condition]]:
    """``exclude``: one object of conditions, or a list of them (each excluded on its own)."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        groups = [("exclude", raw)]
    elif isinstance(raw, list):
        if len(raw) > MAX_EXCLUDE_GROUPS:
            errors.append(
                InvalidQuery(f"exclude has too many objects ({MAX_EXCLUDE_GROUPS} at most).", field="exclude")
            )
            return []
        groups = [(f"exclude[{i}]", item) for i, item in enumerate(raw)]
    else:
        errors.append(
            InvalidQuery("exclude must be an object of path__lookup: value, or a list of them.", field="exclude")
        )
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
        errors.append(
            InvalidQuery(f"{name} must be from {low} to {high}.", code=ErrorCode(f"invalid_{name}"), field=name)
        )
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


def _bind_methods(exposed: ExposedModel, request: Request, conditions: list[Condition]) -> list[Condition]:
    """Filters with ``method="name"`` find that method on their FilterSet: give them one (bound
    to the request, as django-filter does), not the unbound class-level filter."""
    filterset_class = exposed.filterset_class
    if filterset_class is None or not any(c.filter.method is not None for c in conditions):
        return conditions
    filterset = filterset_class(queryset=exposed.model._default_manager.none(), request=request)
    return [replace(c, filter=filterset.filters[c.key]) if c.filter.method is not None else c for c in conditions]


def parse_query(exposed: ExposedModel, request: Request, body: Any) -> Query:
    """Validate a query body; every problem is reported (MultipleErrors), nothing is run."""
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidQuery("The query must be a JSON object.", code=ErrorCode.INVALID_BODY)
    errors: list[BridgeError] = []
    for key in body:
        if key not in QUERY_KEYS:
            errors.append(
                InvalidQuery(f"Unknown query key {str(key)[:64]!r}.", code=ErrorCode.UNKNOWN_KEY, field=str(key)[:64])
            )
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
                errors.append(
                    FieldNotAllowed(f"{exposed.name} has no includable relation {name[:100]!r}.", field="include")
                )
            elif name not in query.include:  # a name asked for twice is included once
                query.include.append(name)
        if not errors:
            # An included relation's pks come from the row, so the field is read too.
            query.fields += [n for n in query.include if n not in query.fields]
    if errors:
        raise MultipleErrors([*errors])
    return query
