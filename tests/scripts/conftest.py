"""Fixtures shared by the scripts tests: library scripts saved through the one service that saves them.

``make_script(owner, **fields)`` builds a ``Script`` of an organization's or a partner's library (``owner``) and
saves it with ``scripts.services.library.save_script`` (validated, version 1 and its ``ScriptVersion`` written, a
``script.create`` audit row), so a test never holds a script the service would refuse. Unless given: a bash
script printing "hello", no parameters, named "Script <n>". ``actor=`` (default None) is who saves it.
"""

from __future__ import annotations

import itertools

import pytest

from scripts.models import Script
from scripts.services.library import save_script

_NUMBERS = itertools.count(1)


@pytest.fixture
def make_script(db):
    """``make_script(owner, actor=None, **fields)`` → a saved, validated ``Script`` (version 1)."""

    def make(owner, *, actor=None, **fields) -> Script:
        owner_field = "partner" if owner._meta.model_name == "partner" else "org"
        fields.setdefault("name", f"Script {next(_NUMBERS)}")
        fields.setdefault("language", Script.Language.BASH)
        fields.setdefault("content", 'echo "hello"\n')
        return save_script(script=Script(**{owner_field: owner}, **fields), actor=actor)

    return make
