"""Fixtures shared by the agent's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from standin import make_certificates


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The throwaway CA and certificates of standin.make_certificates, made once for the whole run."""
    return make_certificates(tmp_path_factory.mktemp("tls"))
