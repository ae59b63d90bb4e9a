"""The scripts admin: the library (versions, archive instead of delete), "Run on…" (through start_run), runs with
their per-device results, and schedules, each scoped by the authorization module."""

from __future__ import annotations

import hashlib

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import AuditLog, Role, RolePermission
from devices.models import Device, DeviceCommand, DeviceGroupMembership, DeviceHardware
from devices.services.commands import record_result
from rmm.admin import ScopedAdminMixin, SuperuserOnlyAdminMixin
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion
from scripts.services.runs import start_run
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

PARAMETERS = [{"name": "serviceName", "type": "string", "required": True}]


def run_url(script: Script) -> str:
    return reverse("admin:scripts_script_run", args=[script.pk])


def results_url(run: ScriptRun) -> str:
    return reverse("admin:scripts_scriptrun_results", args=[run.pk])


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def script_form(**changes) -> dict:
    data = {
        "name": "Restart a service",
        "category": "Troubleshooting",
        "description": "",
        "language": "powershell",
        "content": "Restart-Service -Name $env:RMM_PARAM_SERVICENAME\r\n",
        "parameters": '[{"name": "serviceName", "type": "string", "required": true}]',
        "timeout_seconds": "120",
        "success_exit_codes": "0",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": "0",
    }
    return data | changes


def finish(command: DeviceCommand, *, exit_code: int, stdout: str = "done\n", status: str = "completed") -> None:
    """As the agent would: claimed (sent), then its result recorded."""
    DeviceCommand.objects.filter(pk=command.pk).update(status="sent", sent_at=command.created_at)
    record_result(
        device_id=command.device_id,
        command_id=command.pk,
        status=status,
        result={"exitCode": exit_code, "stdout": stdout, "stderr": "", "durationMs": 1200, "error": None},
    )


@pytest.fixture
def restart(world, make_script) -> Script:
    """A Windows script of org A's library with a required parameter."""
    return make_script(
        world.org_a,
        name="Restart a service",
        language="powershell",
        content="Restart-Service x\r\n",
        parameters=PARAMETERS,
    )


@pytest.fixture
def runner_without_device_execute(world, roles, permissions, make_partner_member):
    """A member of partner A who may run scripts and see devices, but not run commands on them."""
    role = Role.objects.create(name="Script runner", scope=Role.Scope.PARTNER, partner=world.partner_a)
    RolePermission.objects.bulk_create(
        RolePermission(role=role, permission=permissions[perm])
        for perm in ("scripts:read", "scripts:execute", "devices:read")
    )
    roles["Script runner"] = role
    return make_partner_member("runner@a.example", world.partner_a, "Script runner")


# --- Every model has a scoped page ---------------------------------------------------------------------------------


def test_every_scripts_model_has_an_admin_that_is_scoped_or_for_operators_only():
    for model in apps.get_app_config("scripts").get_models():
        model_admin = admin.site._registry.get(model)
        assert model_admin is not None, model.__name__
        assert isinstance(model_admin, ScopedAdminMixin | SuperuserOnlyAdminMixin), model.__name__


@pytest.mark.parametrize("model", [Script, ScriptVersion, ScriptRun, ScriptSchedule])
def test_every_list_and_add_page_answers_200_to_an_operator(superuser, restart, model):
    client = admin_as(superuser)

    listing = client.get(admin_url(model, "changelist"))

    assert listing.status_code == 200
    if admin.site._registry[model].has_add_permission(listing.wsgi_request):
        assert client.get(admin_url(model, "add")).status_code == 200


# --- The library ---------------------------------------------------------------------------------------------------


def test_a_partner_admin_adds_a_script_and_version_1_is_written_and_audited(world, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(admin_url(Script, "add"), script_form(org=world.org_a.pk))

    assert response.status_code == 302
    script = Script.objects.get(name="Restart a service")
    assert (script.org, script.version, script.os_types) == (world.org_a, 1, ["windows"])
    assert script.content == "Restart-Service -Name $env:RMM_PARAM_SERVICENAME\n"  # the browser's CR LF undone
    assert list(script.versions.values_list("version", flat=True)) == [1]
    assert AuditLog.objects.filter(action="script.create", actor_user=partner_admin).count() == 1


def test_a_cmd_script_keeps_the_line_ends_the_browser_sent(world, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(
        admin_url(Script, "add"),
        script_form(org=world.org_a.pk, language="cmd", content="@echo off\r\necho hi\r\n", parameters="[]"),
    )

    assert response.status_code == 302
    assert Script.objects.get(name="Restart a service").content == "@echo off\r\necho hi\r\n"


def test_a_bad_parameter_definition_is_shown_on_the_parameters_field_with_its_path(world, partner_admin):
    client = admin_as(partner_admin)

    response = client.post(
        admin_url(Script, "add"),
        script_form(org=world.org_a.pk, parameters='[{"name": "9lives", "type": "string", "required": true}]'),
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "parameters" in errors
    assert "parameters[0].name" in " ".join(errors["parameters"])
    assert not Script.objects.exists()


def test_changing_the_content_makes_version_2_and_the_versions_are_listed(world, partner_admin, restart):
    client = admin_as(partner_admin)

    response = client.post(
        admin_url(Script, "change", restart.pk),
        script_form(content="Restart-Service -Force $env:RMM_PARAM_SERVICENAME\r\n"),
    )

    assert response.status_code == 302
    restart.refresh_from_db()
    assert restart.version == 2
    page = client.get(admin_url(Script, "change", restart.pk))
    assert page.status_code == 200
    assert [form.instance.version for form in page.context["inline_admin_formsets"][0].formset] == [2, 1]


def test_scripts_are_archived_not_deleted(world, partner_admin, restart):
    client = admin_as(partner_admin)

    delete = client.post(admin_url(Script, "delete", restart.pk), {"post": "yes"})
    archive = client.post(
        admin_url(Script, "changelist"), {"action": "archive", "_selected_action": [str(restart.pk)]}, follow=True
    )

    assert delete.status_code == 403
    assert archive.status_code == 200
    restart.refresh_from_db()
    assert restart.archived_at is not None
    assert AuditLog.objects.filter(action="script.archive", target_id=str(restart.pk)).count() == 1
    assert "1 script archived." in messages_of(archive)
    page = client.get(admin_url(Script, "change", restart.pk))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()


def test_a_technician_without_scripts_delete_cannot_archive(world, partner_technician, restart):
    client = admin_as(partner_technician)

    response = client.post(
        admin_url(Script, "changelist"), {"action": "archive", "_selected_action": [str(restart.pk)]}
    )

    assert response.status_code == 200  # Django answers an action not offered with the list and a message
    restart.refresh_from_db()
    assert restart.archived_at is None
    assert not AuditLog.objects.filter(action="script.archive").exists()


def test_an_outsider_sees_none_of_partner_as_scripts(world, outsider, restart):
    client = admin_as(outsider)

    listing = client.get(admin_url(Script, "changelist"))
    page = client.get(admin_url(Script, "change", restart.pk))
    run_page = client.get(run_url(restart))

    assert listing.status_code == 200 and list(listing.context["cl"].result_list) == []
    assert page.status_code == 302
    assert run_page.status_code == 404


# --- Run on… -------------------------------------------------------------------------------------------------------


def test_the_run_form_queues_one_command_per_device_with_the_parameters_as_environment(
    world, partner_technician, restart
):
    client = admin_as(partner_technician)
    a1, a2 = world.devices[world.site_a1]  # a1-1 is a Linux device, a1-2 Windows

    page = client.get(run_url(restart))
    response = client.post(run_url(restart), {"devices": f"A1-2\n{a1.pk}", "param_0": "Spooler; rm -rf /"})

    assert page.status_code == 200
    assert response.status_code == 302
    run = ScriptRun.objects.get()
    assert response["Location"] == admin_url(ScriptRun, "change", run.pk)
    assert (run.trigger, run.requested_by, run.queued) == ("manual", partner_technician, 1)
    assert run.skipped == [{"deviceId": str(a1.pk), "reason": "os_not_supported"}]
    command = DeviceCommand.objects.get(script_run=run)
    assert command.device == a2
    assert command.payload["env"] == {"RMM_PARAM_SERVICENAME": "Spooler; rm -rf /"}
    assert "Spooler" not in command.payload["content"]
    assert AuditLog.objects.filter(action="script.run", actor_user=partner_technician).count() == 1


def test_the_run_form_runs_on_a_group(world, partner_technician, restart):
    client = admin_as(partner_technician)
    group = world.groups["All of A"]
    members = world.devices_in(world.site_a1, world.site_a2)
    DeviceGroupMembership.objects.bulk_create(DeviceGroupMembership(group=group, device=d, org=d.org) for d in members)

    response = client.post(run_url(restart), {"group": group.pk, "param_0": "Spooler"})

    assert response.status_code == 302
    run = ScriptRun.objects.get()
    windows = {d.pk for d in members if d.os_type == "windows"}
    assert set(DeviceCommand.objects.filter(script_run=run).values_list("device_id", flat=True)) == windows


def test_a_missing_required_parameter_is_shown_on_its_field_and_nothing_is_queued(world, partner_technician, restart):
    client = admin_as(partner_technician)

    response = client.post(run_url(restart), {"devices": "a1-2"})

    assert response.status_code == 400
    assert response.context["form"].errors["param_0"]
    assert not ScriptRun.objects.exists() and not DeviceCommand.objects.filter(type="script").exists()


def test_a_device_out_of_reach_refuses_the_whole_run(world, runner_without_device_execute, restart):
    client = admin_as(runner_without_device_execute)

    response = client.post(run_url(restart), {"devices": "a1-2\na2-2", "param_0": "Spooler"})

    assert response.status_code == 400
    assert response.context["form"].errors["devices"]
    assert not ScriptRun.objects.exists() and not DeviceCommand.objects.filter(type="script").exists()
    assert not AuditLog.objects.filter(action="script.run").exists()


def test_a_device_of_another_organization_is_unknown_to_the_form(world, partner_admin, restart):
    client = admin_as(partner_admin)
    other = world.devices[world.site_b1][1]

    response = client.post(run_url(restart), {"devices": str(other.pk), "param_0": "Spooler"})

    assert response.status_code == 400
    assert str(other.pk) in " ".join(response.context["form"].errors["devices"])
    assert not DeviceCommand.objects.filter(type="script").exists()


def test_who_may_not_run_scripts_gets_403_on_the_run_page(world, viewer, restart):
    client = admin_as(viewer)  # Partner Viewer: scripts:read, no scripts:execute

    assert client.get(run_url(restart)).status_code == 403
    assert client.post(run_url(restart), {"devices": "a1-2", "param_0": "x"}).status_code == 403
    assert not ScriptRun.objects.exists()


def test_an_archived_script_cannot_run(world, partner_admin, restart):
    from scripts.services.library import archive_script

    archive_script(script=restart, actor=partner_admin)
    client = admin_as(partner_admin)

    response = client.post(run_url(restart), {"devices": "a1-2", "param_0": "Spooler"})

    assert response.status_code == 400
    assert "archived" in " ".join(response.context["form"].non_field_errors())
    assert not ScriptRun.objects.exists()


# --- Runs and their results ----------------------------------------------------------------------------------------


def add_windows_devices(world, count: int) -> list[Device]:
    devices = Device.objects.bulk_create(
        Device(
            org=world.org_a,
            site=world.site_a2,
            agent_id=hashlib.sha256(f"bulk-{n}".encode()).hexdigest(),
            hostname=f"bulk-{n:03d}",
            os_type="windows",
        )
        for n in range(count)
    )
    DeviceHardware.objects.bulk_create(DeviceHardware(device=d, org=d.org, serial_number=d.hostname) for d in devices)
    return devices


def finished_run(script: Script, devices: list[Device]) -> ScriptRun:
    run = start_run(
        script=script,
        actor=None,
        trigger="manual",
        parameters={"serviceName": "Spooler"},
        device_ids=[d.pk for d in devices],
    )
    for n, command in enumerate(DeviceCommand.objects.filter(script_run=run).order_by("id")):
        if n % 3 != 2:  # every third device has not answered yet
            finish(command, exit_code=n % 2, stdout=f"output of {n}\n" + "x" * 5000)
    return run


def test_the_run_page_shows_progress_and_per_device_results(world, partner_technician, restart):
    devices = [world.devices[world.site_a1][1], world.devices[world.site_a2][1]]
    run = finished_run(restart, devices)
    client = admin_as(partner_technician)

    page = client.get(admin_url(ScriptRun, "change", run.pk))
    results = client.get(results_url(run))

    assert page.status_code == 200
    html = page.content.decode()
    assert "1 succeeded, 1 failed" in html
    assert "a1-2" in html and "a2-2" in html and "output of 0" in html
    assert "x" * 1988 + "…" in html and "x" * 1989 not in html  # output shown truncated, at 2,000 characters
    assert results.status_code == 200
    assert "a1-2" in results.content.decode()


def test_the_results_page_costs_the_same_queries_for_2_and_60_devices_and_pages_by_keyset(
    world, partner_technician, restart
):
    client = admin_as(partner_technician)
    small = finished_run(restart, [world.devices[world.site_a1][1], world.devices[world.site_a2][1]])
    big = finished_run(restart, add_windows_devices(world, 160))
    client.get(results_url(small))  # the session and the user are cached from here on

    with CaptureQueriesContext(connection) as few:
        assert client.get(results_url(small)).status_code == 200
    with CaptureQueriesContext(connection) as many:
        first = client.get(results_url(big))
    with CaptureQueriesContext(connection) as run_page:
        assert client.get(admin_url(ScriptRun, "change", big.pk)).status_code == 200

    assert first.status_code == 200
    assert len(many) == len(few)
    assert len(run_page) <= len(few) + 8
    next_url = first.context["next_url"]
    assert next_url is not None
    second = client.get(results_url(big) + next_url)
    assert second.status_code == 200
    first_hosts = {d.hostname for d in Device.objects.filter(commands__script_run=big)}
    shown = [h for h in first_hosts if h in first.content.decode()]
    assert len(shown) == 100
    assert second.context["next_url"] is None


def test_the_run_list_shows_progress_with_a_constant_number_of_queries(world, partner_technician, restart):
    client = admin_as(partner_technician)
    finished_run(restart, [world.devices[world.site_a1][1]])
    client.get(admin_url(ScriptRun, "changelist"))
    with CaptureQueriesContext(connection) as one:
        assert client.get(admin_url(ScriptRun, "changelist")).status_code == 200
    for _ in range(5):
        finished_run(restart, [world.devices[world.site_a1][1], world.devices[world.site_a2][1]])

    with CaptureQueriesContext(connection) as six:
        response = client.get(admin_url(ScriptRun, "changelist"))

    assert response.status_code == 200
    assert len(six) == len(one)
    assert response.context["cl"].result_count == 6


@pytest.mark.parametrize(("persona", "sees"), [("partner_technician", True), ("org_admin", True), ("outsider", False)])
def test_runs_are_listed_only_in_reach(request, world, restart, persona, sees):
    run = finished_run(restart, [world.devices[world.site_a1][1]])
    client = admin_as(request.getfixturevalue(persona))

    listing = client.get(admin_url(ScriptRun, "changelist"))
    page = client.get(admin_url(ScriptRun, "change", run.pk))
    results = client.get(results_url(run))

    assert listing.status_code == 200
    assert (run in list(listing.context["cl"].result_list)) is sees
    assert page.status_code == (200 if sees else 302)
    assert results.status_code == (200 if sees else 404)


def test_cancelling_a_run_cancels_its_pending_commands(world, partner_technician, restart):
    run = start_run(
        script=restart,
        actor=None,
        trigger="manual",
        parameters={"serviceName": "Spooler"},
        device_ids=[world.devices[world.site_a1][1].pk, world.devices[world.site_a2][1].pk],
    )
    client = admin_as(partner_technician)

    response = client.post(
        admin_url(ScriptRun, "changelist"), {"action": "cancel", "_selected_action": [str(run.pk)]}, follow=True
    )

    assert response.status_code == 200
    assert set(DeviceCommand.objects.filter(script_run=run).values_list("status", flat=True)) == {"cancelled"}
    assert "2 pending commands cancelled." in messages_of(response)
    assert AuditLog.objects.filter(action="script_run.cancel", actor_user=partner_technician).exists()


# --- Schedules -----------------------------------------------------------------------------------------------------


def schedule_form(world, script: Script, **changes) -> dict:
    data = {
        "org": world.org_a.pk,
        "name": "Nightly restart",
        "script": script.pk,
        "parameters": '{"serviceName": "Spooler"}',
        "device_group": world.groups["All of A"].pk,
        "site": "",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "enabled": "on",
    }
    return data | changes


def test_a_schedule_saved_in_the_admin_goes_through_the_service(world, partner_admin, restart):
    client = admin_as(partner_admin)

    response = client.post(admin_url(ScriptSchedule, "add"), schedule_form(world, restart))

    assert response.status_code == 302
    schedule = ScriptSchedule.objects.get()
    assert schedule.next_run_at is not None
    assert schedule.created_by == partner_admin
    assert AuditLog.objects.filter(action="script_schedule.create", actor_user=partner_admin).count() == 1


def test_a_bad_cron_expression_is_shown_on_its_field(world, partner_admin, restart):
    client = admin_as(partner_admin)

    response = client.post(admin_url(ScriptSchedule, "add"), schedule_form(world, restart, cron="every night"))

    assert response.status_code == 200
    assert "cron" in response.context["adminform"].form.errors
    assert not ScriptSchedule.objects.exists()


def test_deleting_a_schedule_goes_through_the_service(world, partner_admin, restart):
    client = admin_as(partner_admin)
    client.post(admin_url(ScriptSchedule, "add"), schedule_form(world, restart))
    schedule = ScriptSchedule.objects.get()

    response = client.post(admin_url(ScriptSchedule, "delete", schedule.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not ScriptSchedule.objects.exists()
    assert AuditLog.objects.filter(action="script_schedule.delete", actor_user=partner_admin).count() == 1


def test_a_technician_without_scripts_write_neither_reads_nor_adds_schedules(world, partner_technician, restart):
    client = admin_as(partner_technician)

    assert client.get(admin_url(ScriptSchedule, "changelist")).status_code == 403
    assert client.post(admin_url(ScriptSchedule, "add"), schedule_form(world, restart)).status_code == 403
    assert not ScriptSchedule.objects.exists()
