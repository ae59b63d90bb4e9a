"""The admin as the schema browser: every model has a page, pages answer fast, secrets never show."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from io import StringIO

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import (
    ApiToken,
    AuditLog,
    MfaRecoveryCode,
    OrganizationUser,
    PartnerUser,
    Permission,
    RecentFailures,
    Role,
    RolePermission,
    User,
)
from alerts.models import Alert, AlertRule, AlertState, MaintenanceWindow, Notification, NotificationChannel
from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceGroupMembershipLog,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.services import credentials
from jobs.models import JobRun, ScheduledJob
from orgs.models import EnrollmentKey, Organization, Partner, Site
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion
from tests.doors import admin_url

OUR_APPS = ("jobs", *settings.DOMAIN_APPS)
EMPTY_JSON_FIELDS = {"address": "{}", "contact": "{}", "settings": "{}"}
# The management form of the (read-only, empty) members inline on a new group's page.
MEMBER_FORMSET = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Schema:
    """One of everything, with the secrets that must never appear in a page."""

    partner: Partner
    org_a: Organization
    org_b: Organization
    site_a: Site
    site_b: Site
    key: EnrollmentKey
    member: User
    token: ApiToken
    devices: list[Device]
    group: DeviceGroup
    secrets: dict[str, str]


def make_device(org: Organization, site: Site, name: str, *, serial: str = "") -> Device:
    device = Device.objects.create(
        org=org,
        site=site,
        agent_id=sha256_hex(f"agent {name}"),
        agent_token_hash=sha256_hex(f"token {name}"),
        previous_token_hash=sha256_hex(f"previous token {name}"),
        previous_token_expires_at=timezone.now() + dt.timedelta(hours=1),
        hostname=name,
        os_type=Device.OsType.WINDOWS,
        os_version="11 Pro",
        agent_version="1.4.0",
        last_seen_at=timezone.now(),
        last_seen_ip="192.0.2.10",
        enrolled_at=timezone.now(),
        tags=["demo"],
    )
    DeviceHardware.objects.create(
        device=device, org=org, manufacturer="Dell", model="OptiPlex 7090", serial_number=serial or f"SN-{name}"
    )
    return device


def add_inventory(device: Device) -> None:
    """A few rows of every inventory kind, commands and telemetry for ``device``."""
    org = device.org
    DeviceNetworkInterface.objects.create(
        device=device, org=org, interface_name="eth0", mac_address="00:11:22:33:44:55", ip_address="192.0.2.10"
    )
    DeviceDisk.objects.create(device=device, org=org, mount_point="C:", total_gb=512, used_gb=100, used_percent=19.5)
    DeviceSoftware.objects.bulk_create(
        DeviceSoftware(device=device, org=org, name=name, version="1.0") for name in ("7-Zip", "Firefox", "Git")
    )
    DeviceRegistryEntry.objects.create(
        device=device, org=org, registry_path=r"HKLM\SOFTWARE\Demo", value_name="Enabled", value_data="1"
    )
    DeviceConfigEntry.objects.create(
        device=device, org=org, file_path="/etc/ssh/sshd_config", config_key="PermitRootLogin", config_value="no"
    )
    DeviceNetworkConnection.objects.create(
        device=device, org=org, protocol="tcp", local_addr="192.0.2.10", local_port=3389, state="LISTEN"
    )
    DeviceCommand.objects.create(device=device, org=org, type=DeviceCommand.Type.REBOOT)
    now = timezone.now()
    DeviceTelemetry.objects.bulk_create(
        DeviceTelemetry(device=device, org=org, ts=now - dt.timedelta(minutes=n), cpu_percent=10 + n, ram_percent=50)
        for n in range(3)
    )


@pytest.fixture
def schema(db) -> Schema:
    partner = Partner.objects.create(name="Demo MSP", slug="demo-msp")
    org_a = Organization.objects.create(partner=partner, name="Acme", slug="acme")
    org_b = Organization.objects.create(partner=partner, name="Globex", slug="globex")
    site_a = Site.objects.create(org=org_a, name="Head office")
    site_b = Site.objects.create(org=org_b, name="Plant")

    raw_key = "ek_" + "1" * 64
    key = EnrollmentKey.objects.create(
        org=org_a,
        site=site_a,
        name="Office laptops",
        key_prefix=raw_key[:8],
        key_hash=credentials.hash_enrollment_key(raw_key),
    )

    permission = Permission.objects.create(resource="devices", action="read")
    partner_role = Role.objects.create(name="Technician", scope=Role.Scope.PARTNER, partner=partner)
    org_role = Role.objects.create(name="Org viewer", scope=Role.Scope.ORGANIZATION, partner=partner)
    RolePermission.objects.create(role=partner_role, permission=permission)
    RolePermission.objects.create(role=org_role, permission=permission)
    member = User.objects.create_user(email="tech@example.com", password="a long password 1", name="Tech")
    member.mfa_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    member.mfa_enabled = True
    member.save()
    PartnerUser.objects.create(partner=partner, user=member, role=partner_role, org_access="selected")
    membership = OrganizationUser.objects.create(org=org_b, user=member, role=org_role)
    membership.sites.add(site_b)
    token = ApiToken.objects.create(
        user=member, name="script", key_prefix="rmmu_abcdef", key_hash=sha256_hex("rmmu_abcdef secret")
    )
    recovery_hash = sha256_hex("recovery code")
    MfaRecoveryCode.objects.create(user=member, code_hash=recovery_hash)
    RecentFailures.objects.create(scope="sign_in_email", subject="tech@example.com", failed_at=[timezone.now()])
    job = ScheduledJob.objects.create(name="mark_offline", interval_seconds=30, next_run_at=timezone.now())
    JobRun.objects.create(job=job, scheduled_for=timezone.now(), started_at=timezone.now(), runner="host:1")

    devices = [make_device(org_a, site_a, f"ACME-PC-{n}") for n in (1, 2)] + [make_device(org_b, site_b, "GLOBEX-SRV")]
    for device in devices:
        add_inventory(device)
    group = DeviceGroup.objects.create(org=org_a, site=site_a, name="Office PCs")
    DeviceGroupMembership.objects.create(device=devices[0], group=group, org=org_a)
    DeviceGroupMembershipLog.objects.create(
        device=devices[0], group=group, org=org_a, change="added", reason="manual", actor_user=None
    )
    AuditLog.objects.create(
        actor_user=member, org=org_a, action="device.quarantine", target_type="device", target_id=str(devices[0].pk)
    )

    channel = NotificationChannel.objects.create(
        org=org_a,
        name="NOC hook",
        kind="webhook",
        config={"url": "https://hooks.example.com/rmm"},
        secret="webhook signing secret 0123456789",
    )
    rule = AlertRule.objects.create(
        org=org_a, name="Offline 15 min", condition={"kind": "offline", "minutes": 15}, severity="critical"
    )
    rule.channels.add(channel)
    alert = Alert.objects.create(
        org=org_a, site=site_a, device=devices[0], rule=rule, severity="critical", title="ACME-PC-1 offline"
    )
    AlertState.objects.create(rule=rule, device=devices[0], holding_since=timezone.now())
    MaintenanceWindow.objects.create(
        org=org_a, name="Patch night", starts_at=timezone.now(), ends_at=timezone.now() + dt.timedelta(hours=2)
    )
    Notification.objects.create(channel=channel, org=org_a, alert=alert, event="alert.opened", payload={"n": 1})

    # One row of every scripts model, written directly like the rows above (the services would add audit rows).
    script = Script.objects.create(
        org=org_a, name="Disk report", language="powershell", os_types=["windows"], content="Get-PSDrive\r\n"
    )
    ScriptVersion.objects.create(
        script=script, version=1, content=script.content, language=script.language, timeout_seconds=300
    )
    run = ScriptRun.objects.create(
        org=org_a, script=script, version=1, target={"deviceIds": [str(devices[0].pk)]}, trigger="manual", queued=1
    )
    DeviceCommand.objects.create(
        device=devices[0], org=org_a, type=DeviceCommand.Type.SCRIPT, payload={"content": "Get-PSDrive"}, script_run=run
    )
    ScriptSchedule.objects.create(org=org_a, script=script, device_group=group, cron="0 3 * * 0", timezone="UTC")

    secrets = {
        "webhook secret": channel.secret,
        "enrollment key hash": key.key_hash,
        "api token hash": token.key_hash,
        "mfa secret": member.mfa_secret,
        "password hash": member.password,
        "recovery code hash": recovery_hash,
    }
    for device in devices:
        secrets[f"{device.hostname} token hash"] = device.agent_token_hash
        secrets[f"{device.hostname} previous token hash"] = device.previous_token_hash
    return Schema(partner, org_a, org_b, site_a, site_b, key, member, token, devices, group, secrets)


@pytest.fixture
def operator(db) -> User:
    return User.objects.create_superuser(email="operator@example.com", password="operator password 1")


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


# --- Every model has a page ----------------------------------------------------------------------------------------


def test_every_model_of_our_apps_has_an_admin_page():
    missing = [
        model._meta.label
        for app_label in OUR_APPS
        for model in apps.get_app_config(app_label).get_models()
        if model not in admin.site._registry and not admin.site.is_registered_page(model)
    ]
    assert missing == []


def test_device_telemetry_has_its_own_page_because_django_cannot_register_a_composite_key():
    assert DeviceTelemetry not in admin.site._registry
    assert admin.site.is_registered_page(DeviceTelemetry)


REGISTERED = sorted(model._meta.label for model in admin.site._registry if model._meta.app_label in OUR_APPS)


@pytest.mark.parametrize("label", REGISTERED)
def test_list_and_change_pages_answer_200(operator_client, schema, label):
    model = apps.get_model(label)
    model_admin = admin.site._registry[model]

    response = operator_client.get(admin_url(model, "changelist"))
    assert response.status_code == 200

    obj = model._default_manager.first()
    assert obj is not None, f"the schema fixture made no {label}"
    response = operator_client.get(admin_url(model, "change", obj.pk))
    assert response.status_code == 200

    if model_admin.has_add_permission(response.wsgi_request):
        assert operator_client.get(admin_url(model, "add")).status_code == 200


def test_the_telemetry_page_answers_200_and_is_listed_under_devices(operator_client, schema):
    response = operator_client.get(reverse("admin:devices_devicetelemetry_changelist"))
    assert response.status_code == 200

    index = operator_client.get(reverse("admin:app_list", args=["devices"]))
    assert index.status_code == 200
    assert reverse("admin:devices_devicetelemetry_changelist") in index.content.decode()


def test_the_admin_is_for_staff_users_only(client, schema):
    user = User.objects.create_user(email="user@example.com", password="a long password 2")
    client.force_login(user)

    response = client.get(admin_url(Device, "changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_staff_user_without_memberships_gets_in_but_reaches_nothing(client, schema):
    staff = User.objects.create_user(email="staff@example.com", password="a long password 2", is_staff=True)
    client.force_login(staff)

    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(admin_url(Device, "changelist")).status_code == 403
    assert client.get(admin_url(Device, "change", schema.devices[0].pk)).status_code == 403


# --- The device page ------------------------------------------------------------------------------------------------


def test_device_page_shows_inventory_memberships_commands_and_telemetry(operator_client, schema):
    device = schema.devices[0]

    response = operator_client.get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    html = response.content.decode()
    for text in ("OptiPlex 7090", "eth0", "C:", "Firefox", "PermitRootLogin", r"HKLM\SOFTWARE\Demo", "3389"):
        assert text in html
    assert "Office PCs" in html  # group membership
    assert "Reboot" in html  # recent command
    assert 'class="device-telemetry"' in html
    assert f"{reverse('admin:devices_devicetelemetry_changelist')}?device={device.pk}" in html


def test_device_page_shows_at_most_20_telemetry_samples(operator_client, schema):
    device = schema.devices[0]
    now = timezone.now()
    DeviceTelemetry.objects.bulk_create(
        DeviceTelemetry(device=device, org=device.org, ts=now - dt.timedelta(minutes=10 + n)) for n in range(50)
    )

    response = operator_client.get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    table = re.search(r'<table class="device-telemetry">.*?</table>', response.content.decode(), re.S).group(0)
    assert table.count("<tr>") == 1 + 20  # the header row and 20 samples


def test_device_page_with_10000_software_rows_opens_fast_and_shows_the_cap(operator_client, schema):
    device = make_device(schema.org_a, schema.site_a, "BIG-PC")
    DeviceSoftware.objects.bulk_create(
        (DeviceSoftware(device=device, org=device.org, name=f"package-{n:05d}") for n in range(10_000)),
        batch_size=2_000,
    )

    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert len(set(re.findall(r"package-\d{5}", html))) == 50
    assert 'name="devicesoftware_set-TOTAL_FORMS" value="50"' in html
    assert "Showing the first 50 of 10000 device software" in html
    assert f"{admin_url(DeviceSoftware, 'changelist')}?device={device.pk}" in html
    # Two queries per capped inline at most (the rows, and a count once the cap is reached); nothing per row.
    assert len(queries) < 40


def test_see_all_link_lists_the_devices_rows_only(operator_client, schema):
    device = schema.devices[0]

    response = operator_client.get(admin_url(DeviceSoftware, "changelist"), {"device": str(device.pk)})

    assert response.status_code == 200
    assert response.context["cl"].result_count == 3
    assert device.hostname in response.content.decode()  # the filter shows what the list is filtered by


def test_a_malformed_device_filter_is_refused_not_a_500(operator_client, schema):
    response = operator_client.get(admin_url(DeviceSoftware, "changelist"), {"device": "not-a-uuid"})

    assert response.status_code == 302
    assert "e=1" in response["Location"]


def test_device_rows_cannot_be_added_changed_or_deleted(operator_client, schema):
    software = DeviceSoftware.objects.first()

    assert operator_client.get(admin_url(DeviceSoftware, "add")).status_code == 403
    assert operator_client.post(admin_url(DeviceSoftware, "delete", software.pk)).status_code == 403
    assert operator_client.post(admin_url(DeviceSoftware, "change", software.pk), {"name": "x"}).status_code == 403
    assert DeviceSoftware.objects.filter(pk=software.pk, name=software.name).exists()


def test_saving_a_device_changes_only_display_name_tags_and_site(operator_client, schema):
    device = schema.devices[0]
    url = admin_url(Device, "change", device.pk)
    page = operator_client.get(url)
    form = page.context["adminform"].form
    data = {
        "display_name": "Reception PC",
        "tags": "demo,reception",
        "site": str(device.site_id),
        "hostname": "EVIL",
        "status": "quarantined",
    }
    # The inline formsets' management forms and row ids, as the browser sends them.
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({f"{management.prefix}-{name}": value for name, value in management.initial.items()})
        for n, inline_form in enumerate(formset.formset.initial_forms):
            data[f"{formset.formset.prefix}-{n}-id"] = inline_form.instance.pk
            data[f"{formset.formset.prefix}-{n}-device"] = device.pk
    assert "hostname" not in form.fields

    response = operator_client.post(url, data)

    assert response.status_code == 302
    device.refresh_from_db()
    assert (device.display_name, device.tags) == ("Reception PC", ["demo", "reception"])
    assert (device.hostname, device.status) == ("ACME-PC-1", Device.Status.ONLINE)


def test_admin_writes_are_audited(operator_client, operator, schema):
    device = schema.devices[0]
    response = operator_client.post(
        admin_url(Site, "change", schema.site_a.pk), {"name": "HQ", "timezone": "Europe/Berlin"} | EMPTY_JSON_FIELDS
    )
    assert response.status_code == 302
    response = operator_client.post(
        admin_url(Partner, "add"),
        {"name": "New MSP", "slug": "new-msp", "type": "msp", "status": "active", "timezone": "UTC", "settings": "{}"},
    )
    assert response.status_code == 302

    site_entry = AuditLog.objects.get(action="site.update")
    assert (site_entry.actor_user, site_entry.org_id, site_entry.target_id) == (
        operator,
        device.org_id,
        str(schema.site_a.pk),
    )
    assert {"Name", "Timezone"} <= set(site_entry.details["changes"][0]["changed"]["fields"])
    assert "HQ" not in str(site_entry.details["changes"])  # field names, never values
    assert AuditLog.objects.filter(
        action="partner.create", target_id=str(Partner.objects.get(slug="new-msp").pk)
    ).exists()


# --- Lists ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "term", ["SN-ACME-PC-2", sha256_hex("agent ACME-PC-2"), sha256_hex("agent ACME-PC-2")[:12], "acme-pc-2"]
)
def test_device_search_finds_by_serial_number_agent_id_and_hostname(operator_client, schema, term):
    response = operator_client.get(admin_url(Device, "changelist"), {"q": term})

    assert response.status_code == 200
    assert [device.hostname for device in response.context["cl"].result_list] == ["ACME-PC-2"]


def test_user_search_finds_by_email(operator_client, schema):
    response = operator_client.get(admin_url(User, "changelist"), {"q": "tech@"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [schema.member]


def test_device_list_filters_by_status_os_organization_and_site(operator_client, schema):
    Device.objects.filter(hostname="ACME-PC-2").update(status=Device.Status.OFFLINE, os_type=Device.OsType.LINUX)
    url = admin_url(Device, "changelist")

    def hostnames(**params):
        response = operator_client.get(url, params)
        assert response.status_code == 200
        return sorted(device.hostname for device in response.context["cl"].result_list)

    assert hostnames(status__exact="offline") == ["ACME-PC-2"]
    assert hostnames(os_type__exact="windows") == ["ACME-PC-1", "GLOBEX-SRV"]
    assert hostnames(org__id__exact=str(schema.org_b.pk)) == ["GLOBEX-SRV"]
    assert hostnames(site__id__exact=str(schema.site_a.pk)) == ["ACME-PC-1", "ACME-PC-2"]


def test_site_filter_lists_only_the_sites_of_the_chosen_organization(operator_client, schema):
    response = operator_client.get(admin_url(Device, "changelist"), {"org__id__exact": str(schema.org_b.pk)})

    site_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "site")
    assert [name for _, name in site_filter.lookup_choices] == ["Plant"]


def test_device_list_is_ordered_by_hostname(operator_client, schema):
    response = operator_client.get(admin_url(Device, "changelist"))

    assert [device.hostname for device in response.context["cl"].result_list] == [
        "ACME-PC-1",
        "ACME-PC-2",
        "GLOBEX-SRV",
    ]


def test_device_list_query_count_does_not_grow_with_devices(operator_client, schema, django_assert_max_num_queries):
    url = admin_url(Device, "changelist")
    with CaptureQueriesContext(connection) as few:
        assert operator_client.get(url).status_code == 200
    for n in range(50):
        make_device(schema.org_a, schema.site_a, f"BULK-{n:02d}")

    with django_assert_max_num_queries(len(few)):
        response = operator_client.get(url)

    assert response.status_code == 200
    assert response.context["cl"].result_count == 53


@pytest.mark.parametrize("model", [DeviceSoftware, DeviceCommand, AuditLog, DeviceGroupMembership])
def test_big_table_list_query_count_does_not_grow_with_rows(
    operator_client, schema, model, django_assert_max_num_queries
):
    url = admin_url(model, "changelist")
    with CaptureQueriesContext(connection) as few:
        assert operator_client.get(url).status_code == 200
    for n in range(20):
        device = make_device(schema.org_a, schema.site_a, f"MORE-{n:02d}")
        add_inventory(device)
        DeviceGroupMembership.objects.create(device=device, group=schema.group, org=device.org)
        AuditLog.objects.create(org=device.org, action="device.enroll", target_id=str(device.pk))

    with django_assert_max_num_queries(len(few)):
        assert operator_client.get(url).status_code == 200


# --- Secrets ------------------------------------------------------------------------------------------------------


def test_no_page_shows_a_secret(operator_client, schema):
    pages = [
        admin_url(model, "changelist")
        for model in (Device, EnrollmentKey, ApiToken, User, MfaRecoveryCode, DeviceHardware)
    ]
    pages += [admin_url(Device, "change", device.pk) for device in schema.devices]
    pages += [
        admin_url(EnrollmentKey, "change", schema.key.pk),
        admin_url(ApiToken, "change", schema.token.pk),
        admin_url(User, "change", schema.member.pk),
        admin_url(MfaRecoveryCode, "change", MfaRecoveryCode.objects.get().pk),
        reverse("admin:devices_devicetelemetry_changelist"),
    ]
    for page in pages:
        response = operator_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        shown = [name for name, secret in schema.secrets.items() if secret in html]
        assert shown == [], f"{page} shows {shown}"


def test_the_user_page_shows_the_password_only_as_a_masked_summary(operator_client, schema):
    response = operator_client.get(admin_url(User, "change", schema.member.pk))

    html = response.content.decode()
    algorithm, salt, digest = schema.member.password.split("$")
    assert algorithm in html
    assert digest not in html and salt not in html
    assert "../password/" in html  # the reset-password link


def test_the_device_page_shows_the_previous_tokens_expiry(operator_client, schema):
    response = operator_client.get(admin_url(Device, "change", schema.devices[0].pk))

    assert "previous_token_expires_at" in response.content.decode()


# --- Enrollment keys ----------------------------------------------------------------------------------------------


def test_adding_an_enrollment_key_shows_the_raw_key_once_and_stores_its_hmac(operator_client, operator, schema):
    response = operator_client.post(
        admin_url(EnrollmentKey, "add"), {"site": str(schema.site_b.pk), "name": "Plant PCs", "max_usage": "10"}
    )

    assert response.status_code == 200
    assert response["Cache-Control"].count("no-store")
    raw = re.search(r'<code id="raw-enrollment-key"[^>]*>([^<]+)</code>', response.content.decode()).group(1)
    key = EnrollmentKey.objects.get(name="Plant PCs")
    assert raw.startswith("ek_") and len(raw) == 3 + 64
    assert key.key_prefix == raw[:8]
    assert key.key_hash == hmac.new(settings.SECRET_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
    assert (key.org, key.site, key.created_by, key.max_usage) == (schema.org_b, schema.site_b, operator, 10)

    entry = AuditLog.objects.get(action="enrollment_key.create")
    assert (entry.actor_user, entry.org_id, entry.target_id) == (operator, schema.org_b.pk, str(key.pk))
    assert raw not in str(entry.details)
    for page in (admin_url(EnrollmentKey, "change", key.pk), admin_url(EnrollmentKey, "changelist")):
        html = operator_client.get(page).content.decode()
        assert raw not in html and key.key_hash not in html
        assert key.key_prefix in html


def test_revoke_action_revokes_only_keys_not_yet_revoked(operator_client, schema):
    earlier = timezone.now() - dt.timedelta(days=3)
    other = EnrollmentKey.objects.create(
        org=schema.org_b, site=schema.site_b, name="old", key_prefix="ek_00000", key_hash="0" * 64, revoked_at=earlier
    )

    response = operator_client.post(
        admin_url(EnrollmentKey, "changelist"),
        {"action": "revoke_selected", "_selected_action": [str(schema.key.pk), str(other.pk)]},
    )

    assert response.status_code == 302
    schema.key.refresh_from_db()
    other.refresh_from_db()
    assert schema.key.revoked_at is not None
    assert other.revoked_at == earlier
    revocations = AuditLog.objects.filter(action="enrollment_key.revoke")
    assert [entry.target_id for entry in revocations] == [str(schema.key.pk)]


# --- Audit log ----------------------------------------------------------------------------------------------------


def test_the_audit_log_is_read_only(operator_client, schema):
    entry = AuditLog.objects.get()

    change_page = operator_client.get(admin_url(AuditLog, "change", entry.pk))
    assert change_page.status_code == 200
    assert 'name="_save"' not in change_page.content.decode()
    assert operator_client.get(admin_url(AuditLog, "add")).status_code == 403
    assert operator_client.post(admin_url(AuditLog, "delete", entry.pk), {"post": "yes"}).status_code == 403
    assert AuditLog.objects.filter(pk=entry.pk).exists()


# --- Telemetry page ---------------------------------------------------------------------------------------------------


def test_telemetry_page_pages_one_devices_samples_by_keyset(operator_client, schema):
    device = schema.devices[0]
    start = timezone.now() - dt.timedelta(days=1)
    DeviceTelemetry.objects.bulk_create(
        DeviceTelemetry(device=device, org=device.org, ts=start - dt.timedelta(minutes=n), cpu_percent=n)
        for n in range(150)
    )
    url = reverse("admin:devices_devicetelemetry_changelist")

    first = operator_client.get(url, {"device": str(device.pk)})

    assert first.status_code == 200
    assert len(first.context["rows"]) == 100
    assert {sample.device_id for sample, _ in first.context["rows"]} == {device.pk}
    assert first.context["rows"][0][0].ts > first.context["rows"][-1][0].ts
    second = operator_client.get(first.context["older_url"])
    assert second.status_code == 200
    assert len(second.context["rows"]) == 153 - 100
    assert second.context["older_url"] is None
    seen = [sample.ts for sample, _ in first.context["rows"] + second.context["rows"]]
    assert len(set(seen)) == 153


def test_telemetry_page_without_a_device_shows_the_last_hour_of_every_device(operator_client, schema):
    device = schema.devices[0]
    DeviceTelemetry.objects.create(device=device, org=device.org, ts=timezone.now() - dt.timedelta(hours=3))

    response = operator_client.get(reverse("admin:devices_devicetelemetry_changelist"))

    assert response.status_code == 200
    rows = response.context["rows"]
    assert len(rows) == 9  # three recent samples of each of the three devices, not the old one
    assert {sample.device_id for sample, _ in rows} == {device.pk for device in schema.devices}
    assert "before=" in response.context["older_url"]


def test_telemetry_page_keyset_breaks_ties_between_devices_with_the_same_ts(operator_client, schema):
    ts = timezone.now() - dt.timedelta(minutes=30)
    for n in range(120):
        device = make_device(schema.org_a, schema.site_a, f"TIE-{n:03d}")
        DeviceTelemetry.objects.create(device=device, org=device.org, ts=ts)
    url = reverse("admin:devices_devicetelemetry_changelist")

    first = operator_client.get(url, {"before": (ts + dt.timedelta(seconds=1)).isoformat()})
    second = operator_client.get(first.context["older_url"])

    devices = [sample.device_id for sample, _ in first.context["rows"] + second.context["rows"]]
    assert len(devices) == len(set(devices)) == 120


@pytest.mark.parametrize(
    ("device", "status"), [("x" * 256, 400), ("no-such-host", 404), ("00000000-0000-0000-0000-000000000000", 404)]
)
def test_telemetry_page_refuses_a_bad_device_filter(operator_client, schema, device, status):
    response = operator_client.get(reverse("admin:devices_devicetelemetry_changelist"), {"device": device})

    assert response.status_code == status


# --- Forms that guard the composite foreign keys and the email login -------------------------------------------------


def test_adding_a_user_stores_the_email_lower_case_and_the_password_hashed(operator_client):
    response = operator_client.post(
        admin_url(User, "add"),
        {
            "email": "New.Tech@Example.com",
            "name": "New",
            "usable_password": "true",
            "password1": "a long password 3",
            "password2": "a long password 3",
        },
    )

    assert response.status_code == 302
    user = User.objects.get(email="new.tech@example.com")
    assert user.check_password("a long password 3")


def test_a_second_user_with_the_same_email_in_other_case_is_a_form_error(operator_client, schema):
    response = operator_client.post(admin_url(User, "add"), {"email": "TECH@example.com", "usable_password": "false"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert User.objects.filter(email__iexact="tech@example.com").count() == 1


def test_the_password_change_page_answers_200(operator_client, schema):
    response = operator_client.get(reverse("admin:auth_user_password_change", args=[schema.member.pk]))

    assert response.status_code == 200


def test_a_group_with_a_site_of_another_organization_is_a_form_error(operator_client, schema):
    response = operator_client.post(
        admin_url(DeviceGroup, "add"),
        {"org": str(schema.org_a.pk), "site": str(schema.site_b.pk), "name": "Mixed", **MEMBER_FORMSET},
    )

    assert response.status_code == 200
    assert "site" in response.context["adminform"].form.errors
    assert not DeviceGroup.objects.filter(name="Mixed").exists()


def test_a_static_group_can_be_added(operator_client, schema):
    response = operator_client.post(
        admin_url(DeviceGroup, "add"),
        {"org": str(schema.org_a.pk), "site": str(schema.site_a.pk), "name": "Front desk", **MEMBER_FORMSET},
    )

    assert response.status_code == 302
    group = DeviceGroup.objects.get(name="Front desk")
    assert (group.type, group.filter_rules) == (DeviceGroup.Type.STATIC, None)


def test_a_dynamic_group_rule_is_validated_with_the_path_of_the_bad_node(operator_client, schema):
    rule = {"operator": "AND", "conditions": [{"field": "hostname", "operator": "greaterThan", "value": 3}]}
    response = operator_client.post(
        admin_url(DeviceGroup, "add"),
        {"org": str(schema.org_a.pk), "name": "Bad rule", "type": "dynamic", "filter_rules": json.dumps(rule)},
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["filter_rules"]
    assert len(errors) == 1 and errors[0].startswith("conditions[0].operator: ")
    assert not DeviceGroup.objects.filter(name="Bad rule").exists()


def test_a_dynamic_group_saved_in_the_admin_is_evaluated_and_previews_its_devices(operator_client, schema):
    rule = {"field": "hostname", "operator": "startsWith", "value": "acme-pc"}
    response = operator_client.post(
        admin_url(DeviceGroup, "add"),
        {
            "org": str(schema.org_a.pk),
            "name": "Acme PCs",
            "type": "dynamic",
            "filter_rules": json.dumps(rule),
            **MEMBER_FORMSET,
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    group = DeviceGroup.objects.get(name="Acme PCs")
    assert group.fields_used == ["hostname"]
    acme = {d.pk for d in schema.devices if d.org_id == schema.org_a.pk}
    assert set(group.memberships.values_list("device_id", flat=True)) == acme
    page = operator_client.get(admin_url(DeviceGroup, "change", group.pk))
    assert page.status_code == 200
    assert "2 devices you can see match the rule now." in page.content.decode()
    assert "ACME-PC-1" in page.content.decode()


def test_a_static_group_with_a_rule_is_a_form_error(operator_client, schema):
    rule = {"field": "hostname", "operator": "equals", "value": "x"}
    response = operator_client.post(
        admin_url(DeviceGroup, "add"),
        {"org": str(schema.org_a.pk), "name": "Static", "type": "static", "filter_rules": json.dumps(rule)},
    )

    assert response.status_code == 200
    assert "filter_rules" in response.context["adminform"].form.errors


def test_a_membership_role_of_the_wrong_scope_is_a_form_error(operator_client, schema):
    partner_role = Role.objects.get(name="Technician")

    response = operator_client.post(
        admin_url(OrganizationUser, "add"),
        {"org": str(schema.org_a.pk), "user": str(schema.member.pk), "role": str(partner_role.pk)},
    )

    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors


@pytest.mark.django_db
def test_every_admin_page_answers_200_with_the_demo_data_loaded(client, tmp_path):
    """The issue's own words: the demo fleet from `seed_demo`, opened page by page as the demo superuser."""
    call_command("loaddata", "default_roles", verbosity=0)
    call_command(
        "seed_demo",
        devices=12,
        telemetry_hours=2,
        credentials_file=str(tmp_path / "credentials.txt"),
        stdout=StringIO(),
    )
    client.force_login(apps.get_model("accounts.User").objects.get(email="admin@example.com"))
    for label in REGISTERED:
        model = apps.get_model(label)
        assert client.get(admin_url(model, "changelist")).status_code == 200, label
        obj = model._default_manager.first()
        if obj is not None:  # the demo makes no MFA recovery codes or failed sign-ins
            assert client.get(admin_url(model, "change", obj.pk)).status_code == 200, label
    assert client.get(reverse("admin:devices_devicetelemetry_changelist")).status_code == 200
