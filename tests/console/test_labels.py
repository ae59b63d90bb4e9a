"""The console speaks like a person: acronyms spelt as people spell them (API, MFA, IPv4, mTLS…), names instead of
UUIDs in titles, breadcrumbs and audit targets, and Django's own "Groups" out of the way unless someone uses them."""

from __future__ import annotations

import re
import uuid

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import result_headers
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction, AuditLog, OrganizationUser
from devices.models import (
    Device,
    DeviceCommand,
    DeviceGroupMembership,
    DeviceGroupMembershipLog,
    DeviceTelemetry,
)
from scripts.models import Script, ScriptRun, ScriptVersion
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

OUR_APPS = ("jobs", *settings.DOMAIN_APPS)

# Acronyms as people write them. A label holding one of them as a whole word in another case ("Ipv4", "Api tokens",
# "mfa enabled", "Mtls cert cf id", "Os type") is the machine's spelling of a field name.
ACRONYMS = (
    "API",
    "BIOS",
    "CPU",
    "DMI",
    "GPU",
    "HMAC",
    "ID",
    "IP",
    "IPv4",
    "IPv6",
    "MAC",
    "MFA",
    "MSP",
    "mTLS",
    "OS",
    "PID",
    "RAM",
    "TCP",
    "TOTP",
    "UDP",
    "URL",
    "UUID",
)
MISSPELT = re.compile(r"\b(" + "|".join(re.escape(word) for word in ACRONYMS) + r")\b", re.IGNORECASE)
# Spellings that name nothing else: found anywhere in a page's HTML, they are a machine-made label.
NEVER_IN_A_PAGE = ("Ipv4", "Ipv6", "Mtls", "Api token", "Api ", "Mfa ", "Totp", "Hmac", "Cf id", "Msp")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def misspelt(label: str) -> list[str]:
    """The acronyms of ``label`` spelt otherwise than in ``ACRONYMS`` ("Ipv4" → ["Ipv4"])."""
    return [found for found in MISSPELT.findall(str(label)) if found not in ACRONYMS]


def test_the_checker_catches_the_labels_the_issue_names():
    assert misspelt("Mtls cert cf id") == ["Mtls", "id"]
    assert misspelt("Ipv4") == ["Ipv4"]
    assert misspelt("Api tokens") == ["Api"]
    assert misspelt("Mfa recovery codes") == ["Mfa"]
    assert misspelt("MTLS cert") == ["MTLS"]  # what the admin's capfirst makes of a label starting with "mTLS"
    assert misspelt("Client cert ID at Cloudflare (mTLS)") == []
    assert misspelt("MAC address of the machine, macOS") == []


# --- What the models call themselves ---------------------------------------------------------------------------------


def our_models():
    return [model for label in OUR_APPS for model in apps.get_app_config(label).get_models()]


@pytest.mark.parametrize("model", our_models(), ids=lambda model: model._meta.label)
def test_model_field_and_choice_labels_spell_acronyms_as_people_do(model):
    opts = model._meta
    labels = [opts.verbose_name, opts.verbose_name_plural]
    for field in opts.get_fields():
        if field.auto_created and not field.concrete:
            continue  # reverse relations are named by the other side
        labels.append(getattr(field, "verbose_name", ""))
        choices = getattr(field, "choices", None) or getattr(getattr(field, "base_field", None), "choices", None)
        labels.extend(label for _, label in choices or ())

    assert [(label, misspelt(label)) for label in labels if misspelt(label)] == []


# --- What the admin shows --------------------------------------------------------------------------------------------


def changelist_urls() -> list[str]:
    urls = [admin_url(model, "changelist") for model in admin.site._registry]
    pages = [model for label in OUR_APPS for model in apps.get_app_config(label).get_models()]
    return urls + [admin_url(model, "changelist") for model in pages if admin.site.is_registered_page(model)]


def test_the_index_and_the_sidebar_name_every_table_as_people_do(client, superuser):
    admin_as(superuser, client)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    names = [app["name"] for app in response.context["app_list"]]
    names += [model["name"] for app in response.context["app_list"] for model in app["models"]]
    assert [(name, misspelt(name)) for name in names if misspelt(name)] == []
    html = response.content.decode()
    assert [spelling for spelling in NEVER_IN_A_PAGE if spelling in html] == []
    assert "API tokens" in html and "MFA recovery codes" in html


def test_every_list_heads_its_columns_and_filters_as_people_do(client, superuser):
    admin_as(superuser, client)
    problems = []

    for url in changelist_urls():
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        problems += [(url, spelling) for spelling in NEVER_IN_A_PAGE if spelling in html]
        changelist = response.context.get("cl")
        if changelist is None:  # a page of its own (device telemetry): its headers are in the page
            headers = response.context["headers"]
            filters: list[str] = []
        else:
            # The check-all box of the actions column is a header too: its markup is no label.
            headers = [re.sub(r"<[^>]+>", "", str(header["text"])) for header in result_headers(changelist)]
            filters = [str(spec.title) for spec in changelist.filter_specs]
        problems += [(url, label) for label in [*headers, *filters] if misspelt(label)]

    assert problems == [], problems


def test_the_telemetry_list_heads_its_metrics_with_their_units(client, superuser):
    admin_as(superuser, client)

    response = client.get(reverse("admin:devices_devicetelemetry_changelist"))

    assert response.status_code == 200
    assert {"CPU", "RAM"} <= set(response.context["headers"])


def test_the_device_page_names_its_mtls_certificate_fields_as_people_do(client, superuser, world):
    device = world.devices[world.site_a1][0]
    admin_as(superuser, client)

    response = client.get(admin_url(Device, "change", device.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Mtls" not in html and "Cf id" not in html
    assert "MTLS" not in html  # a label starting with the acronym, capitalised by the admin
    assert "Client cert ID at Cloudflare (mTLS)" in html


# --- Names, not UUIDs -------------------------------------------------------------------------------------------------


def page_title(html: str) -> str:
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found is not None
    return found.group(1)


def breadcrumbs(html: str) -> str:
    found = re.search(r'<div class="breadcrumbs">(.*?)</div>', html, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1))


def test_a_commands_page_title_and_breadcrumbs_name_its_device_not_its_id(client, superuser, world):
    device = world.devices[world.site_a1][0]
    command = DeviceCommand.objects.create(device=device, org=device.org, type=DeviceCommand.Type.REBOOT)
    admin_as(superuser, client)

    response = client.get(admin_url(DeviceCommand, "change", command.pk))

    assert response.status_code == 200
    html = response.content.decode()
    assert "reboot on a1-1" in page_title(html)
    assert "reboot on a1-1" in breadcrumbs(html)
    assert not UUID_TEXT.search(page_title(html)) and not UUID_TEXT.search(breadcrumbs(html))


def test_rows_that_pointed_at_ids_are_named_by_what_they_point_at(world, superuser, roles):
    device = world.devices[world.site_a1][0]
    group = world.groups["A1 servers"]
    now = timezone.now()
    script = Script.objects.create(org=world.org_a, name="Disk cleanup", language="bash", content="true")
    version = ScriptVersion.objects.create(
        script=script, version=1, content="true", language="bash", timeout_seconds=60
    )
    run = ScriptRun.objects.create(org=world.org_a, script=script, version=1, target={}, trigger="api")
    rows = {
        "command": DeviceCommand.objects.create(device=device, org=device.org, type="refresh_inventory"),
        "membership": DeviceGroupMembership.objects.create(device=device, group=group, org=device.org),
        "change": DeviceGroupMembershipLog.objects.create(
            device=device, group=group, org=device.org, change="added", reason="manual"
        ),
        "sample": DeviceTelemetry(device=device, org=device.org, ts=now),
        "version": version,
        "run": run,
    }

    names = {key: str(row) for key, row in rows.items()}

    assert names["command"] == "refresh inventory on a1-1"
    assert names["membership"] == "a1-1 in A1 servers"
    assert names["change"] == "a1-1 added to A1 servers"
    assert names["sample"].startswith("a1-1 at ")
    assert names["version"] == "Disk cleanup v1"
    assert names["run"].startswith("Disk cleanup v1 (")
    assert [name for name in names.values() if UUID_TEXT.search(name)] == []


# --- Audit targets ----------------------------------------------------------------------------------------------------


def audit_rows(html: str) -> list[str]:
    body = re.search(r'<table id="result_list">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body is not None
    return [re.sub(r"<[^>]+>", " ", row) for row in re.findall(r"<tr.*?</tr>", body.group(1), re.S)]


def test_the_audit_log_names_each_target_instead_of_its_id(client, superuser, world, roles):
    device = world.devices[world.site_a1][0]
    command = DeviceCommand.objects.create(device=device, org=device.org, type=DeviceCommand.Type.REBOOT)
    membership = OrganizationUser.objects.create(org=world.org_a, user=superuser, role=roles["Org User"])
    audit.record(action=AuditAction.DEVICE_QUARANTINE, target=device)
    audit.record(action=AuditAction.COMMAND_QUEUE, target=command)
    audit.record(action=AuditAction.ORGANIZATION_USER_CREATE, target=membership)
    gone = uuid.uuid4()
    AuditLog.objects.create(
        action="device.decommission", target_type="device", target_id=str(gone), details={"hostname": "old-pc"}
    )
    admin_as(superuser, client)

    response = client.get(admin_url(AuditLog, "changelist"))

    assert response.status_code == 200
    text = " ".join(audit_rows(response.content.decode()))
    assert "device: a1-1" in text
    assert "device command: reboot on a1-1" in text
    assert "organization membership: operator@rmm.example @ Org A (Org User)" in text
    assert "device: old-pc" in text
    for target in (device.pk, command.pk, membership.pk, gone):
        assert str(target) not in text


def test_an_audit_rows_page_names_its_target(client, superuser, world):
    device = world.devices[world.site_a1][0]
    entry = audit.record(action=AuditAction.DEVICE_QUARANTINE, target=device)
    admin_as(superuser, client)

    response = client.get(admin_url(AuditLog, "change", entry.pk))

    assert response.status_code == 200
    assert re.search(r"device: a1-1\s*</div>", response.content.decode())


def test_the_audit_logs_target_names_cost_the_same_queries_for_more_rows(
    client, superuser, world, django_assert_max_num_queries
):
    devices = sorted(world.all_devices, key=lambda device: device.hostname)

    def log_commands(count: int) -> None:
        for n in range(count):
            device = devices[n % len(devices)]
            command = DeviceCommand.objects.create(device=device, org=device.org, type=DeviceCommand.Type.REBOOT)
            audit.record(action=AuditAction.COMMAND_QUEUE, target=command)
            audit.record(action=AuditAction.DEVICE_UPDATE, target=device)

    admin_as(superuser, client)
    log_commands(2)
    with django_assert_max_num_queries(100) as few:
        assert client.get(admin_url(AuditLog, "changelist")).status_code == 200
    log_commands(20)

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(admin_url(AuditLog, "changelist"))

    assert response.status_code == 200
    assert response.content.decode().count("device command: reboot on") == 22


# --- Django's own groups -------------------------------------------------------------------------------------------


def sidebar_models(response) -> set[str]:
    return {model["object_name"] for app in response.context["available_apps"] for model in app["models"]}


def test_djangos_groups_are_hidden_while_nobody_uses_them(client, superuser):
    admin_as(superuser, client)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "Group" not in sidebar_models(response)
    assert client.get(reverse("admin:auth_group_changelist")).status_code == 200  # still there for an operator


def test_djangos_groups_show_to_operators_once_one_exists(client, superuser):
    Group.objects.create(name="Legacy auditors")
    admin_as(superuser, client)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "Group" in sidebar_models(response)


def test_djangos_groups_stay_closed_to_technicians(client, partner_technician):
    Group.objects.create(name="Legacy auditors")
    admin_as(partner_technician, client)

    index = client.get(reverse("admin:index"))
    page = client.get(reverse("admin:auth_group_changelist"))

    assert index.status_code == 200
    assert "Group" not in sidebar_models(index)
    assert page.status_code == 403


# --- The telemetry page takes a hostname ---------------------------------------------------------------------------


def telemetry_of(client, device: str):
    return client.get(reverse("admin:devices_devicetelemetry_changelist"), {"device": device})


def test_the_telemetry_page_finds_a_device_by_its_hostname_in_any_case(client, world, partner_technician):
    device = world.devices[world.site_a1][0]
    DeviceTelemetry.objects.create(device=device, org=device.org, ts=timezone.now(), cpu_percent=12)
    admin_as(partner_technician, client)

    exact, other_case = telemetry_of(client, "a1-1"), telemetry_of(client, "A1-1")

    assert (exact.status_code, other_case.status_code) == (200, 200)
    assert exact.context["device"] == other_case.context["device"] == device
    assert [sample.device_id for sample, _ in exact.context["rows"]] == [device.pk]


def test_the_telemetry_page_does_not_find_a_hostname_out_of_reach(client, world, outsider):
    admin_as(outsider, client)

    response = telemetry_of(client, "a1-1")

    assert response.status_code == 404
    assert response.context["rows"] == []


def test_the_telemetry_page_asks_which_device_when_a_hostname_is_shared(client, world, superuser):
    twin = world.devices[world.site_b1][0]
    Device.objects.filter(pk=twin.pk).update(hostname="a1-1")
    admin_as(superuser, client)

    response = telemetry_of(client, "a1-1")

    assert response.status_code == 400
    assert "Several devices are named" in response.content.decode()


def test_the_telemetry_page_still_takes_a_devices_id(client, world, partner_technician):
    device = world.devices[world.site_a1][0]
    admin_as(partner_technician, client)

    response = telemetry_of(client, str(device.pk))

    assert response.status_code == 200
    assert response.context["device"] == device
