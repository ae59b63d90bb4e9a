"""Settings the type checker imports: django-stubs' mypy plugin runs ``django.setup()`` to learn the models.

The production settings, given what they refuse to start without, so that type checking needs no database: a
placeholder ``DATABASE_URL`` (only parsed, never connected to; unset, the settings would start the embedded
PostgreSQL) and a placeholder ``SECRET_KEY``. Values already in the environment are kept.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgresql://typecheck@127.0.0.1:5432/typecheck")
os.environ.setdefault("SECRET_KEY", "typecheck-only-not-a-secret-0123456789abcdef")

from rmm.settings import *  # noqa: F403
