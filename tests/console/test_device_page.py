"""The device page a technician works from (issue 16, point 3): header, telemetry charts from the rollups, actions
with confirmation and audit, recent commands that refresh, cancel and re-run, inventory times, and tenancy."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditLog
from alerts.models import Alert
from devices.models import Device, DeviceCommand, DeviceSoftware, DeviceTelemetry
from devices.services import status as device_status
from devices.services import telemetry
from devices.services.commands import queue_command
from scripts.models import Script, ScriptRun
from scripts.services.library import save_script
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db


def page_url(device: Device, **query: str) -> str:
    url = admin_url(Device, "change", device.pk)
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def action_url(device: Device, name: str) -> str:
    return reverse("admin:devices_device_action", args=[device.pk, name])


def command_url(device: Device, command: DeviceCommand, verb: str) -> str:
    return reverse("admin:devices_device_command_action", args=[device.pk, command.pk, verb])


def commands_url(device: Device) -> str:
    return reverse("admin:devices_device_recent_commands", args=[device.pk])


def offered(html: str) -> set[str]:
    return set(re.findall(r'data-console-action="([a-z_]+)"', html))


def audit_actions(device: Device, *, after: set | None = None) -> list[str]:
    """The audit actions written about ``device`` (or, with ``after``, every audit row not in ``after``)."""
    if after is not None:
        return list(AuditLog.objects.exclude(pk__in=after).values_list("action", flat=True))
    return list(AuditLog.objects.filter(target_id=str(device.pk)).values_list("action", flat=True))


def audit_ids() -> set:
    return set(AuditLog.objects.values_list("pk", flat=True))


@pytest.fixture
def device(world) -> Device:
    """a1-1 (Linux, site A1 of org A), with a display name, tags, an agent and a last contact."""
    device = world.devices[world.site_a1][0]
    Device.objects.filter(pk=device.pk).update(
        display_name="Reception PC",
        tags=["front-desk", "vip"],
        os_version="Ubuntu 24.04",
        agent_version="2.4.1",
        last_seen_at=timezone.now() - dt.timedelta(minutes=3),
        last_seen_ip="192.0.2.44",
    )
    return Device.objects.select_related("org", "site").get(pk=device.pk)


@pytest.fixture
def script(world) -> Script:
    return save_script(
        script=Script(
            org=world.org_a,
            name="Disk cleanup",
            language="bash",
            os_types=["linux"],
            content="df -h\n",
            parameters=[{"name": "minFreeGb", "type": "int", "required": False, "default": 10}],
        ),
        actor=None,
    )


def make_alert(device: Device, title: str, *, severity: str = "warning", minutes: int = 5) -> Alert:
    return Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        severity=severity,
        title=title,
        subject=title,  # one active alert per (rule, device, subject)
        opened_at=timezone.now() - dt.timedelta(minutes=minutes),
    )


# --- Header, title, breadcrumbs -------------------------------------------------------------------------------------


def test_the_header_shows_status_last_seen_os_agent_site_tags_and_open_alerts(device, partner_technician):
    make_alert(device, "Disk C: almost full", severity="critical", minutes=2)
    make_alert(device, "CPU high", minutes=10)
    resolved = make_alert(device, "Long gone")
    Alert.objects.filter(pk=resolved.pk).update(status=Alert.Status.RESOLVED)

    response = admin_as(partner_technician).get(page_url(device))

    assert response.status_code == 200
    html = response.content.decode()
    header = re.search(r'<section class="device-header".*?</section>', html, re.S).group(0)
    assert "Reception PC" in header and "a1-1" in header
    assert '<span class="status status-online">Online</span>' in header
    assert '<time class="ago"' in re.search(r'data-fact="last-seen">.*?</dd>', header, re.S).group(0)
    assert "3 min ago" in header and "192.0.2.44" in header
    assert "Linux Ubuntu 24.04" in header and "2.4.1" in header
    assert "Org A / A1" in header
    assert '<span class="device-tag">front-desk</span>' in header and '<span class="device-tag">vip</span>' in header
    assert '<span class="device-alert-count">2</span>' in header
    assert header.index("Disk C: almost full") < header.index("CPU high")  # newest first
    assert "Long gone" not in header
    assert "severity-critical" in header
    alert = Alert.objects.get(title="CPU high")
    assert reverse("admin:alerts_alert_change", args=[alert.pk]) in header


def test_open_alerts_are_left_out_for_a_person_without_alerts_read(device, world, make_org_member, roles):
    make_alert(device, "CPU high")
    from accounts.models import Permission, Role, RolePermission

    role = Role.objects.create(name="Devices only", scope=Role.Scope.ORGANIZATION, partner=world.partner_a)
    RolePermission.objects.create(role=role, permission=Permission.objects.get(resource="devices", action="read"))
    roles["Devices only"] = role
    person = make_org_member("devices.only@a.example", world.org_a, "Devices only")

    response = admin_as(person).get(page_url(device))

    assert response.status_code == 200
    assert "CPU high" not in response.content.decode()
    assert '<span class="device-alert-count">0</span>' in response.content.decode()


def test_the_title_and_breadcrumbs_name_the_device_not_its_id(device, partner_technician):
    response = admin_as(partner_technician).get(page_url(device))

    assert response.status_code == 200
    html = response.content.decode()
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    breadcrumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', html, re.S).group(1)
    assert "Reception PC" in title and str(device.pk) not in title
    assert "Reception PC" in breadcrumbs and str(device.pk) not in breadcrumbs
    assert re.search(r"<h1>\s*Reception PC\s*</h1>", html)


def test_the_page_loads_its_script_from_the_server_and_no_inline_script(device, partner_technician):
    html = admin_as(partner_technician).get(page_url(device)).content.decode()

    assert re.search(r'<script src="[^"]*console/device_page\.js" defer></script>', html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son[a-z]+=", html)


# --- Charts ---------------------------------------------------------------------------------------------------------


def insert_samples(device: Device, moments: list[dt.datetime], cpu: float = 40.0) -> None:
    DeviceTelemetry.objects.bulk_create(
        DeviceTelemetry(
            device=device,
            org_id=device.org_id,
            ts=moment,
            cpu_percent=cpu + n % 3,
            ram_percent=60,
            disk_percent=70,
            network_in_bytes=1000 * n,
            network_out_bytes=500 * n,
        )
        for n, moment in enumerate(moments)
    )


def chart(html: str, metric: str) -> str:
    return re.search(rf'<svg class="chart[^"]*" data-metric="{metric}".*?</svg>', html, re.S).group(0)


def points(svg: str) -> list[int]:
    return [int(n) for n in re.findall(r'<polyline[^>]*data-points="(\d+)"', svg)]


def test_the_charts_draw_the_rollups_of_the_range(device, partner_technician):
    now = timezone.now()
    # Six 5-minute buckets, two samples each, within one hour that ended at least an hour ago.
    base = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    insert_samples(device, [base + dt.timedelta(minutes=5 * k + m) for k in range(6) for m in (1, 2)])
    telemetry.roll_up(now=now)
    with connection.cursor() as cursor:  # the charts must come from the rollups alone
        cursor.execute("DELETE FROM device_telemetry WHERE device_id = %s", [device.pk])
    client = admin_as(partner_technician)

    day = client.get(page_url(device))
    week = client.get(page_url(device, range="7d"))

    assert day.status_code == 200 and week.status_code == 200
    html = day.content.decode()
    assert points(chart(html, "cpu")) == [6, 6]  # average and peak, one point per 5-minute bucket
    assert points(chart(html, "ram")) == [6, 6]
    assert points(chart(html, "disk")) == [6]
    assert points(chart(html, "network")) == [6, 6]  # in and out
    assert ">100 %<" in chart(html, "cpu") and ">0 %<" in chart(html, "cpu")  # the value axis' labels
    assert re.search(r">\d\d:00<", chart(html, "cpu"))  # time ticks on whole hours
    assert points(chart(week.content.decode(), "cpu")) == [1, 1]  # one hourly bucket
    assert re.search(r">[A-Z][a-z]{2} \d\d<", chart(week.content.decode(), "cpu"))  # ticks on days
    assert 'aria-current="true">7d<' in week.content.decode()


def test_a_newly_enrolled_devices_first_sample_shows_as_a_dot(device, partner_technician):
    # One heartbeat: one 5-minute bucket in the 24 h view, a line of one point, which a polyline cannot draw.
    insert_samples(device, [timezone.now() - dt.timedelta(seconds=30)])

    response = admin_as(partner_technician).get(page_url(device))

    assert response.status_code == 200
    svg = chart(response.content.decode(), "cpu")
    assert points(svg) == [1, 1]
    assert len(re.findall(r'<circle class="chart-point line-(?:average|peak)" cx="[\d.]+" cy="[\d.]+"', svg)) == 2


def test_a_long_line_has_no_dots(device, partner_technician):
    now = timezone.now()
    insert_samples(device, [now - dt.timedelta(minutes=n) for n in range(1, 121, 2)])  # 24 five-minute buckets

    response = admin_as(partner_technician).get(page_url(device))

    assert response.status_code == 200
    svg = chart(response.content.decode(), "cpu")
    assert min(points(svg)) > 12
    assert "chart-point" not in svg


def test_a_device_without_telemetry_says_no_data(device, partner_technician):
    response = admin_as(partner_technician).get(page_url(device, range="30d"))

    assert response.status_code == 200
    svg = chart(response.content.decode(), "cpu")
    assert "chart-empty" in svg and "No data for this period" in svg
    assert points(svg) == []


def test_an_unknown_range_shows_the_last_24_hours(device, partner_technician):
    response = admin_as(partner_technician).get(page_url(device, range="1y"))

    assert response.status_code == 200
    assert 'aria-current="true">24h<' in response.content.decode()


# --- Actions --------------------------------------------------------------------------------------------------------

# action → (persona who may, status before, form data, check of the device after, the audit action)
ALLOWED = {
    "reboot": ("partner_technician", "online", {}, None, "command.queue"),
    "quarantine": ("org_admin", "online", {"reason": "seen scanning"}, "quarantined", "device.quarantine"),
    "approve": ("org_admin", "quarantined", {}, "online", "device.approve"),
    "start_maintenance": ("org_user", "online", {}, "maintenance", "device.update"),
    "end_maintenance": ("org_user", "maintenance", {}, "online", "device.update"),
    "request_token_rotation": ("org_user", "online", {}, None, "device.request_token_rotation"),
    "decommission": ("partner_admin", "online", {}, "decommissioned", "device.decommission"),
}
# action → a persona whose role does not allow it on a1-1
REFUSED = {
    "reboot": "org_user",  # no devices:execute
    "run_command": "viewer",
    "run_script": "org_user",
    "quarantine": "partner_technician",  # no devices:write
    "approve": "partner_technician",
    "start_maintenance": "viewer",
    "end_maintenance": "viewer",
    "request_token_rotation": "partner_technician",
    "decommission": "org_user",  # devices:write but not devices:delete, as DELETE devices/{id} in the API
}


def put_in(device: Device, status: str) -> Device:
    if status == "quarantined":
        device_status.quarantine(device=device, reason="test", actor=None)
    elif status == "maintenance":
        device_status.update_device(device=device, actor=None, status="maintenance")
    return Device.objects.get(pk=device.pk)


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_an_action_is_offered_confirmed_done_and_audited_for_who_may(request, device, name):
    who, before, data, after, audited = ALLOWED[name]
    person = request.getfixturevalue(who)
    device = put_in(device, before)
    client = admin_as(person)
    Device.objects.filter(pk=device.pk).update(agent_token_issued_at=timezone.now())
    before_audit = audit_ids()

    page = client.get(page_url(device))
    confirmation = client.get(action_url(device, name))
    done = client.post(action_url(device, name), data)

    assert page.status_code == 200
    assert name in offered(page.content.decode())
    assert f'href="{action_url(device, name)}"' in page.content.decode()
    assert confirmation.status_code == 200
    assert "Reception PC" in confirmation.content.decode()
    assert 'name="csrfmiddlewaretoken"' in confirmation.content.decode()
    assert done.status_code == 302 and done["Location"] == page_url(device)
    stored = Device.objects.get(pk=device.pk)
    if after is not None:
        assert stored.status == after
    if name == "reboot":
        assert DeviceCommand.objects.get(device=device).type == "reboot"
    if name == "quarantine":
        assert stored.quarantined_reason == "seen scanning"
    if name == "request_token_rotation":
        assert stored.agent_token_issued_at is None
    assert audit_actions(device, after=before_audit) == [audited]
    assert AuditLog.objects.exclude(pk__in=before_audit).get().actor_user == person


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_an_action_is_neither_offered_nor_done_for_who_may_not(request, device, name):
    person = request.getfixturevalue(REFUSED[name])
    before = "quarantined" if name == "approve" else "maintenance" if name == "end_maintenance" else "online"
    device = put_in(device, before)
    client = admin_as(person)
    before_audit = audit_ids()

    page = client.get(page_url(device))
    confirmation = client.get(action_url(device, name))
    done = client.post(
        action_url(device, name),
        {"reason": "x", "type": "reboot", "language": "bash", "content": "id"},
    )

    assert page.status_code == 200
    assert name not in offered(page.content.decode())
    assert confirmation.status_code == 403
    assert done.status_code == 403
    assert Device.objects.get(pk=device.pk).status == before
    assert not DeviceCommand.objects.filter(device=device).exists()
    assert not ScriptRun.objects.exists()
    assert audit_actions(device, after=before_audit) == []


def test_an_action_that_does_not_apply_is_not_offered_and_the_service_refuses_it(device, org_admin):
    client = admin_as(org_admin)

    html = client.get(page_url(device)).content.decode()
    refused = client.post(action_url(device, "approve"), follow=True)

    assert "approve" not in offered(html) and "end_maintenance" not in offered(html)
    assert {"quarantine", "start_maintenance", "decommission", "reboot"} <= offered(html)
    assert refused.status_code == 200
    assert "Only a quarantined device can be approved" in refused.content.decode()
    assert Device.objects.get(pk=device.pk).status == "online"
    assert audit_actions(device) == []


def test_a_decommissioned_device_offers_no_action(device, partner_admin):
    device_status.decommission(device=device, actor=None)

    html = admin_as(partner_admin).get(page_url(device)).content.decode()

    assert offered(html) == set()


def test_quarantine_needs_a_reason(device, org_admin):
    response = admin_as(org_admin).post(action_url(device, "quarantine"), {"reason": ""})

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert Device.objects.get(pk=device.pk).status == "online"


def test_an_ad_hoc_command_is_queued_with_its_payload(device, partner_technician):
    client = admin_as(partner_technician)

    form = client.get(action_url(device, "run_command"))
    done = client.post(
        action_url(device, "run_command"),
        {"type": "script", "language": "bash", "content": "uptime\n", "timeout_seconds": "60"},
    )

    assert form.status_code == 200
    assert '<option value="bash" selected>' in form.content.decode()  # the device's OS decides the default
    assert done.status_code == 302
    command = DeviceCommand.objects.get(device=device)
    assert (command.type, command.status, command.created_by) == ("script", "pending", partner_technician)
    assert command.payload == {"language": "bash", "content": "uptime\n", "timeoutSeconds": 60}
    assert audit_actions(device) == []  # the audit row targets the command
    assert AuditLog.objects.get(action="command.queue", target_id=str(command.pk)).actor_user == partner_technician


def test_a_refused_command_shows_the_services_reason_on_its_field(device, partner_technician):
    response = admin_as(partner_technician).post(
        action_url(device, "run_command"), {"type": "script", "language": "bash", "content": "   "}
    )

    assert response.status_code == 400
    row = re.search(r'<div class="form-row errors field-content">.*?</div>', response.content.decode(), re.S)
    assert row and "The script to run is required." in row.group(0)
    assert not DeviceCommand.objects.exists()


def test_run_script_lists_the_scripts_for_the_device_then_runs_one_with_its_parameters(
    device, world, script, partner_technician
):
    windows_only = save_script(
        script=Script(org=world.org_a, name="Windows only", language="powershell", content="dir\n"), actor=None
    )
    other_org = save_script(
        script=Script(org=world.org_a2, name="Other org", language="bash", content="id\n"), actor=None
    )
    client = admin_as(partner_technician)

    picker = client.get(action_url(device, "run_script"))
    form = client.get(action_url(device, "run_script") + f"?script={script.pk}")
    done = client.post(action_url(device, "run_script") + f"?script={script.pk}", {"param_0": "25"})

    assert picker.status_code == 200
    listed = set(re.findall(r'data-script-id="([0-9a-f-]+)"', picker.content.decode()))
    assert listed == {str(script.pk)}
    assert str(windows_only.pk) not in listed and str(other_org.pk) not in listed
    assert form.status_code == 200
    assert 'name="param_0"' in form.content.decode() and "minFreeGb" in form.content.decode()
    assert done.status_code == 302
    run = ScriptRun.objects.get()
    assert (run.script, run.queued, run.parameters) == (script, 1, {"minFreeGb": 25})
    command = DeviceCommand.objects.get(device=device)
    assert command.script_run == run and command.payload["env"] == {"RMM_PARAM_MINFREEGB": "25"}
    assert AuditLog.objects.filter(action="script.run", actor_user=partner_technician).count() == 1


def test_run_script_refuses_a_script_the_person_may_not_run_there(device, world, partner_technician):
    other_org = save_script(script=Script(org=world.org_b, name="B only", language="bash", content="id\n"), actor=None)

    response = admin_as(partner_technician).post(action_url(device, "run_script") + f"?script={other_org.pk}", {})

    assert response.status_code == 403
    assert not ScriptRun.objects.exists() and not DeviceCommand.objects.exists()


# --- Recent commands ------------------------------------------------------------------------------------------------


def finished(device: Device, stdout: str, *, status: str = "completed", exit_code: int = 0) -> DeviceCommand:
    command = queue_command(device=device, type="script", payload={"language": "bash", "content": "ls /\n"})
    now = timezone.now()
    DeviceCommand.objects.filter(pk=command.pk).update(
        status=status,
        sent_at=now - dt.timedelta(seconds=5),
        completed_at=now,
        result={"exitCode": exit_code, "stdout": stdout, "stderr": "warning: <careful>", "durationMs": 4200},
    )
    return DeviceCommand.objects.get(pk=command.pk)


def test_the_commands_fragment_lists_results_readably(device, partner_technician):
    done = finished(device, "bin\n<b>boot</b>\n")
    pending = queue_command(device=device, type="reboot", payload={})
    client = admin_as(partner_technician)

    fragment = client.get(commands_url(device))
    page = client.get(page_url(device))

    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html  # a fragment, for device_page.js to put in place
    assert f'data-command-id="{done.pk}" data-command-status="completed"' in html
    assert f'data-command-id="{pending.pk}" data-command-status="pending"' in html
    assert html.index(str(pending.pk)) < html.index(str(done.pk))  # newest first
    assert re.search(r"<pre[^>]*>bin\n&lt;b&gt;boot&lt;/b&gt;\n</pre>", html)
    assert "warning: &lt;careful&gt;" in html
    assert "data-commands-active" in html  # something is under way: the page keeps refreshing
    assert "no-store" in fragment["Cache-Control"]
    assert f'data-refresh-url="{commands_url(device)}"' in page.content.decode()
    assert f'data-command-id="{done.pk}"' in page.content.decode()


def test_a_long_output_is_cut_on_the_page_with_a_link_to_the_whole_result(device, partner_technician):
    command = finished(device, "x" * 9_999 + "END\n")

    html = admin_as(partner_technician).get(commands_url(device)).content.decode()

    assert re.search(r"<pre[^>]*>x{4000}</pre>", html)
    assert "END" not in html
    assert "Showing the first 4,000 characters of 10,003 of stdout." in html
    assert f'href="{admin_url(DeviceCommand, "change", command.pk)}">The whole result' in html
    assert "warning: &lt;careful&gt;" in html  # stderr is short: whole


def test_the_fragment_is_not_refreshing_once_every_command_is_finished(device, partner_technician):
    finished(device, "ok\n")

    html = admin_as(partner_technician).get(commands_url(device)).content.decode()

    assert "data-commands-active" not in html


def test_a_pending_command_can_be_cancelled(device, partner_technician):
    command = queue_command(device=device, type="reboot", payload={})
    client = admin_as(partner_technician)

    page = client.get(page_url(device)).content.decode()
    confirmation = client.get(command_url(device, command, "cancel"))
    done = client.post(command_url(device, command, "cancel"))

    assert f'href="{command_url(device, command, "cancel")}" data-console-action="cancel_command"' in page
    assert confirmation.status_code == 200
    assert done.status_code == 302
    assert DeviceCommand.objects.get(pk=command.pk).status == "cancelled"
    assert AuditLog.objects.get(action="command.cancel", target_id=str(command.pk)).actor_user == partner_technician


def test_a_finished_command_is_not_offered_cancel_and_cancelling_it_is_refused(device, partner_technician):
    command = finished(device, "ok\n")
    client = admin_as(partner_technician)

    page = client.get(page_url(device)).content.decode()
    refused = client.post(command_url(device, command, "cancel"), follow=True)

    assert command_url(device, command, "cancel") not in page
    assert refused.status_code == 200
    assert "Only pending commands can be cancelled" in refused.content.decode()
    assert DeviceCommand.objects.get(pk=command.pk).status == "completed"


def test_a_command_can_be_run_again(device, partner_technician):
    command = finished(device, "ok\n", status="failed", exit_code=2)
    client = admin_as(partner_technician)

    page = client.get(page_url(device)).content.decode()
    done = client.post(command_url(device, command, "rerun"))

    assert f'href="{command_url(device, command, "rerun")}" data-console-action="rerun_command"' in page
    assert done.status_code == 302
    again = DeviceCommand.objects.exclude(pk=command.pk).get(device=device)
    assert (again.type, again.payload, again.status) == ("script", command.payload, "pending")
    assert again.created_by == partner_technician
    assert AuditLog.objects.get(action="command.queue", target_id=str(again.pk)).actor_user == partner_technician


def test_a_viewer_can_neither_cancel_nor_rerun(device, viewer):
    command = queue_command(device=device, type="reboot", payload={})
    client = admin_as(viewer)

    page = client.get(page_url(device)).content.decode()
    cancel = client.post(command_url(device, command, "cancel"))
    rerun = client.post(command_url(device, command, "rerun"))

    assert f'data-command-id="{command.pk}"' in page
    assert not {"cancel_command", "rerun_command"} & offered(page)
    assert (cancel.status_code, rerun.status_code) == (403, 403)
    assert list(DeviceCommand.objects.values_list("status", flat=True)) == ["pending"]


# --- Inventory ------------------------------------------------------------------------------------------------------


def test_each_inventory_section_says_when_it_was_reported(device, partner_technician):
    from devices.models import DeviceHardware

    DeviceHardware.objects.filter(device=device).update(updated_at=timezone.now() - dt.timedelta(hours=2))
    DeviceSoftware.objects.create(
        device=device, org_id=device.org_id, name="Firefox", updated_at=timezone.now() - dt.timedelta(days=3)
    )

    html = admin_as(partner_technician).get(page_url(device)).content.decode()

    inventory = re.search(r'<section class="device-inventory".*?</section>', html, re.S).group(0)
    assert re.search(r'Hardware</a> <span class="quiet">reported <time class="ago"[^>]*>2 h ago</time>', inventory)
    assert re.search(r'Software</a> <span class="quiet">reported <time class="ago"[^>]*>3 days ago</time>', inventory)
    assert re.search(r"Disks</a> <span class=\"quiet\">never reported", inventory)
    assert 'href="#devicesoftware_set-group"' in inventory and 'id="devicesoftware_set-group"' in html
    assert 'href="#hardware-group"' in inventory and 'id="hardware-group"' in html
    assert "Firefox" in html  # the capped inlines stay


# --- Tenancy --------------------------------------------------------------------------------------------------------


def test_an_outsider_reaches_nothing_of_another_tenants_device(device, outsider):
    command = queue_command(device=device, type="reboot", payload={})
    client = admin_as(outsider)

    page = client.get(page_url(device), follow=True)
    answers = [
        client.get(action_url(device, "reboot")).status_code,
        client.post(action_url(device, "decommission")).status_code,
        client.get(commands_url(device)).status_code,
        client.post(command_url(device, command, "cancel")).status_code,
        client.post(command_url(device, command, "rerun")).status_code,
    ]

    assert page.redirect_chain and page.redirect_chain[-1][0] == reverse("admin:index")
    assert "Reception PC" not in page.content.decode().split('<ul class="messagelist">')[0]
    assert answers == [404, 404, 404, 404, 404]
    assert Device.objects.get(pk=device.pk).status == "online"
    assert list(DeviceCommand.objects.values_list("status", flat=True)) == ["pending"]


def test_an_org_user_restricted_to_a1_does_not_reach_a_device_of_a2(world, org_user):
    other = world.devices[world.site_a2][0]

    answers = [
        admin_as(org_user).get(action_url(other, "start_maintenance")).status_code,
        admin_as(org_user).get(commands_url(other)).status_code,
    ]

    assert answers == [404, 404]


# --- Query counts ---------------------------------------------------------------------------------------------------


def grow(device: Device, n: int, now: dt.datetime) -> None:
    """n more rows of everything the page reads: software, commands with results, alerts and a day of telemetry."""
    DeviceSoftware.objects.bulk_create(
        DeviceSoftware(device=device, org_id=device.org_id, name=f"package-{n}-{k}") for k in range(60)
    )
    for k in range(20):
        command = finished(device, f"line {n} {k}\n")
        DeviceCommand.objects.filter(pk=command.pk).update(created_by=None)
    for k in range(8):
        make_alert(device, f"Alert {n} {k}", minutes=k)
    insert_samples(device, [now - dt.timedelta(minutes=m + 0.5 + n / 10) for m in range(0, 24 * 60, 7)])


def test_the_device_page_runs_as_many_queries_for_many_rows_as_for_few(device, partner_technician):
    now = timezone.now()
    client = admin_as(partner_technician)
    finished(device, "one\n")
    # Past the software inline's cap from the start: a capped inline counts its rows once the cap is reached (one
    # query more, then never another).
    DeviceSoftware.objects.bulk_create(
        DeviceSoftware(device=device, org_id=device.org_id, name=f"base-{k}") for k in range(60)
    )
    client.get(page_url(device))  # warm up: the session, content types

    with CaptureQueriesContext(connection) as few:
        assert client.get(page_url(device)).status_code == 200
    with CaptureQueriesContext(connection) as fragment_few:
        assert client.get(commands_url(device)).status_code == 200
    grow(device, 1, now)
    grow(device, 2, now)
    telemetry.roll_up(now=now)
    with CaptureQueriesContext(connection) as many:
        response = client.get(page_url(device))
    with CaptureQueriesContext(connection) as fragment_many:
        client.get(commands_url(device))

    assert response.status_code == 200
    assert points(chart(response.content.decode(), "cpu"))[0] > 150
    assert len(many) == len(few), [q["sql"][:120] for q in many]
    assert len(fragment_many) == len(fragment_few)
