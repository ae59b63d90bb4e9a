"""Static files just work in production: gunicorn's start collects them when STATIC_ROOT has none or older ones
(rmm/static_check.py), so the admin and /api/docs/ never answer 500 for a missing manifest entry; where they cannot
be collected, gunicorn refuses to start with one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT, Endpoint, Gunicorn, server_environment, url_of_test_database

pytestmark = pytest.mark.servers


def fetch(port: int, path: str) -> tuple[int, dict, bytes]:
    endpoint = Endpoint(port)
    try:
        endpoint.connection.request("GET", path)
        response = endpoint.connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        endpoint.close()


def start(tmp_path: Path, static_root: Path, log_name: str) -> Gunicorn:
    return Gunicorn(
        url_of_test_database(), tmp_path / log_name, STATIC_ROOT=str(static_root), SCHEDULER_ENABLED="0"
    ).__enter__()


def test_a_first_start_collects_them_and_the_admin_and_api_docs_are_served(
    django_db_setup, django_db_blocker, tmp_path
):
    static_root = tmp_path / "static"
    with django_db_blocker.unblock():
        server = start(tmp_path, static_root, "first.log")
    try:
        for page in ("/admin/login/", "/api/docs/"):
            status, _, body = fetch(server.port, page)
            assert status == 200, body[:300]
        _, _, login = fetch(server.port, "/admin/login/")
        stylesheet = re.search(rb'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', login)
        assert stylesheet, login[:1000]
        status, headers, css = fetch(server.port, stylesheet.group(1).decode())
        assert status == 200
        assert headers["content-type"].startswith("text/css")
        assert b"body" in css
        assert (static_root / "staticfiles.json").exists()
        assert "Collecting static files" in server.output()
    finally:
        server.__exit__(None, None, None)

    # A second start finds them current and does not collect again.
    with django_db_blocker.unblock():
        again = start(tmp_path, static_root, "second.log")
    try:
        assert fetch(again.port, "/admin/login/")[0] == 200
        assert "Collecting static files" not in again.output()
    finally:
        again.__exit__(None, None, None)


def test_a_source_newer_than_the_manifest_is_collected_again(tmp_path):
    env = server_environment("postgresql://rmm@db.invalid:5432/rmm", STATIC_ROOT=str(tmp_path / "static"))
    check = [sys.executable, "-m", "rmm.static_check"]
    first = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603
    assert first.returncode == 0, first.stderr
    assert "Collecting static files" in first.stderr
    manifest = tmp_path / "static" / "staticfiles.json"
    recorded = json.loads(manifest.read_text())["paths"]
    assert "admin/css/base.css" in recorded
    # As if collected before the sources were upgraded: older than any file of any installation (an hour back was
    # not enough where the virtual environment had been installed more than an hour before the test ran).
    os.utime(manifest, (86400, 86400))
    second = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603
    assert second.returncode == 0, second.stderr
    assert "changed" in second.stderr


def test_gunicorn_refuses_to_start_with_one_line_when_they_cannot_be_collected(tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    env = server_environment(
        "postgresql://rmm@db.invalid:5432/rmm",
        STATIC_ROOT=str(blocked / "static"),
        GUNICORN_BIND="127.0.0.1:0",
        WEB_CONCURRENCY="1",
        SCHEDULER_ENABLED="0",
    )
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "rmm" / "gunicorn.conf.py"), "rmm.wsgi"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # noqa: S603
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith("Static files are not collected")]
    assert len(refusals) == 1, result.stderr
    assert "Listening at" not in result.stderr
