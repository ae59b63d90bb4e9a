"""The database itself refuses what would break the data model: bad enum values, duplicate agent ids,
rows that cross tenants, duplicate memberships, edits to the audit log."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import IntegrityError, InternalError, ProgrammingError, connection, transaction

from accounts.models import AuditLog
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership, DeviceSoftware
from orgs.models import EnrollmentKey, Organization, Partner
from tests import factories

pytestmark = pytest.mark.django_db

OUR_APPS = ("orgs", "accounts", "devices", "jobs")


def _check_constraint_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE contype = 'c'")
        return {row[0] for row in cursor.fetchall()}


def test_every_enum_column_has_a_check_constraint_in_the_database():
    names = _check_constraint_names()
    missing = []
    for model in apps.get_models():
        if model._meta.app_label not in OUR_APPS:
            continue
        for field in model._meta.concrete_fields:
            if field.choices and field.get_internal_type() == "CharField":
                expected = f"{model._meta.app_label}_{model._meta.model_name}_{field.name}_valid"
                if expected not in names:
                    missing.append(expected)
    assert missing == []


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: factories.partner(), "status"),
        (lambda: factories.partner(), "type"),
        (lambda: factories.organization(), "status"),
        (lambda: factories.device(), "status"),
        (lambda: factories.device(), "os_type"),
    ],
    ids=["partner.status", "partner.type", "organization.status", "device.status", "device.os_type"],
)
def test_the_database_refuses_a_bad_enum_value(build, field):
    row = build()
    with pytest.raises(IntegrityError, match="_valid"), transaction.atomic():
        type(row).objects.filter(pk=row.pk).update(**{field: "bogus"})


def test_the_database_refuses_a_bad_command_status():
    dev = factories.device()
    with pytest.raises(IntegrityError), transaction.atomic():
        DeviceCommand.objects.create(device=dev, org_id=dev.org_id, type="reboot", status="lost")


def test_the_database_refuses_a_duplicate_agent_id():
    first = factories.device()
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.device(agent_id=first.agent_id)


def test_the_database_refuses_a_device_in_a_site_of_another_organization():
    site_a = factories.site()
    site_b = factories.site()
    with pytest.raises(IntegrityError, match="devices_device_site_in_org"), transaction.atomic():
        factories.device(site_=site_b, org_id=site_a.org_id)


def test_moving_a_device_to_a_site_of_another_organization_is_refused():
    dev = factories.device()
    other_site = factories.site()
    with pytest.raises(IntegrityError, match="devices_device_site_in_org"), transaction.atomic():
        Device.objects.filter(pk=dev.pk).update(site=other_site)


def test_the_database_refuses_an_enrollment_key_for_a_site_of_another_organization():
    site_a, site_b = factories.site(), factories.site()
    with pytest.raises(IntegrityError, match="orgs_enrollmentkey_site_in_org"), transaction.atomic():
        EnrollmentKey.objects.create(org=site_a.org, site=site_b, name="k", key_prefix="rmmek_ab", key_hash="0" * 64)


def test_the_database_refuses_an_inventory_row_with_another_tenants_org_id():
    dev = factories.device()
    stranger = factories.organization()
    with pytest.raises(IntegrityError, match="devices_devicesoftware_device_in_org"), transaction.atomic():
        DeviceSoftware.objects.create(device=dev, org=stranger, name="7-Zip")


def test_the_database_refuses_a_duplicate_group_membership():
    dev = factories.device()
    group = DeviceGroup.objects.create(org_id=dev.org_id, name="Servers")
    DeviceGroupMembership.objects.create(device=dev, group=group, org_id=dev.org_id)
    with pytest.raises(IntegrityError, match="devicegroupmembership_unique"), transaction.atomic():
        DeviceGroupMembership.objects.create(device=dev, group=group, org_id=dev.org_id)


def test_the_database_refuses_a_membership_in_a_group_of_another_organization():
    dev = factories.device()
    foreign_group = DeviceGroup.objects.create(org=factories.organization(), name="Theirs")
    with pytest.raises(IntegrityError), transaction.atomic():
        DeviceGroupMembership.objects.create(device=dev, group=foreign_group, org_id=dev.org_id)


def test_a_dynamic_group_needs_rules_and_a_static_group_has_none():
    org = factories.organization()
    with pytest.raises(IntegrityError, match="rules_iff_dynamic"), transaction.atomic():
        DeviceGroup.objects.create(org=org, name="No rules", type="dynamic")
    with pytest.raises(IntegrityError, match="rules_iff_dynamic"), transaction.atomic():
        DeviceGroup.objects.create(org=org, name="Rules", type="static", filter_rules={"operator": "AND"})


def test_an_enrollment_key_cannot_be_used_beyond_its_max_usage():
    site = factories.site()
    key = EnrollmentKey.objects.create(
        org=site.org, site=site, name="k", key_prefix="rmmek_ab", key_hash="1" * 64, max_usage=1, usage_count=1
    )
    with pytest.raises(IntegrityError, match="usage_within_max"), transaction.atomic():
        EnrollmentKey.objects.filter(pk=key.pk).update(usage_count=2)


def test_user_emails_are_unique_regardless_of_case(django_user_model):
    django_user_model.objects.create_user("Tech@Example.com", "pw-123456789")
    with pytest.raises(IntegrityError), transaction.atomic():
        django_user_model.objects.create(email="tech@example.COM")


def test_deleting_a_device_deletes_its_inventory_and_telemetry():
    dev = factories.device()
    DeviceSoftware.objects.create(device=dev, org_id=dev.org_id, name="7-Zip")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO device_telemetry (device_id, org_id, ts) VALUES (%s, %s, now())", [dev.pk, dev.org_id]
        )
        cursor.execute("DELETE FROM devices WHERE id = %s", [dev.pk])
        cursor.execute("SELECT count(*) FROM device_telemetry WHERE device_id = %s", [dev.pk])
        assert cursor.fetchone() == (0,)
    assert not DeviceSoftware.objects.filter(device_id=dev.pk).exists()


def test_an_organization_with_devices_cannot_be_deleted():
    dev = factories.device()
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: check now, not at the test's commit.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("DELETE FROM organizations WHERE id = %s", [dev.org_id])
    assert Organization.objects.filter(pk=dev.org_id).exists()
    assert Partner.objects.filter(pk=dev.org.partner_id).exists()


def test_the_audit_log_is_append_only():
    entry = AuditLog.objects.create(action="device.quarantine", target_type="device", target_id="x")
    with pytest.raises((InternalError, ProgrammingError), match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=entry.pk).update(action="device.approve")
    with pytest.raises((InternalError, ProgrammingError), match="append-only"), transaction.atomic():
        AuditLog.objects.filter(pk=entry.pk).delete()
    assert AuditLog.objects.get(pk=entry.pk).action == "device.quarantine"


def test_a_retention_job_may_purge_the_audit_log_when_it_says_so():
    entry = AuditLog.objects.create(action="device.quarantine")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL rmm.audit_log_purge = 'on'")
        AuditLog.objects.filter(pk=entry.pk).delete()
    assert not AuditLog.objects.filter(pk=entry.pk).exists()
