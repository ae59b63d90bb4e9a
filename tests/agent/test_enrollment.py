"""POST /api/v1/agents/enroll: a key, the machine's facts, a device and its credentials; or a refusal."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditLog
from devices.models import Device, DeviceHardware, DeviceNetworkInterface
from orgs.models import EnrollmentKey, Organization, Partner
from tests import factories
from tests.agent.conftest import BASE, assert_error, enroll, enrollment_body, make_key
from tests.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

HARDWARE = {
    "cpuModel": "Intel(R) Core(TM) i7-1265U",
    "cpuCores": 10,
    "cpuThreads": 12,
    "ramTotalMb": 16384,
    "diskTotalGb": 512.0,
    "gpuModel": "Intel Iris Xe",
    "serialNumber": "5CG1234XYZ",
    "manufacturer": "Dell Inc.",
    "model": "Latitude 5440",
    "biosVersion": "1.14.0",
}
NETWORK = [
    {"name": "Ethernet", "mac": "00:1a:2b:3c:4d:5e", "ip": "10.0.0.42", "isPrimary": True},
    {"name": "Wi-Fi", "mac": "00:1a:2b:3c:4d:5f", "ip": "fe80::1", "isPrimary": False},
]


def test_an_agent_enrolls_with_a_valid_key_and_gets_its_credentials(client, site, key):
    raw, key_row = key
    response = enroll(client, raw, hardwareInfo=HARDWARE, networkInfo=NETWORK)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"agentId", "deviceId", "authToken", "orgId", "siteId", "config"}
    assert re.fullmatch(r"[0-9a-f]{64}", body["agentId"])
    assert re.fullmatch(r"rmm_[0-9a-f]{64}", body["authToken"])
    assert body["orgId"] == str(site.org_id) and body["siteId"] == str(site.pk)
    assert body["config"] == {"heartbeatIntervalSeconds": 60, "metricsCollectionIntervalSeconds": 30}

    device = Device.objects.get(pk=body["deviceId"])
    assert device.agent_id == body["agentId"]
    assert device.agent_token_hash == hashlib.sha256(body["authToken"].encode()).hexdigest()
    assert device.agent_token_issued_at is not None
    assert device.status == Device.Status.ONLINE
    assert device.enrolled_at is not None and device.enrolled_by is None
    assert (device.hostname, device.os_type, device.os_version, device.os_build) == (
        "ws-0042",
        "windows",
        "11",
        "22631",
    )
    assert (device.architecture, device.agent_version) == ("amd64", "1.4.2")
    assert (device.org_id, device.site_id) == (site.org_id, site.pk)

    hardware = DeviceHardware.objects.get(device=device)
    assert (hardware.cpu_model, hardware.cpu_cores, hardware.ram_total_mb) == (HARDWARE["cpuModel"], 10, 16384)
    assert hardware.serial_number == "5CG1234XYZ" and hardware.org_id == site.org_id
    interfaces = {i.interface_name: i for i in DeviceNetworkInterface.objects.filter(device=device)}
    assert set(interfaces) == {"Ethernet", "Wi-Fi"}
    assert interfaces["Ethernet"].ip_type == "ipv4" and interfaces["Ethernet"].is_primary
    assert interfaces["Wi-Fi"].ip_type == "ipv6" and interfaces["Wi-Fi"].org_id == site.org_id

    key_row.refresh_from_db()
    assert key_row.usage_count == 1
    audit = AuditLog.objects.get(action="device.enroll")
    assert audit.actor_device_id == device.pk and audit.org_id == site.org_id
    assert audit.details["enrollmentKeyId"] == str(key_row.pk)


def test_the_key_is_found_by_its_hmac_not_stored_in_clear(client, key):
    raw, _ = key
    assert raw not in json.dumps(list(EnrollmentKey.objects.values()), default=str)
    assert enroll(client, raw).status_code == 201


def test_enrollment_without_hardware_or_network_stores_neither(client, key):
    body = enroll(client, key[0]).json()
    assert not DeviceHardware.objects.filter(device_id=body["deviceId"]).exists()
    assert not DeviceNetworkInterface.objects.filter(device_id=body["deviceId"]).exists()


def test_an_unknown_key_gets_401_enrollment_key_not_found(client, site):
    refused = enroll(client, "ek_" + "0" * 64)
    assert_error(refused, 401, "enrollment_key_not_found")
    assert refused["WWW-Authenticate"] == "Bearer"
    assert not Device.objects.exists()


def test_an_expired_key_gets_401_enrollment_key_expired(client, site):
    raw, key_row = make_key(site, expires_at=timezone.now() - dt.timedelta(minutes=1))
    body = assert_error(enroll(client, raw), 401, "enrollment_key_expired")
    assert "expired at" in body["message"]
    key_row.refresh_from_db()
    assert key_row.usage_count == 0 and not Device.objects.exists()


def test_an_exhausted_key_gets_401_enrollment_key_exhausted(client, site):
    raw, _ = make_key(site, max_usage=1)
    assert enroll(client, raw).status_code == 201
    assert_error(enroll(client, raw, hostname="second"), 401, "enrollment_key_exhausted")
    assert Device.objects.count() == 1


def test_a_revoked_key_gets_401_enrollment_key_revoked(client, site):
    raw, _ = make_key(site, revoked_at=timezone.now())
    assert_error(enroll(client, raw), 401, "enrollment_key_revoked")
    assert not Device.objects.exists()


@pytest.mark.parametrize("status", list(Organization.INACTIVE_STATUSES))
def test_an_inactive_organization_gets_403_tenant_inactive(client, site, status):
    Organization.objects.filter(pk=site.org_id).update(status=status)
    raw, key_row = make_key(site)
    assert_error(enroll(client, raw), 403, "tenant_inactive")
    key_row.refresh_from_db()
    assert key_row.usage_count == 0 and not Device.objects.exists()


@pytest.mark.parametrize("status", list(Partner.INACTIVE_STATUSES))
def test_an_inactive_partner_gets_403_tenant_inactive(client, site, status):
    Partner.objects.filter(pk=site.org.partner_id).update(status=status)
    assert_error(enroll(client, make_key(site)[0]), 403, "tenant_inactive")


def test_an_organization_at_its_device_limit_gets_403_device_limit_reached(client, site):
    Organization.objects.filter(pk=site.org_id).update(max_devices=2)
    factories.device(site)
    factories.device(site, status=Device.Status.DECOMMISSIONED)  # does not count
    raw, key_row = make_key(site)
    assert enroll(client, raw).status_code == 201
    body = assert_error(enroll(client, raw, hostname="third"), 403, "device_limit_reached")
    assert "organization" in body["message"]
    key_row.refresh_from_db()
    assert key_row.usage_count == 1


def test_a_partner_at_its_device_limit_gets_403_device_limit_reached(client, site):
    Partner.objects.filter(pk=site.org.partner_id).update(max_devices=1)
    factories.device(factories.site(factories.organization(site.org.partner)))  # another org of the partner
    body = assert_error(enroll(client, make_key(site)[0]), 403, "device_limit_reached")
    assert "partner" in body["message"]


def test_invalid_facts_get_400_naming_each_field_and_store_nothing(client, key):
    response = enroll(
        client,
        key[0],
        hostname="",
        osType="beos",
        architecture=None,
        hardwareInfo={"cpuCores": "ten", "ramTotalMb": -1},
        networkInfo=[NETWORK[0], {"name": "x", "ip": "999.1.1.1"}, "eth0"],
    )
    body = assert_error(response, 400, "validation_error")
    assert set(body["fields"]) == {
        "hostname",
        "osType",
        "architecture",
        "hardwareInfo.cpuCores",
        "hardwareInfo.ramTotalMb",
        "networkInfo[1].ip",
        "networkInfo[2]",
    }
    assert not Device.objects.exists()
    key[1].refresh_from_db()
    assert key[1].usage_count == 0


def test_a_missing_enrollment_key_is_a_400_not_a_401(client, site):
    response = client.post(f"{BASE}/enroll", data=json.dumps({"hostname": "x"}), content_type="application/json")
    assert "enrollmentKey" in assert_error(response, 400, "validation_error")["fields"]


def test_more_than_100_network_interfaces_get_413_too_many_items(client, key):
    response = enroll(client, key[0], networkInfo=[NETWORK[0]] * 101)
    assert_error(response, 413, "too_many_items")
    assert not Device.objects.exists()


def test_enroll_works_with_a_trailing_slash_and_refuses_get(client, key):
    body = json.dumps(enrollment_body(key[0]))
    response = client.post(f"{BASE}/enroll/", data=body, content_type="application/json")
    assert response.status_code == 201
    assert_error(client.get(f"{BASE}/enroll"), 405, "method_not_allowed")


def _enroll_concurrently(raw_key: str, count: int) -> list[int]:
    return run_concurrently(count, lambda n: enroll(Client(), raw_key, hostname=f"racer-{n}").status_code)


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_enrollments_on_a_five_use_key_enroll_exactly_five():
    site = factories.site()
    raw, key_row = make_key(site, max_usage=5)

    statuses = _enroll_concurrently(raw, 20)

    assert sorted(statuses) == [201] * 5 + [401] * 15
    key_row.refresh_from_db()
    assert key_row.usage_count == 5
    assert Device.objects.filter(site=site).count() == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_enrollments_never_pass_the_organization_device_limit():
    site = factories.site()
    Organization.objects.filter(pk=site.org_id).update(max_devices=3)
    raw, _ = make_key(site)

    statuses = _enroll_concurrently(raw, 12)

    assert sorted(statuses) == [201] * 3 + [403] * 9
    assert Device.objects.filter(org_id=site.org_id).count() == 3
