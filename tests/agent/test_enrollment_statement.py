"""Enrollment written by one statement (devices/services/enrollment.py): every row it must write, on both of its
paths (a key without device limits, and one whose organization or partner has a limit to lock and count first),
and nothing of a losing enrollment when agents race for a key's last uses or a tenant's last device."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.db import connection
from django.test import Client

from accounts.models import AuditLog
from devices.models import Device, DeviceHardware, DeviceNetworkInterface
from devices.services import enrollment, ingest
from orgs.models import Organization, Partner
from tests import factories
from tests.agent.conftest import enroll, make_key
from tests.concurrency import run_concurrently

pytestmark = pytest.mark.django_db

HARDWARE = {"cpuModel": "Intel(R) Core(TM) i7-1265U", "cpuCores": 10, "ramTotalMb": 16384, "manufacturer": None}
NETWORK = [
    {"name": "Ethernet", "mac": "00:1a:2b:3c:4d:5e", "ip": "10.0.0.42", "isPrimary": True},
    {"name": "Wi-Fi", "mac": "", "ip": "", "isPrimary": False},
]


def _limit(site, *, org: int | None = None, partner: int | None = None) -> None:
    Organization.objects.filter(pk=site.org_id).update(max_devices=org)
    Partner.objects.filter(pk=site.org.partner_id).update(max_devices=partner)


def _queued_for_group_refresh(device_id) -> list[list[str]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT changed FROM device_group_refresh_queue WHERE device_id = %s ORDER BY id", [device_id])
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize("limited", [False, True], ids=["no-limit", "organization-limit"])
def test_an_enrollment_writes_the_device_its_hardware_interfaces_and_one_audit_row(client, site, limited):
    if limited:
        _limit(site, org=10, partner=10)
    raw, key_row = make_key(site, max_usage=3)

    response = enroll(client, raw, hardwareInfo=HARDWARE, networkInfo=NETWORK)

    assert response.status_code == 201, response.content
    body = response.json()
    device = Device.objects.get(pk=body["deviceId"])
    assert (str(device.org_id), str(device.site_id), device.agent_id) == (
        body["orgId"],
        body["siteId"],
        body["agentId"],
    )
    assert device.created_at is not None and device.updated_at is not None and device.tags == []
    assert device.last_seen_ip == "127.0.0.1"
    hardware = DeviceHardware.objects.get(device=device)
    assert (hardware.cpu_model, hardware.cpu_cores, hardware.cpu_threads) == (HARDWARE["cpuModel"], 10, None)
    assert hardware.manufacturer == "" and hardware.org_id == device.org_id
    interfaces = DeviceNetworkInterface.objects.filter(device=device).order_by("interface_name")
    assert [(i.interface_name, i.ip_address, i.is_primary) for i in interfaces] == [
        ("Ethernet", "10.0.0.42", True),
        ("Wi-Fi", "", False),
    ]
    assert {i.org_id for i in interfaces} == {device.org_id}
    key_row.refresh_from_db()
    assert key_row.usage_count == 1
    (audit,) = AuditLog.objects.filter(action="device.enroll")
    assert (audit.actor_device_id, audit.actor_user_id, audit.org_id) == (device.pk, None, device.org_id)
    assert (audit.target_type, audit.target_id, audit.ip) == ("device", str(device.pk), "127.0.0.1")
    assert audit.details == {"enrollmentKeyId": str(key_row.pk), "keyPrefix": key_row.key_prefix}
    # The database's triggers saw the rows: the new device and its hardware and interfaces are queued for groups.
    assert sorted(_queued_for_group_refresh(device.pk)) == [["*"], ["hardware"], ["network"]]


def test_hardware_text_a_caller_leaves_none_is_stored_empty(site):
    raw, _ = make_key(site)
    hardware = SimpleNamespace(**{**dict.fromkeys(ingest.HARDWARE_COLUMNS), "cpu_cores": 4})
    facts = enrollment.EnrollFacts(
        hostname="h", os_type="linux", os_version="6", architecture="x86_64", agent_version="1", hardware=hardware
    )

    enrolled = enrollment.enroll_device(key=raw, facts=facts)

    stored = DeviceHardware.objects.get(device_id=enrolled.device.pk)
    assert (stored.cpu_cores, stored.cpu_threads, stored.manufacturer, stored.bios_version) == (4, None, "", "")


def test_a_refused_key_of_a_limited_organization_stores_nothing(client, site):
    _limit(site, org=10)
    raw, _ = make_key(site, max_usage=1, usage_count=1)

    response = enroll(client, raw, hardwareInfo=HARDWARE, networkInfo=NETWORK)

    assert response.status_code == 401
    assert response.json()["error"] == "enrollment_key_exhausted"
    assert not Device.objects.exists() and not AuditLog.objects.filter(action="device.enroll").exists()


def _race(raw_key: str, count: int) -> list[int]:
    return run_concurrently(
        count,
        lambda n: (
            enroll(Client(), raw_key, hostname=f"racer-{n}", hardwareInfo=HARDWARE, networkInfo=NETWORK).status_code
        ),
    )


def _assert_stored_devices(site, count: int) -> None:
    assert Device.objects.filter(site=site).count() == count
    assert DeviceHardware.objects.filter(org_id=site.org_id).count() == count
    assert DeviceNetworkInterface.objects.filter(org_id=site.org_id).count() == 2 * count
    assert AuditLog.objects.filter(action="device.enroll", org_id=site.org_id).count() == count


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limited", [False, True], ids=["no-limit", "organization-limit"])
def test_twelve_agents_racing_for_a_four_use_key_enroll_four_and_the_others_store_nothing(limited):
    site = factories.site()
    if limited:
        _limit(site, org=100)
    raw, key_row = make_key(site, max_usage=4)

    statuses = _race(raw, 12)

    assert sorted(statuses) == [201] * 4 + [401] * 8
    key_row.refresh_from_db()
    assert key_row.usage_count == 4
    _assert_stored_devices(site, 4)


@pytest.mark.django_db(transaction=True)
def test_concurrent_enrollments_never_pass_the_partner_device_limit():
    site = factories.site()
    _limit(site, partner=3)
    raw, key_row = make_key(site)

    statuses = _race(raw, 12)

    assert sorted(statuses) == [201] * 3 + [403] * 9
    key_row.refresh_from_db()
    assert key_row.usage_count == 3
    _assert_stored_devices(site, 3)
