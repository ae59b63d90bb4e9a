"""The sign-in and second-factor throttles (technician-api.md, "Authentication"; accounts/throttle.py), and the
per-address throttle of refused API tokens: exact under concurrent requests, and never a lock-out of an account's
owner by strangers."""

from __future__ import annotations

import time
from collections import Counter

import pyotp
import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from tests.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
EMAIL = "tech@example.com"


def login(client, email=EMAIL, password=PASSWORD, ip="198.51.100.7", **extra):
    return client.post(
        "/api/v1/auth/login",
        {"email": email, "password": password, **extra},
        REMOTE_ADDR=ip,
        content_type="application/json",
    )


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"error", "message", "fields"}
    assert body["error"] == code, body
    return body


def assert_retry_after(response, *, at_most: int, at_least: int = 1) -> None:
    assert at_least <= int(response["Retry-After"]) <= at_most, response["Retry-After"]


def age_every_failure(seconds: int) -> None:
    """Move every counted failure ``seconds`` into the past, as if that much time had gone by."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE recent_failures SET failed_at = ARRAY(SELECT t - make_interval(secs => %s) FROM unnest(failed_at) t)",  # noqa: E501
            [seconds],
        )


@pytest.fixture
def user(db):
    return User.objects.create_user(EMAIL, PASSWORD, name="Tech")


@pytest.fixture
def quick_delays(settings):
    """The delay's real mechanism with milliseconds instead of seconds."""
    settings.LOGIN_DELAY_BASE_MS = 1
    settings.LOGIN_DELAY_MAX_MS = 8


# --- sign-in: one (email, address) pair and one address ----------------------------------------------------------


def test_ten_failures_of_one_email_from_one_address_get_429_with_retry_after_until_the_window_passes(
    client, user, quick_delays
):
    for _ in range(10):
        assert_error(login(client, password="wrong"), 401, "invalid_credentials")

    refused = login(client)  # even the right password
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused, at_least=890, at_most=900)

    age_every_failure(16 * 60)
    assert login(client).status_code == 200


def test_the_retry_after_counts_down_to_when_the_oldest_failure_leaves_the_window(client, user, quick_delays):
    for _ in range(10):
        login(client, password="wrong")
    age_every_failure(10 * 60)

    refused = login(client)
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused, at_least=290, at_most=300)


def test_fifty_failures_from_one_address_lock_that_address_for_every_email(client, user, quick_delays):
    for n in range(50):
        assert_error(login(client, email=f"guess{n}@example.com", password="wrong"), 401, "invalid_credentials")

    refused = login(client)  # another email, the right password, the same address
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused, at_least=890, at_most=900)
    assert login(client, ip="198.51.100.8").status_code == 200


def test_a_right_password_is_not_counted_as_a_failure(client, user, quick_delays):
    for _ in range(9):
        login(client, password="wrong")
    for _ in range(3):
        assert login(client).status_code == 200
    assert_error(login(client, password="wrong"), 401, "invalid_credentials")  # the tenth failure
    assert_error(login(client), 429, "too_many_attempts")


class SlowHasher(MD5PasswordHasher):
    """A password check that takes as long as a real one (Argon2's ~0.2 s), without its CPU and memory, so that
    concurrent requests are all inside their checks at once."""

    def verify(self, password, encoded):
        time.sleep(0.2)
        return super().verify(password, encoded)


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_passwords_for_one_email_get_exactly_ten_checks(settings, quick_delays):
    settings.PASSWORD_HASHERS = ["tests.accounts.test_throttle.SlowHasher"]
    User.objects.create_user(EMAIL, PASSWORD, name="Tech")

    answers = run_concurrently(16, lambda n: login(Client(), password=f"wrong {n}").status_code)

    assert Counter(answers) == {401: 10, 429: 6}


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_passwords_from_one_address_get_exactly_the_address_limit_of_checks(settings, quick_delays):
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 20

    answers = run_concurrently(30, lambda n: login(Client(), email=f"guess{n}@example.com").status_code)

    assert Counter(answers) == {401: 20, 429: 10}


# --- sign-in: one email from many addresses: delayed, never locked -------------------------------------------------


def test_failures_from_many_addresses_never_lock_the_owner_out(client, user, quick_delays):
    for n in range(30):
        assert_error(login(client, password="wrong", ip=f"203.0.113.{n}"), 401, "invalid_credentials")

    assert login(client, ip="192.0.2.1").status_code == 200  # a fresh address, after the delay


def test_each_attempt_beyond_ten_failures_of_an_email_waits_one_second_doubling_up_to_thirty(client, user, monkeypatch):
    from accounts import throttle

    waited: list[float] = []
    monkeypatch.setattr(throttle, "sleep", waited.append)  # the default settings: 1 s doubling, at most 30 s
    for n in range(10):
        login(client, password="wrong", ip=f"203.0.113.{n}")
    assert waited == []

    for n in range(10, 17):
        assert_error(login(client, password="wrong", ip=f"203.0.113.{n}"), 401, "invalid_credentials")
    assert login(client, ip="192.0.2.1").status_code == 200

    assert waited == [1, 2, 4, 8, 16, 30, 30, 30]


def test_the_delay_is_really_waited_and_stops_growing_at_its_cap(client, user, settings):
    settings.LOGIN_DELAY_BASE_MS = 100
    settings.LOGIN_DELAY_MAX_MS = 200
    for n in range(10):
        login(client, password="wrong", ip=f"203.0.113.{n}")

    took = []
    for n in range(10, 14):
        started = time.monotonic()
        login(client, password="wrong", ip=f"203.0.113.{n}")
        took.append(time.monotonic() - started)

    for seconds, delay in zip(took, [0.1, 0.2, 0.2, 0.2], strict=True):
        assert seconds >= delay, took
    assert took[3] < 0.8, took  # doubling on without the cap would have waited 0.8 s


def test_the_delay_applies_to_unknown_emails_as_to_known_ones(client, db, monkeypatch):
    from accounts import throttle

    waited: list[float] = []
    monkeypatch.setattr(throttle, "sleep", waited.append)
    for n in range(12):
        login(client, email="ghost@example.com", password="wrong", ip=f"203.0.113.{n}")

    assert waited == [1, 2]


# --- sign-in: the same answer in the same time ------------------------------------------------------------------


class CountingHasher(MD5PasswordHasher):
    verified = 0

    def verify(self, password, encoded):
        type(self).verified += 1
        return super().verify(password, encoded)


@pytest.fixture
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["tests.accounts.test_throttle.CountingHasher"]
    CountingHasher.verified = 0
    return CountingHasher


def test_an_unknown_email_and_an_unset_password_cost_one_password_check_like_a_wrong_password(
    client, counting_hasher, quick_delays
):
    User.objects.create_user(EMAIL, PASSWORD, name="Tech")
    User.objects.create_user("invited@example.com", None, name="Invited")  # no usable password yet
    answers = []
    for email in (EMAIL, "ghost@example.com", "invited@example.com"):
        before = counting_hasher.verified
        answers.append(assert_error(login(client, email=email, password="wrong"), 401, "invalid_credentials"))
        assert counting_hasher.verified - before == 1, email

    assert answers[0] == answers[1] == answers[2]


# --- second factor: five wrong codes of one user, whichever door ---------------------------------------------------


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


@pytest.fixture
def mfa_user(user):
    """``user`` with MFA on: (user, secret, recovery codes, a client signed in with an API token)."""
    api = APIClient()
    api.force_authenticate(user)
    secret = api.post("/api/v1/auth/mfa/setup").json()["secret"]
    codes = api.post("/api/v1/auth/mfa/enable", {"totp": code_at(secret)}, format="json").json()["recoveryCodes"]
    token = login(Client(), totp=codes[-1]).json()["token"]
    return user, secret, codes, APIClient(HTTP_AUTHORIZATION=f"Bearer {token}")


def test_five_wrong_codes_on_mfa_disable_then_429_even_for_a_right_code(mfa_user):
    user, secret, _, api = mfa_user
    for _ in range(5):
        assert_error(api.post("/api/v1/auth/mfa/disable", {"totp": "000000"}, format="json"), 400, "invalid_totp")

    refused = api.post("/api/v1/auth/mfa/disable", {"totp": code_at(secret, 1)}, format="json")
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused, at_least=890, at_most=900)
    user.refresh_from_db()
    assert user.mfa_enabled

    age_every_failure(16 * 60)
    assert api.post("/api/v1/auth/mfa/disable", {"totp": code_at(secret, 1)}, format="json").status_code == 200


def test_five_wrong_codes_on_recovery_codes_then_429(mfa_user):
    _, _, codes, api = mfa_user
    for _ in range(5):
        response = api.post("/api/v1/auth/mfa/recovery-codes", {"totp": "11111111"}, format="json")
        assert_error(response, 400, "invalid_totp")

    refused = api.post("/api/v1/auth/mfa/recovery-codes", {"totp": codes[0]}, format="json")
    assert_error(refused, 429, "too_many_attempts")
    assert "Retry-After" in refused


def test_five_wrong_codes_on_mfa_enable_then_429(user):
    api = APIClient()
    api.force_authenticate(user)
    secret = api.post("/api/v1/auth/mfa/setup").json()["secret"]
    for _ in range(5):
        assert_error(api.post("/api/v1/auth/mfa/enable", {"totp": "000000"}, format="json"), 400, "invalid_totp")

    refused = api.post("/api/v1/auth/mfa/enable", {"totp": code_at(secret)}, format="json")
    assert_error(refused, 429, "too_many_attempts")
    assert "Retry-After" in refused
    user.refresh_from_db()
    assert not user.mfa_enabled


def test_five_wrong_codes_at_login_then_429_from_any_address(client, mfa_user, quick_delays):
    _, secret, _, _ = mfa_user
    for n in range(5):
        assert_error(login(client, totp="000000", ip=f"203.0.113.{n}"), 401, "invalid_totp")

    refused = login(client, totp=code_at(secret, 1), ip="192.0.2.1")
    assert_error(refused, 429, "too_many_attempts")
    assert "Retry-After" in refused


def test_wrong_codes_count_together_across_doors(client, mfa_user, quick_delays):
    _, _, codes, api = mfa_user
    for _ in range(3):
        login(client, totp="000000")
    for _ in range(2):
        api.post("/api/v1/auth/mfa/disable", {"totp": "000000"}, format="json")

    refused = api.post("/api/v1/auth/mfa/recovery-codes", {"totp": codes[0]}, format="json")
    assert_error(refused, 429, "too_many_attempts")


def test_a_right_code_is_not_counted_as_a_wrong_one(mfa_user):
    _, _, codes, api = mfa_user
    for _ in range(4):
        api.post("/api/v1/auth/mfa/disable", {"totp": "000000"}, format="json")
    fresh = api.post("/api/v1/auth/mfa/recovery-codes", {"totp": codes[0]}, format="json")
    assert fresh.status_code == 200
    assert_error(api.post("/api/v1/auth/mfa/disable", {"totp": "000000"}, format="json"), 400, "invalid_totp")
    assert_error(api.post("/api/v1/auth/mfa/disable", {"totp": "000000"}, format="json"), 429, "too_many_attempts")


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_codes_get_exactly_five_checks():
    from accounts.auth import issue_api_token

    user = User.objects.create_user(EMAIL, PASSWORD, name="Tech")
    user.mfa_secret, user.mfa_enabled = pyotp.random_base32(), True
    user.save()

    token, _ = issue_api_token(user=user, name="test", lifetime=None)

    def disable(n: int) -> int:
        return (
            APIClient(HTTP_AUTHORIZATION=f"Bearer {token}")
            .post("/api/v1/auth/mfa/disable", {"totp": f"{n:06d}"}, format="json")
            .status_code
        )

    answers = run_concurrently(12, disable)

    assert Counter(answers) == {400: 5, 429: 7}


# --- refused API tokens, per address -------------------------------------------------------------------------------


def test_refused_api_tokens_from_one_address_get_429_past_the_limit_and_valid_ones_still_work(user, settings):
    settings.API_TOKEN_MAX_FAILURES_PER_ADDRESS = 3
    from accounts.auth import issue_api_token

    token, _ = issue_api_token(user=user, name="script", lifetime=None)
    guesser = APIClient(REMOTE_ADDR="203.0.113.66")
    for n in range(3):
        response = guesser.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer rmmu_guess{n}")
        assert_error(response, 401, "invalid_token")

    refused = guesser.get("/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer rmmu_guess-again")
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused, at_least=890, at_most=900)
    assert guesser.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    elsewhere = APIClient(REMOTE_ADDR="203.0.113.67").get("/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer rmmu_x")
    assert_error(elsewhere, 401, "invalid_token")


def test_refused_mfa_setup_tokens_count_with_api_tokens(db, settings):
    settings.API_TOKEN_MAX_FAILURES_PER_ADDRESS = 2
    guesser = APIClient(REMOTE_ADDR="203.0.113.66")
    for _ in range(2):
        assert_error(guesser.post("/api/v1/auth/mfa/setup", HTTP_AUTHORIZATION="Bearer rmms_x"), 401, "invalid_token")

    assert_error(guesser.post("/api/v1/auth/mfa/setup", HTTP_AUTHORIZATION="Bearer rmms_y"), 429, "too_many_attempts")


# --- housekeeping ------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the scheduler keeps its books on a connection of its own
def test_the_periodic_job_purges_rows_with_no_failure_in_the_window(client, user, quick_delays):
    from django.core.management import call_command

    from accounts.models import RecentFailures

    login(client, password="wrong")
    login(client, password="wrong", ip="192.0.2.1")
    RecentFailures.objects.filter(subject__contains="192.0.2.1").update(
        updated_at=RecentFailures.objects.values("updated_at")[:1][0]["updated_at"].replace(year=2000)
    )

    call_command("run_periodic")

    assert not RecentFailures.objects.filter(subject__contains="192.0.2.1").exists()
    assert RecentFailures.objects.filter(subject__contains="198.51.100.7").exists()
