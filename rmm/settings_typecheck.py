"""Settings the type checker imports: django-stubs' mypy plugin runs ``django.setup()`` to learn the models.

The production settings, given what they refuse to start without: a placeholder ``SECRET_KEY``, and a placeholder
``DATABASE_URL`` that is only parsed, never connected to (so the check never depends on which database a machine
has). Values already in the environment are kept.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgresql://typecheck@127.0.0.1:5432/typecheck")
os.environ.setdefault("SECRET_KEY", "typecheck-only-not-a-secret-0123456789abcdef")

from rmm.settings import *  # noqa: F403
