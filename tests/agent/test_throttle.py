"""Refused enrollment keys and agent tokens are counted per address (accounts/throttle.py): past the limit the
refusals are 429 ``too_many_attempts`` with ``Retry-After``, while valid keys and tokens from that address are
served as before, without the throttle even being consulted."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from devices.models import Device
from orgs.models import EnrollmentKey
from tests.agent.conftest import BASE, assert_error, enroll, make_key
from tests.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

WRONG_TOKEN = "rmm_" + "f" * 64


def assert_retry_after(response, *, at_least: int = 890, at_most: int = 900) -> None:
    assert at_least <= int(response["Retry-After"]) <= at_most, response["Retry-After"]


@pytest.fixture
def limits(settings):
    settings.ENROLLMENT_MAX_FAILURES_PER_ADDRESS = 3
    settings.AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS = 3
    return settings


# --- enrollment --------------------------------------------------------------------------------------------------


def test_refused_enrollment_keys_from_one_address_get_429_past_the_limit(client, site, limits):
    for n in range(3):
        assert_error(enroll(client, f"wrong-key-{n}"), 401, "enrollment_key_not_found")

    refused = enroll(client, "wrong-key-again")
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused)
    assert_error(enroll(Client(REMOTE_ADDR="203.0.113.9"), "wrong-key"), 401, "enrollment_key_not_found")


def test_expired_revoked_and_exhausted_keys_count_as_refused_enrollments(client, site, limits):
    expired, _ = make_key(site, expires_at=timezone.now() - dt.timedelta(days=1))
    revoked, _ = make_key(site, revoked_at=timezone.now())
    exhausted, _ = make_key(site, max_usage=1, usage_count=1)
    assert_error(enroll(client, expired), 401, "enrollment_key_expired")
    assert_error(enroll(client, revoked), 401, "enrollment_key_revoked")
    assert_error(enroll(client, exhausted), 401, "enrollment_key_exhausted")

    assert_error(enroll(client, expired), 429, "too_many_attempts")


def test_a_valid_key_still_enrolls_from_an_address_past_its_limit(client, site, key, limits):
    for n in range(4):
        enroll(client, f"wrong-key-{n}")
    assert_error(enroll(client, "wrong-key"), 429, "too_many_attempts")

    assert enroll(client, key[0]).status_code == 201
    assert Device.objects.filter(site=site).count() == 1


def test_a_bad_enrollment_body_is_not_a_refused_key(client, site, limits):
    for _ in range(5):
        response = client.post(f"{BASE}/enroll", data="{}", content_type="application/json")
        assert_error(response, 400, "validation_error")
    assert_error(enroll(client, "wrong-key"), 401, "enrollment_key_not_found")


# --- agent tokens --------------------------------------------------------------------------------------------------


def test_refused_agent_tokens_from_one_address_get_429_on_every_endpoint_past_the_limit(agent, limits):
    for _ in range(3):
        assert_error(agent.heartbeat(token=WRONG_TOKEN), 401, "invalid_token")

    refused = agent.heartbeat(token=WRONG_TOKEN)
    assert_error(refused, 429, "too_many_attempts")
    assert_retry_after(refused)
    for response in (
        agent.get("config", token=WRONG_TOKEN),
        agent.get("commands", token=WRONG_TOKEN),
        agent.put("software", {"software": []}, token=WRONG_TOKEN),
        agent.post("rotate-token", token=WRONG_TOKEN),
    ):
        assert_error(response, 429, "too_many_attempts")
        assert "Retry-After" in response
    # A malformed or missing token is refused before any database access, and stays a free 401.
    assert_error(agent.post("rotate-token", token="malformed"), 401, "invalid_token")
    missing = agent.client.post(f"{BASE}/{'a' * 64}/heartbeat", data="{}", content_type="application/json")
    assert_error(missing, 401, "invalid_token")


def test_malformed_tokens_are_refused_without_being_counted(agent, limits, django_assert_num_queries):
    with django_assert_num_queries(0):
        for _ in range(10):
            assert_error(agent.heartbeat(token="rmm_malformed"), 401, "invalid_token")
    assert_error(agent.heartbeat(token=WRONG_TOKEN), 401, "invalid_token")


def test_a_valid_agent_is_served_from_an_address_past_its_limit_without_consulting_the_throttle(
    agent, limits, monkeypatch
):
    for _ in range(4):
        agent.heartbeat(token=WRONG_TOKEN)
    assert_error(agent.heartbeat(token=WRONG_TOKEN), 429, "too_many_attempts")

    from accounts import throttle

    def no_throttle_on_the_valid_path(*args, **kwargs):
        raise AssertionError("a valid agent call consulted the throttle")

    monkeypatch.setattr(throttle, "reserve", no_throttle_on_the_valid_path)
    assert agent.heartbeat().status_code == 200
    assert agent.get("config").status_code == 200
    assert agent.get("commands").status_code == 200


def test_other_refusals_of_an_agent_are_not_counted(agent, limits):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.DECOMMISSIONED)
    for _ in range(5):
        assert_error(agent.get("config"), 403, "device_decommissioned")
    assert_error(agent.get("config", token=WRONG_TOKEN), 401, "invalid_token")


def test_an_address_is_refused_only_within_the_window(agent, limits):
    for _ in range(4):
        agent.heartbeat(token=WRONG_TOKEN)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE recent_failures SET failed_at = ARRAY(SELECT t - interval '16 minutes' FROM unnest(failed_at) t)"
        )

    assert_error(agent.heartbeat(token=WRONG_TOKEN), 401, "invalid_token")


@pytest.mark.django_db(transaction=True)
def test_concurrent_refused_tokens_get_exactly_the_limit_of_401s(settings):
    settings.AGENT_TOKEN_MAX_FAILURES_PER_ADDRESS = 5

    def config(n: int) -> int:
        return Client().get(f"{BASE}/{n:064x}/config", headers={"authorization": f"Bearer {WRONG_TOKEN}"}).status_code

    assert Counter(run_concurrently(16, config)) == {401: 5, 429: 11}


@pytest.mark.django_db(transaction=True)
def test_concurrent_refused_enrollments_get_exactly_the_limit_of_401s(settings):
    settings.ENROLLMENT_MAX_FAILURES_PER_ADDRESS = 5

    statuses = run_concurrently(16, lambda n: enroll(Client(), f"wrong-key-{n}").status_code)

    assert Counter(statuses) == {401: 5, 429: 11}
    assert not EnrollmentKey.objects.exists() and not Device.objects.exists()


def test_agent_tokens_and_enrollments_are_counted_apart(agent, client, limits):
    for _ in range(3):
        agent.heartbeat(token=WRONG_TOKEN)
    assert_error(agent.heartbeat(token=WRONG_TOKEN), 429, "too_many_attempts")

    assert_error(enroll(client, "wrong-key"), 401, "enrollment_key_not_found")
