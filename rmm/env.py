"""Strict parsing of configuration from environment variables.

Every reader names the variable in its error, so a typo in a deployment fails at start-up with a message an
operator can act on, instead of a server that runs with a silently wrong value. The entry points (manage.py,
rmm/wsgi.py, rmm/asgi.py, gunicorn's start in rmm/static_check.py) print such an error as one line
(``one_line``), never as a traceback.

``read_env_file`` is how ``manage.py`` reads the development environment file ``make run`` leaves (``.env``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def one_line(error: BaseException) -> str:
    """A configuration error as the single line the entry points print before exiting."""
    message = " ".join(str(error).split())
    return f"ImproperlyConfigured: {message}"


def read_env_file(path: Path) -> None:
    """Put the ``NAME=value`` lines of ``path`` into ``os.environ``, without replacing a variable that is already
    set: the real environment wins. A missing file is nothing to read.

    The format is the common subset of systemd's ``EnvironmentFile`` and docker's ``--env-file``: one ``NAME=value``
    per line, blank lines and ``#`` comments ignored, an optional ``export`` in front, one pair of matching quotes
    around the value removed; nothing is expanded.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{path} cannot be read: {exc}") from None
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.removeprefix("export ").partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not _ENV_NAME.fullmatch(name):
            raise ImproperlyConfigured(f"{path}, line {number}: {raw_line.strip()!r} is not NAME=value.")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ.setdefault(name, value)


def env_str(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise ImproperlyConfigured(f"{name}={value!r} has an empty item; give a comma-separated list.")
    return items


def env_seconds_map(name: str) -> dict[str, int]:
    """``"mark_offline=30, rollup_telemetry=120"`` → ``{"mark_offline": 30, "rollup_telemetry": 120}``; each value a
    whole number of seconds, at least 1. Which names are allowed is checked by whoever reads the map."""
    value = _raw(name)
    if value is None:
        return {}
    seconds: dict[str, int] = {}
    for item in value.split(","):
        key, equals, number = (part.strip() for part in item.partition("="))
        if not key or not equals or not number.isdigit() or int(number) < 1:
            raise ImproperlyConfigured(
                f"{name}: {item.strip()!r} is not name=seconds (a whole number, at least 1), e.g. mark_offline=30"
            )
        seconds[key] = int(number)
    return seconds


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of {', '.join(choices)}.")
    return value


def parse_database_url(name: str, url: str) -> dict:
    """Turn a ``postgres://user:password@host:port/dbname?opt=v`` URL into a Django DATABASES entry.

    ``host`` may also be given as a query parameter (a Unix socket directory), as libpq allows.
    Other query parameters become connection options (``sslmode``, ``connect_timeout``, ...).
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            f"{name} must be a postgres:// or postgresql:// URL (got scheme {parts.scheme!r}); "
            "PostgreSQL is the only supported database."
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ImproperlyConfigured(f"{name} has no database name (postgres://user@host:5432/DBNAME).")
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", None) or unquote(parts.hostname or "")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port.") from None
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": dbname,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
    }
