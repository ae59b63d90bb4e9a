"""Keyset pages of a run's per-device results: first the run's commands in id order (rmm.pagination's keyset on the
index (script_run_id, id)), then the devices it skipped, which have no command and are listed in the run's
``skipped`` (in that list's order). A page may hold the last commands and the first skipped devices; the cursor of a
page inside the skipped part is ``["skipped", <position>]``, so page 100 costs what page 1 costs in both parts.
"""

from __future__ import annotations

import base64
import json

from rmm.errors import ApiError
from rmm.pagination import MAX_CURSOR_LENGTH, KeysetPagination, _bad_cursor
from rmm.parsing import json_depth_exceeds, parse_limit

SKIPPED = "skipped"


class RunResultsPagination(KeysetPagination):
    """``paginate_results(commands, skipped, request, view)`` → (the page's commands, the page's skipped entries)."""

    def paginate_results(self, commands, skipped: list[dict], request, view):
        position = self._skipped_position(request.query_params.get("cursor"), len(skipped))
        if position is None:
            rows = list(self.paginate_queryset(commands, request, view))
            if self._next is not None:
                return rows, []
            position = 0
        else:
            rows = []
        try:
            limit = parse_limit(request.query_params.get("limit"), default=self.default_limit, maximum=self.max_limit)
        except ValueError as exc:
            raise ApiError(400, "validation_error", "Bad limit.", {"limit": [str(exc)]}) from None
        end = position + limit - len(rows)
        self._next = self._encode_skipped(end) if end < len(skipped) else None
        return rows, skipped[position:end]

    @staticmethod
    def _encode_skipped(position: int) -> str:
        payload = json.dumps([SKIPPED, position], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    @staticmethod
    def _skipped_position(cursor: str | None, count: int) -> int | None:
        """The position a skipped-part cursor names; None for no cursor or a cursor of the commands' part."""
        if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode())
            if json_depth_exceeds(raw, max_depth=1):
                return None
            parts = json.loads(raw)
        except ValueError:
            return None  # the keyset part reads it, and refuses it as it refuses any bad cursor
        if not isinstance(parts, list) or len(parts) != 2 or parts[0] != SKIPPED:
            return None
        position = parts[1]
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= count:
            raise _bad_cursor()
        return position
