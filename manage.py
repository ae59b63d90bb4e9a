#!/usr/bin/env python
"""Django's command-line utility, reading the development environment file first.

``make run`` leaves ``.env`` (git-ignored) with ``DEBUG=1``, so the README's ``.venv/bin/python manage.py …`` commands
work in a checkout as written. The real environment wins over the file; ``RMM_ENV_FILE`` names another file (a
deployment's, e.g. ``/etc/rmm/rmm.env``) or, empty, none. Only manage.py reads it: the server (rmm/wsgi.py under
gunicorn) takes its settings from its own environment, never from a file in the checkout.

Processes the test suite starts (pytest sets ``PYTEST_CURRENT_TEST`` for them to inherit) read no file: a test gets
the environment it sets, whatever a developer's ``.env`` or ``RMM_ENV_FILE`` holds.

A missing or wrong setting ends in one line on stderr and exit status 1 (``--traceback`` shows the traceback).
"""

import os
import sys
from pathlib import Path


def env_file() -> Path | None:
    """The file of settings this run reads, if any (module docstring)."""
    if "PYTEST_CURRENT_TEST" in os.environ:
        return None
    named = os.environ.get("RMM_ENV_FILE")
    if named is not None:
        return Path(named) if named.strip() else None
    return Path(__file__).resolve().parent / ".env"


def main() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from rmm.env import one_line, read_env_file

    try:
        if (path := env_file()) is not None:
            read_env_file(path)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rmm.settings")
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as error:
        if "--traceback" in sys.argv:
            raise
        sys.exit(one_line(error))


if __name__ == "__main__":
    main()
