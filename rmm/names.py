"""The two spellings of one name: the API's camelCase (``parentId``, ``networkInfo``) and Python's snake_case
(``parent_id``, ``enrollment_key``). No imports beyond the standard library, so any module may use them."""

from __future__ import annotations

import re

_FIRST_CAP = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    return _FIRST_CAP.sub(lambda m: m.group(1).upper(), name)


_INNER_CAP = re.compile(r"(?<!^)(?=[A-Z])")


def snake(name: str) -> str:
    """``parentId`` → ``parent_id``, ``EnrollmentKey`` → ``enrollment_key``: the inverse of :func:`camel`."""
    return _INNER_CAP.sub("_", name).lower()
