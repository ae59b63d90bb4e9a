"""Bearer tokens, device and tenant states, token rotation with its grace window, the config, and mTLS."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging

import pytest
from django.utils import timezone

from accounts.models import AuditLog
from devices.models import Device, DeviceTelemetry
from orgs.models import Organization, Partner
from tests.agent.conftest import BASE, assert_error

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("post", "heartbeat"),
    ("put", "software"),
    ("get", "commands"),
    ("post", "rotate-token"),
    ("get", "config"),
]


def call(agent, method: str, path: str, **kwargs):
    if method == "put":
        return agent.put(path, {"software": []}, **kwargs)
    if method == "post":
        body = {"agentVersion": "1.4.2"} if path == "heartbeat" else {}
        return agent.post(path, body, **kwargs)
    return agent.get(path, **kwargs)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_wrong_token_gets_401_invalid_token_everywhere(agent, method, path):
    assert_error(call(agent, method, path, token="rmm_" + "f" * 64), 401, "invalid_token")


def test_unknown_agent_wrong_token_and_malformed_headers_get_the_same_answer(agent, make_agent, client):
    other = make_agent()
    answers = [
        agent.heartbeat(token="rmm_" + "0" * 64),  # wrong token
        agent.heartbeat(token=other.token),  # another agent's token
        client.post(f"{BASE}/{'a' * 64}/heartbeat", data="{}", content_type="application/json",
                    headers=agent.auth()),  # unknown agent
        client.post(f"{BASE}/{agent.agent_id}/heartbeat", data="{}", content_type="application/json"),  # no header
        client.post(f"{BASE}/{agent.agent_id}/heartbeat", data="{}", content_type="application/json",
                    headers={"authorization": f"Token {agent.token}"}),  # wrong scheme
        client.post(f"{BASE}/{agent.agent_id}/heartbeat", data="{}", content_type="application/json",
                    headers={"authorization": "Bearer rmm_short"}),  # malformed token
    ]  # fmt: skip
    bodies = [assert_error(response, 401, "invalid_token") for response in answers]
    assert all(body == bodies[0] for body in bodies)


def test_a_valid_token_answers_heartbeat_and_config(agent):
    assert agent.heartbeat().status_code == 200
    response = agent.get("config")
    assert response.status_code == 200
    assert response.json() == {"heartbeatIntervalSeconds": 60, "metricsCollectionIntervalSeconds": 30}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_decommissioned_device_gets_403_device_decommissioned(agent, method, path):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.DECOMMISSIONED)
    assert_error(call(agent, method, path), 403, "device_decommissioned")


@pytest.mark.parametrize(("method", "path"), [e for e in ENDPOINTS if e[1] != "heartbeat"])
def test_a_quarantined_device_gets_403_device_quarantined(agent, method, path):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.QUARANTINED)
    assert_error(call(agent, method, path), 403, "device_quarantined")


def test_a_quarantined_heartbeat_gets_403_but_records_last_seen(agent):
    long_ago = timezone.now() - dt.timedelta(hours=3)
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.QUARANTINED, last_seen_at=long_ago)

    assert_error(agent.heartbeat(hostname="renamed"), 403, "device_quarantined")

    device = agent.device
    assert device.last_seen_at > long_ago
    assert device.status == Device.Status.QUARANTINED
    assert device.hostname == "ws-0042"  # nothing else is taken from a quarantined agent
    assert not DeviceTelemetry.objects.filter(device_id=agent.device_id).exists()


def test_a_decommissioned_heartbeat_records_nothing(agent):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.DECOMMISSIONED, last_seen_at=None)
    assert_error(agent.heartbeat(), 403, "device_decommissioned")
    assert agent.device.last_seen_at is None
    assert not DeviceTelemetry.objects.filter(device_id=agent.device_id).exists()


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("who", ["organization", "partner"])
def test_an_inactive_tenant_gets_403_tenant_inactive(agent, method, path, who):
    device = agent.device
    if who == "organization":
        Organization.objects.filter(pk=device.org_id).update(status=Organization.Status.SUSPENDED)
    else:
        Partner.objects.filter(organizations__id=device.org_id).update(status=Partner.Status.CHURNED)
    assert_error(call(agent, method, path), 403, "tenant_inactive")


def test_a_trial_organization_is_active(agent):
    Organization.objects.filter(pk=agent.device.org_id).update(status=Organization.Status.TRIAL)
    assert agent.heartbeat().status_code == 200


# ---- token rotation ----


def test_rotation_gives_a_new_token_and_the_old_one_works_for_five_minutes(agent):
    old = agent.token
    response = agent.post("rotate-token")

    assert response.status_code == 200
    new = response.json()["authToken"]
    assert new != old and new.startswith("rmm_") and len(new) == 68
    device = agent.device
    assert device.agent_token_hash == hashlib.sha256(new.encode()).hexdigest()
    assert device.previous_token_hash == hashlib.sha256(old.encode()).hexdigest()
    grace = device.previous_token_expires_at - timezone.now()
    assert dt.timedelta(minutes=4) < grace <= dt.timedelta(minutes=5)
    assert agent.heartbeat(token=new).status_code == 200
    assert agent.heartbeat(token=old).status_code == 200
    assert agent.get("config", token=old).status_code == 200

    audit = AuditLog.objects.get(action="device.rotate_token")
    assert audit.actor_device_id == device.pk and audit.org_id == device.org_id


def test_the_old_token_gets_401_once_the_grace_window_is_over(agent):
    old = agent.token
    agent.token = agent.post("rotate-token").json()["authToken"]
    Device.objects.filter(pk=agent.device_id).update(previous_token_expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert_error(agent.heartbeat(token=old), 401, "invalid_token")
    assert_error(agent.get("config", token=old), 401, "invalid_token")
    assert agent.heartbeat().status_code == 200


def test_a_second_rotation_ends_the_first_tokens_grace(agent):
    first = agent.token
    second = agent.post("rotate-token").json()["authToken"]
    third = agent.post("rotate-token", token=second).json()["authToken"]
    assert_error(agent.heartbeat(token=first), 401, "invalid_token")
    assert agent.heartbeat(token=second).status_code == 200
    assert agent.heartbeat(token=third).status_code == 200


def test_an_agent_that_lost_the_rotations_answer_is_told_to_rotate_again_and_keeps_its_token_meanwhile(agent):
    held = agent.token
    lost = agent.post("rotate-token").json()["authToken"]  # the answer never reached the agent

    answer = agent.heartbeat(token=held)
    assert answer.status_code == 200
    assert answer.json()["rotateToken"] is True  # before the grace ends, or it would be locked out
    response = agent.post("rotate-token", token=held)
    assert response.status_code == 200
    newest = response.json()["authToken"]

    device = agent.device
    assert device.agent_token_hash == hashlib.sha256(newest.encode()).hexdigest()
    assert device.previous_token_hash == hashlib.sha256(held.encode()).hexdigest()  # not the one it never had
    assert agent.heartbeat(token=held).status_code == 200  # still in its grace, should this answer be lost too
    assert_error(agent.heartbeat(token=lost), 401, "invalid_token")
    assert agent.heartbeat(token=newest).json()["rotateToken"] is False


def test_the_heartbeat_asks_for_rotation_when_the_token_is_older_than_the_maximum_age(agent, settings):
    assert agent.heartbeat().json()["rotateToken"] is False
    issued = timezone.now() - dt.timedelta(days=settings.AGENT_TOKEN_MAX_AGE_DAYS, minutes=1)
    Device.objects.filter(pk=agent.device_id).update(agent_token_issued_at=issued)
    assert agent.heartbeat().json()["rotateToken"] is True
    agent.token = agent.post("rotate-token").json()["authToken"]
    assert agent.heartbeat().json()["rotateToken"] is False


# ---- mTLS ----

SERIAL = "4A:3F:00:12:9B"


@pytest.fixture
def behind_proxy(settings):
    """The test client's 127.0.0.1 is a trusted TLS-terminating proxy."""
    settings.TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network("127.0.0.1/32")]
    return settings


def with_certificate(agent, *, verified="SUCCESS", serial=SERIAL):
    return agent.post(
        "heartbeat", {"agentVersion": "1.4.2"}, X_CLIENT_CERT_VERIFIED=verified, X_CLIENT_CERT_SERIAL=serial
    )


def test_mtls_off_ignores_certificate_headers(agent, behind_proxy):
    behind_proxy.AGENT_MTLS_MODE = "off"
    assert with_certificate(agent, verified="FAILED:unknown ca").status_code == 200
    assert agent.heartbeat().status_code == 200


def test_mtls_enforce_refuses_a_call_without_a_verified_matching_certificate(agent, behind_proxy):
    behind_proxy.AGENT_MTLS_MODE = "enforce"
    Device.objects.filter(pk=agent.device_id).update(mtls_cert_serial_number=SERIAL)

    assert_error(agent.heartbeat(), 403, "mtls_required")
    assert_error(with_certificate(agent, verified="FAILED:certificate expired"), 403, "mtls_required")
    assert_error(with_certificate(agent, serial="01:02"), 403, "mtls_required")
    assert_error(agent.get("config"), 403, "mtls_required")
    assert with_certificate(agent).status_code == 200
    assert with_certificate(agent, serial="4a3f00129b").status_code == 200  # same serial, other spelling


def test_mtls_enforce_does_not_believe_headers_from_an_untrusted_address(agent, settings):
    settings.AGENT_MTLS_MODE = "enforce"
    settings.TRUSTED_PROXY_NETWORKS = [ipaddress.ip_network("10.9.9.9/32")]
    Device.objects.filter(pk=agent.device_id).update(mtls_cert_serial_number=SERIAL)
    assert_error(with_certificate(agent), 403, "mtls_required")


def test_mtls_enforce_still_answers_401_first_for_a_wrong_token(agent, behind_proxy):
    behind_proxy.AGENT_MTLS_MODE = "enforce"
    assert_error(agent.heartbeat(token="rmm_" + "1" * 64), 401, "invalid_token")


def test_mtls_audit_logs_a_mismatch_and_lets_the_call_through(agent, behind_proxy, caplog):
    behind_proxy.AGENT_MTLS_MODE = "audit"
    Device.objects.filter(pk=agent.device_id).update(mtls_cert_serial_number=SERIAL)
    with caplog.at_level(logging.WARNING, logger="devices.agent_api"):
        assert with_certificate(agent, serial="01:02").status_code == 200
    assert any("mTLS audit" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="devices.agent_api"):
        assert with_certificate(agent).status_code == 200
    assert not any("mTLS audit" in record.getMessage() for record in caplog.records)


def _expire_certificate(agent, policy: str | None):
    device = agent.device
    Device.objects.filter(pk=device.pk).update(
        mtls_cert_serial_number=SERIAL, mtls_cert_expires_at=timezone.now() - dt.timedelta(hours=1)
    )
    if policy:
        Organization.objects.filter(pk=device.org_id).update(settings={"mtlsExpiredCertPolicy": policy})


def test_an_expired_certificate_quarantines_the_device_when_the_policy_says_so(agent):
    _expire_certificate(agent, "quarantine")

    assert_error(agent.heartbeat(), 403, "device_quarantined")

    device = agent.device
    assert device.status == Device.Status.QUARANTINED
    assert device.quarantined_reason == "mtls_cert_expired" and device.quarantined_at is not None
    assert device.last_seen_at is not None
    audit = AuditLog.objects.get(action="device.quarantine")
    assert audit.actor_device_id == device.pk and audit.details["reason"] == "mtls_cert_expired"
    assert_error(agent.get("config"), 403, "device_quarantined")
    assert AuditLog.objects.filter(action="device.quarantine").count() == 1


def test_an_expired_certificate_quarantines_on_any_call_not_only_the_heartbeat(agent):
    _expire_certificate(agent, "quarantine")
    assert_error(agent.get("config"), 403, "device_quarantined")
    assert agent.device.quarantined_reason == "mtls_cert_expired"


def test_an_expired_certificate_without_the_quarantine_policy_changes_nothing(agent):
    _expire_certificate(agent, None)
    assert agent.heartbeat().status_code == 200
    assert agent.device.status == Device.Status.ONLINE
