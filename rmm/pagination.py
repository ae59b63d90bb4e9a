"""Keyset (cursor) pagination for lists that can grow large: devices, software, commands, the audit log.

A page is ``{"results": [...], "next": "<cursor>" | null}``. The cursor holds the sort key of the last row
(and its id, the tie-breaker), so the next page is ``WHERE (key, id) > (last key, last id)`` on an index: page
1,000 costs what page 1 costs, no ``OFFSET`` and no ``COUNT(*)`` over the fleet. Rows added while a client walks
the list never cause duplicates or gaps among the rows that were there.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass

from django.db.models import F, Q
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from rmm.errors import ApiError


@dataclass(frozen=True)
class Ordering:
    """One sort the API offers: ``field`` ascending or descending, NULLs last, then ``id`` the same way."""

    field: str
    descending: bool = False
    is_datetime: bool = False
    nullable: bool = False

    def order_by(self):
        key = F(self.field).desc(nulls_last=True) if self.descending else F(self.field).asc(nulls_last=True)
        return [key, "-id" if self.descending else "id"]

    def after(self, value, pk) -> Q:
        """Rows strictly after (value, pk) in this order.

        Written as ``field >= value AND (field > value OR id > pk)`` rather than a plain OR, so PostgreSQL can
        start an index range scan at ``value`` instead of filtering the list from its beginning.
        """
        beyond = "lt" if self.descending else "gt"
        if value is None:  # we are among the NULLs, which come last
            return Q(**{f"{self.field}__isnull": True, f"id__{beyond}": pk})
        reached = Q(**{f"{self.field}__{beyond}e": value}) & (
            Q(**{f"{self.field}__{beyond}": value}) | Q(**{f"id__{beyond}": pk})
        )
        return reached | Q(**{f"{self.field}__isnull": True}) if self.nullable else reached


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
        limit = self._limit(request)
        queryset = queryset.order_by(*ordering.order_by())
        cursor = request.query_params.get("cursor")
        if cursor:
            value, pk = self._decode(cursor, ordering, name)
            queryset = queryset.filter(ordering.after(value, pk))
        rows = list(queryset[: limit + 1])
        self._next = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            self._next = self._encode(name, getattr(last, ordering.field.replace("__", "_")), last.pk)
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
                "schema": {"type": "string"},
            },
            {
                "name": "ordering",
                "in": "query",
                "required": False,
                "description": "The sort; a leading `-` is descending.",
                "schema": {"type": "string", "enum": list(view.orderings), "default": view.default_ordering},
            },
        ]

    def _limit(self, request) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return self.default_limit
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_limit:
            raise ApiError(
                400, "validation_error", "Bad limit.", {"limit": [f"A whole number from 1 to {self.max_limit}."]}
            )
        return int(raw)

    @staticmethod
    def _encode(name: str, value, pk) -> str:
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        payload = json.dumps([name, value, str(pk)], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @staticmethod
    def _decode(cursor: str, ordering: Ordering, name: str):
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            cursor_name, value, pk = json.loads(base64.urlsafe_b64decode(padded.encode()))
            pk = uuid.UUID(pk)
            if value is not None and ordering.is_datetime:
                value = dt.datetime.fromisoformat(value)
            elif value is not None and not isinstance(value, str):
                raise ValueError
        except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(
                400, "validation_error", "Bad cursor.", {"cursor": ["Not a cursor this API gave out."]}
            ) from None
        if cursor_name != name:
            raise ApiError(400, "validation_error", "Bad cursor.", {"cursor": ["The cursor is for another ordering."]})
        return value, pk
