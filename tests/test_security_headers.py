"""HTTPS settings and the Content-Security-Policy.

- Behind a TLS proxy (BEHIND_TLS_PROXY=1) a production configuration passes ``manage.py check --deploy`` with no
  warning: plain HTTP is redirected, HSTS is sent, X-Forwarded-Proto is believed. The settings parse strictly.
- Every HTML page (the admin, the API docs) carries a CSP that allows scripts from this server only, and the
  Swagger UI of /api/docs/ still works under it in a real browser (skipped only where no chromium is installed).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def production_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "SECRET_KEY"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "rmm.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": "postgresql://rmm@db.internal:5432/rmm",  # check --deploy does not connect
            "ALLOWED_HOSTS": "rmm.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://rmm.example.com",
            "BEHIND_TLS_PROXY": "1",
            **overrides,
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 (our own manage.py)
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_check_deploy_has_no_warnings_behind_a_tls_proxy():
    result = manage(production_env(), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_still_warns_when_https_is_not_configured():
    # The settings are off by default: a server that is not behind TLS must not redirect to a port nobody serves.
    result = manage(production_env(BEHIND_TLS_PROXY="0"), "check", "--deploy")
    assert "security.W004" in result.stderr + result.stdout
    assert "security.W008" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BEHIND_TLS_PROXY", "maybe"),
        ("SECURE_SSL_REDIRECT", "sometimes"),
        ("SECURE_HSTS_SECONDS", "a year"),
        ("SECURE_HSTS_SECONDS", "-1"),
        ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "2"),
        ("SECURE_HSTS_PRELOAD", "yes please"),
    ],
)
def test_a_wrong_https_setting_fails_at_start_up_naming_the_variable(variable, value):
    result = manage(production_env(**{variable: value}), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


_PROBE = """
import json
from django.test import Client
plain = Client().get("/api/v1/auth/me")
proxied = Client().get("/api/v1/auth/me", headers={"X-Forwarded-Proto": "https"})
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security")],
}))
"""


def test_behind_a_tls_proxy_plain_http_is_redirected_and_https_gets_hsts():
    result = manage(production_env(ALLOWED_HOSTS="testserver"), "shell", "-c", _PROBE)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["plain"] == [301, "https://testserver/api/v1/auth/me"]
    assert answers["proxied"] == [401, "max-age=31536000; includeSubDomains"]


@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/"])
def test_html_pages_carry_a_csp_that_allows_scripts_from_this_server_only(path):
    response = Client().get(path)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


def test_the_docs_page_has_no_inline_script():
    page = Client().get("/api/docs/").content.decode()
    assert page.count("<script") == page.count("<script src=")
    script = Client().get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()


@pytest.mark.django_db
def test_json_answers_do_not_carry_the_page_policy():
    response = Client().get("/api/v1/devices")
    assert response.status_code == 401
    assert "Content-Security-Policy" not in response


@pytest.mark.servers
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed (apt-get install -y chromium)")
def test_swagger_ui_renders_the_api_under_its_csp_in_a_real_browser(live_server):
    playwright = pytest.importorskip("playwright.sync_api")
    violations: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
            )
            response = page.goto(f"{live_server.url}/api/docs/")
            assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
            page.wait_for_selector(".opblock-tag", timeout=30_000)  # the operations' tags, collapsed
            assert page.locator(".opblock-tag").count() > 20
            assert page.locator("text=RMM technician API").count() >= 1
            page.locator(".opblock-tag", has_text="scripts").first.click()  # a tag opens on its operations
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() >= 5
        finally:
            browser.close()
    assert violations == []
