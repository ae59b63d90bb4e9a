"""Keyset (cursor) pagination for lists that can grow large: devices, software, commands, the audit log.

A page is ``{"results": [...], "next": "<cursor>" | null}``. The cursor holds the sort key of the last row
(and its id, the tie-breaker), so the next page is ``WHERE (key, id) > (last key, last id)`` on an index: page
1,000 costs what page 1 costs, no ``OFFSET`` and no ``COUNT(*)`` over the fleet. Rows added while a client walks
the list never cause duplicates or gaps among the rows that were there.

A cursor is base64url of the JSON ``[ordering, key, id]``. Keys of every type an ordering can sort on (text, UUID,
datetime, date, integer, decimal, …) are written by one encoder and read back by a decoder chosen from the model
field the ordering names, so a view declares only ``Ordering("field")``; a cursor a client tampered with (another
type, NUL, a lone surrogate, an offset PostgreSQL refuses) is answered 400, never handed to the database.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import ipaddress
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import models
from django.db.models import F, Q
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from rmm.errors import ApiError
from rmm.parsing import check_text, json_depth_exceeds, parse_datetime, parse_limit

MAX_CURSOR_LENGTH = 2_000  # a cursor we give out is well under 300 characters


@dataclass(frozen=True)
class Ordering:
    """One sort the API offers: ``field`` ascending or descending, NULLs last, then ``id`` the same way.

    ``field`` is a field of the list's model, or a path across relations (``device__hostname``); its type and
    whether it can be NULL come from the model, so a cursor's key is read back as what it was written as.
    """

    field: str
    descending: bool = False

    def order_by(self):
        key = F(self.field).desc(nulls_last=True) if self.descending else F(self.field).asc(nulls_last=True)
        return [key, "-pk" if self.descending else "pk"]

    def after(self, value, pk, *, nullable: bool) -> Q:
        """Rows strictly after (value, pk) in this order.

        Written as ``field >= value AND (field > value OR id > pk)`` rather than a plain OR, so PostgreSQL can
        start an index range scan at ``value`` instead of filtering the list from its beginning.
        """
        beyond = "lt" if self.descending else "gt"
        if value is None:  # we are among the NULLs, which come last
            return Q(**{f"{self.field}__isnull": True, f"pk__{beyond}": pk})
        reached = Q(**{f"{self.field}__{beyond}e": value}) & (
            Q(**{f"{self.field}__{beyond}": value}) | Q(**{f"pk__{beyond}": pk})
        )
        return reached | Q(**{f"{self.field}__isnull": True}) if nullable else reached

    def key(self, model: type[models.Model]) -> SortKey:
        return _sort_key(self, model)


@dataclass(frozen=True)
class WithinOneValue(Ordering):
    """The ``id`` order of a list filtered to one value of ``field`` (a run's commands: ``script_run_id = X``),
    sorted as the ``(field, id)`` index is so PostgreSQL reads that index rather than walking the primary key and
    filtering, and continued after the id alone so the next page starts inside the index too."""

    def after(self, value, pk, *, nullable: bool) -> Q:
        return Q(pk__lt=pk) if self.descending else Q(pk__gt=pk)


# --- cursor keys: one encoder for every type, one decoder per model field type -------------------------------------


def encode_key(value: Any) -> Any:
    """A sort key as JSON: text, numbers and null as themselves; datetimes, dates, UUIDs, decimals and IP
    addresses as text (read back by the decoder of the ordering's field, see ``_DECODERS``)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, dt.date):  # datetimes too
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    raise TypeError(f"No cursor encoding for a sort key of type {type(value).__name__}.")


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("Expected text.")
    return check_text(raw)


def _uuid(raw: object) -> uuid.UUID:
    if not isinstance(raw, str) or not raw.isascii() or len(raw) > 45:
        raise ValueError("Expected a UUID.")
    return uuid.UUID(raw)


def _integer(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not -(2**63) <= raw < 2**63:
        raise ValueError("Expected a whole number.")
    return raw


def _floating(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValueError("Expected a number.")
    return float(raw)


def _decimal(raw: object) -> Decimal:
    if not isinstance(raw, str) or not raw.isascii() or len(raw) > 100:
        raise ValueError("Expected a decimal number.")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError("Expected a decimal number.") from None
    if not value.is_finite() or abs(value.adjusted()) > 1000:  # PostgreSQL's numeric overflows near 10**131072
        raise ValueError("Expected a decimal number.")
    return value


def _datetime(raw: object) -> dt.datetime:
    return parse_datetime(raw, assume_utc=False)  # a cursor we wrote always carries its offset


def _date(raw: object) -> dt.date:
    if not isinstance(raw, str) or not raw.isascii() or len(raw) != 10:
        raise ValueError("Expected a date.")
    return dt.date.fromisoformat(raw)


def _ip_address(raw: object) -> str:
    return str(ipaddress.ip_address(_text(raw)))


def _boolean(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError("Expected true or false.")
    return raw


_DECODERS: dict[str, Callable[[object], Any]] = {
    **dict.fromkeys(("CharField", "TextField", "SlugField", "EmailField", "URLField"), _text),
    **dict.fromkeys(
        (
            "AutoField",
            "BigAutoField",
            "SmallAutoField",
            "IntegerField",
            "BigIntegerField",
            "SmallIntegerField",
            "PositiveIntegerField",
            "PositiveBigIntegerField",
            "PositiveSmallIntegerField",
        ),
        _integer,
    ),
    "UUIDField": _uuid,
    "FloatField": _floating,
    "DecimalField": _decimal,
    "DateTimeField": _datetime,
    "DateField": _date,
    "GenericIPAddressField": _ip_address,
    "BooleanField": _boolean,
}


@dataclass(frozen=True)
class SortKey:
    """How an ordering's key is read from a row and read back from a cursor, for one model."""

    path: tuple[str, ...]  # attribute names from the row to the value (the last one an attname)
    nullable: bool
    decode: Callable[[object], Any]

    def of(self, row) -> Any:
        value = row
        for name in self.path:
            value = getattr(value, name)
            if value is None:
                return None
        return value


def _decoder(field: models.Field) -> Callable[[object], Any]:
    if isinstance(field, models.ForeignObject):
        field = field.target_field
    decode = _DECODERS.get(field.get_internal_type())
    if decode is None:
        raise TypeError(f"Keyset pages cannot sort on {field.model.__name__}.{field.name} ({type(field).__name__}).")
    return decode


@functools.cache
def _sort_key(ordering: Ordering, model: type[models.Model]) -> SortKey:
    path: list[str] = []
    nullable = False
    field: models.Field | None = None
    for name in ordering.field.split("__"):
        found = model._meta.get_field(name)
        if not isinstance(found, models.Field):
            raise TypeError(f"Keyset pages cannot sort on {model.__name__}.{name} (a reverse or generic relation).")
        field = found
        nullable = nullable or field.null
        path.append(name)
        if field.is_relation:
            related = field.related_model
            if not isinstance(related, type):  # "self" or None only before the app registry is ready
                raise TypeError(f"{model.__name__}.{name} points to no model yet.")
            model = related
    if field is None:
        raise TypeError("An ordering names at least one field.")
    path[-1] = field.attname
    return SortKey(tuple(path), nullable, _decoder(field))


def _bad_cursor(reason: str = "Not a cursor this API gave out.") -> ApiError:
    return ApiError(400, "validation_error", "Bad cursor.", {"cursor": [reason]})


class KeysetPagination(BasePagination):
    """Set ``orderings`` (API name → Ordering) and ``default_ordering`` on the view; clients pass ``ordering``,
    ``limit`` (≤ ``max_limit``) and ``cursor``."""

    default_limit = 100
    max_limit = 500

    def paginate_queryset(self, queryset, request, view=None):
        orderings: dict[str, Ordering] = view.orderings
        name = request.query_params.get("ordering") or view.default_ordering
        if name not in orderings:
            raise ApiError(
                400, "validation_error", "Unknown ordering.", {"ordering": [f"One of: {', '.join(orderings)}."]}
            )
        ordering = orderings[name]
        key = ordering.key(queryset.model)
        pk_decode = _decoder(queryset.model._meta.pk)
        try:
            limit = parse_limit(request.query_params.get("limit"), default=self.default_limit, maximum=self.max_limit)
        except ValueError as exc:
            raise ApiError(400, "validation_error", "Bad limit.", {"limit": [str(exc)]}) from None
        queryset = queryset.order_by(*ordering.order_by())
        cursor = request.query_params.get("cursor")
        if cursor:
            value, pk = self._decode(cursor, name, key, pk_decode)
            queryset = queryset.filter(ordering.after(value, pk, nullable=key.nullable))
        rows = list(queryset[: limit + 1])
        self._next = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            self._next = self._encode(name, key.of(last), last.pk)
        return rows

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self._next})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {
                    "type": "string",
                    "nullable": True,
                    "description": "The cursor of the next page, or null on the last page.",
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        """The query parameters of a paginated list, for the OpenAPI document (one source for every list)."""
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Rows per page, from 1 to {self.max_limit}.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "The `next` of the previous page, with the same ordering.",
                "schema": {"type": "string", "maxLength": MAX_CURSOR_LENGTH},
            },
            {
                "name": "ordering",
                "in": "query",
                "required": False,
                "description": "The sort; a leading `-` is descending.",
                "schema": {"type": "string", "enum": list(view.orderings), "default": view.default_ordering},
            },
        ]

    @staticmethod
    def _encode(name: str, value, pk) -> str:
        payload = json.dumps([name, encode_key(value), encode_key(pk)], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @staticmethod
    def _decode(cursor: str, name: str, key: SortKey, pk_decode: Callable[[object], Any]):
        if len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            raise _bad_cursor()
        try:
            raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode())
            if json_depth_exceeds(raw, max_depth=1):  # a cursor is one flat list
                raise ValueError
            parts = json.loads(raw)
        except ValueError:  # binascii.Error, JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise _bad_cursor() from None
        if not isinstance(parts, list) or len(parts) != 3:
            raise _bad_cursor()
        cursor_name, value, pk = parts
        if cursor_name != name:
            raise _bad_cursor("The cursor is for another ordering.")
        try:
            value = None if value is None and key.nullable else key.decode(value)
            pk = pk_decode(pk)
        except ValueError:
            raise _bad_cursor() from None
        return value, pk
