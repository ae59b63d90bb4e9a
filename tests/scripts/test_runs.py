"""Starting script runs (scripts.services.runs.start_run), their progress, results and cancelling."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from accounts.models import AuditLog, OrganizationUser, PartnerUser, Role, RolePermission
from devices.models import Device, DeviceCommand, DeviceGroupMembership
from rmm.domain_errors import Conflict, Invalid, Refused
from scripts.models import ScriptRun
from scripts.services import runs as runs_service
from scripts.services.library import save_script
from scripts.services.runs import cancel_run, result_status, run_progress, run_results, start_run

PARAMETERS = [{"name": "target", "type": "string", "required": True}]
HOSTILE = '"; rm -rf / #'


def nothing_queued() -> bool:
    return (
        not DeviceCommand.objects.exists()
        and not ScriptRun.objects.exists()
        and not AuditLog.objects.filter(action="script.run").exists()
    )


def add_members(group, devices) -> None:
    DeviceGroupMembership.objects.bulk_create(
        DeviceGroupMembership(device=device, group=group, org_id=group.org_id) for device in devices
    )


def linux(world, site):
    return next(device for device in world.devices[site] if device.os_type == "linux")


def windows(world, site):
    return next(device for device in world.devices[site] if device.os_type == "windows")


# --- what a command carries ---


def test_a_hostile_value_arrives_verbatim_in_env_and_nowhere_in_the_script(world, org_admin, make_script):
    script = make_script(world.org_a, parameters=PARAMETERS, content='ls -- "$RMM_PARAM_TARGET"\n')
    device = linux(world, world.site_a1)

    run = start_run(
        script=script, actor=org_admin, trigger="api", parameters={"target": HOSTILE}, device_ids=[str(device.pk)]
    )

    command = DeviceCommand.objects.get()
    assert (command.device_id, command.script_run_id, command.type) == (device.pk, run.pk, "script")
    assert command.payload == {
        "language": "bash",
        "content": 'ls -- "$RMM_PARAM_TARGET"\n',
        "timeoutSeconds": 300,
        "env": {"RMM_PARAM_TARGET": HOSTILE},
        "scriptRunId": str(run.pk),
    }
    assert HOSTILE not in command.payload["content"] and "rm -rf" not in command.payload["content"]
    assert run.parameters == {"target": HOSTILE}
    assert (command.status, command.created_by, command.org_id) == ("pending", org_admin, world.org_a.pk)
    assert command.expires_at > timezone.now()


def test_a_run_keeps_the_version_it_ran_after_the_script_is_edited(world, org_admin, make_script):
    script = make_script(world.org_a, content="echo one\n", success_exit_codes=[0])
    device = linux(world, world.site_a1)
    run = start_run(script=script, actor=org_admin, trigger="api", device_ids=[device.pk])

    script.content = "echo two\n"
    script.success_exit_codes = [0, 1]
    save_script(script=script, actor=org_admin)
    later = start_run(script=script, actor=org_admin, trigger="api", device_ids=[device.pk])

    run.refresh_from_db()
    assert (script.version, run.version, later.version) == (2, 1, 2)
    assert DeviceCommand.objects.get(script_run=run).payload["content"] == "echo one\n"
    assert DeviceCommand.objects.get(script_run=later).payload["content"] == "echo two\n"
    # Judged by the success exit codes of the version it ran: exit 1 failed in version 1, succeeds in version 2.
    DeviceCommand.objects.filter(script_run__isnull=False).update(status="completed", result={"exitCode": 1})
    progress = run_progress([run, later])
    assert (progress[run.pk]["failed"], progress[run.pk]["succeeded"]) == (1, 0)
    assert (progress[later.pk]["failed"], progress[later.pk]["succeeded"]) == (0, 1)


def test_a_run_writes_one_audit_row(world, org_admin, make_script):
    script = make_script(world.org_a)
    run = start_run(
        script=script, actor=org_admin, trigger="api", device_ids=[d.pk for d in world.devices[world.site_a1]]
    )
    row = AuditLog.objects.get(action="script.run")
    assert (row.actor_user, row.org_id, row.target_id) == (org_admin, world.org_a.pk, str(run.pk))
    assert (row.details["scriptId"], row.details["version"], row.details["trigger"]) == (str(script.pk), 1, "api")
    assert (row.details["queued"], row.details["skipped"]) == (1, 1)


# --- skips ---


def test_os_mismatch_decommissioned_and_quarantined_devices_are_skipped_and_counted(world, org_admin, make_script):
    script = make_script(world.org_a)  # bash: linux and macOS
    a1_linux, a1_windows = linux(world, world.site_a1), windows(world, world.site_a1)
    a2_linux, a2_windows = linux(world, world.site_a2), windows(world, world.site_a2)
    Device.objects.filter(pk=a2_linux.pk).update(status=Device.Status.DECOMMISSIONED)
    Device.objects.filter(pk=a2_windows.pk).update(status=Device.Status.QUARANTINED)

    run = start_run(
        script=script,
        actor=org_admin,
        trigger="api",
        device_ids=[a1_linux.pk, a1_windows.pk, a2_linux.pk, a2_windows.pk],
    )

    assert run.queued == 1
    assert list(DeviceCommand.objects.values_list("device_id", flat=True)) == [a1_linux.pk]
    assert sorted(run.skipped, key=lambda skip: skip["reason"]) == [
        {"deviceId": str(a2_linux.pk), "reason": "decommissioned"},
        {"deviceId": str(a1_windows.pk), "reason": "os_not_supported"},
        {"deviceId": str(a2_windows.pk), "reason": "quarantined"},
    ]
    progress = run_progress([run])[run.pk]
    assert (progress["pending"], progress["skipped"], progress["total"]) == (1, 3, 4)


def test_a_run_whose_devices_are_all_skipped_is_recorded_with_nothing_queued(world, org_admin, make_script):
    script = make_script(world.org_a, language="powershell")
    run = start_run(script=script, actor=org_admin, trigger="api", device_ids=[linux(world, world.site_a1).pk])
    assert (run.queued, len(run.skipped)) == (0, 1)
    assert not DeviceCommand.objects.exists()


# --- reach ---


@pytest.fixture
def site_runner(world, make_user, permissions, roles):
    """Runs scripts anywhere in partner A's organizations (partner membership: scripts read+execute, devices:read)
    but may run commands on site A1's devices only (an Org Admin membership of org A restricted to site A1)."""
    user = make_user("site.runner@a.example")
    role = Role.objects.create(name="Script runner", scope=Role.Scope.PARTNER, partner=world.partner_a)
    RolePermission.objects.bulk_create(
        RolePermission(role=role, permission=permissions[perm])
        for perm in ("scripts:read", "scripts:execute", "devices:read")
    )
    PartnerUser.objects.create(partner=world.partner_a, user=user, role=role, org_access="all")
    OrganizationUser.objects.create(org=world.org_a, user=user, role=roles["Org Admin"]).sites.set([world.site_a1])
    return user


def test_a_device_out_of_the_callers_reach_refuses_the_whole_run(world, site_runner, make_script):
    script = make_script(world.org_a)
    in_reach, beyond = linux(world, world.site_a1), linux(world, world.site_a2)

    with pytest.raises(Invalid) as refused:
        start_run(script=script, actor=site_runner, trigger="api", device_ids=[in_reach.pk, beyond.pk])

    assert set(refused.value.fields) == {"deviceIds"}
    assert str(beyond.pk) in refused.value.fields["deviceIds"][0]
    assert str(in_reach.pk) not in refused.value.fields["deviceIds"][0]
    assert nothing_queued()
    assert start_run(script=script, actor=site_runner, trigger="api", device_ids=[in_reach.pk]).queued == 1


def test_a_group_with_a_member_out_of_reach_refuses_the_whole_run(world, site_runner, make_script):
    script = make_script(world.org_a)
    group = world.groups["All of A"]
    add_members(group, [linux(world, world.site_a1), linux(world, world.site_a2)])

    with pytest.raises(Invalid) as refused:
        start_run(script=script, actor=site_runner, trigger="api", group=group)

    assert set(refused.value.fields) == {"groupId"}
    assert nothing_queued()


def test_a_device_of_another_organization_is_refused_like_an_unknown_one(world, partner_admin, make_script):
    script = make_script(world.org_a)
    theirs = linux(world, world.site_b1)
    for ids in ([theirs.pk], [linux(world, world.site_a1).pk, theirs.pk], [uuid.uuid4()], ["not-an-id"], []):
        with pytest.raises(Invalid) as refused:
            start_run(script=script, actor=partner_admin, trigger="api", device_ids=ids)
        assert set(refused.value.fields) == {"deviceIds"}
    assert nothing_queued()


def test_a_technician_with_selected_organizations_cannot_reach_the_others(world, make_partner_member, make_script):
    technician = make_partner_member(
        "selected@a.example", world.partner_a, "Partner Technician", org_access="selected", selected=[world.org_a]
    )
    script = make_script(world.partner_a)
    with pytest.raises(Invalid):
        start_run(script=script, actor=technician, trigger="api", device_ids=[linux(world, world.site_a2_main).pk])
    assert nothing_queued()
    run = start_run(script=script, actor=technician, trigger="api", device_ids=[linux(world, world.site_a1).pk])
    assert run.queued == 1


def test_who_cannot_execute_the_script_is_refused(world, org_user, viewer, outsider, make_script):
    script = make_script(world.org_a)
    for actor in (org_user, viewer, outsider):
        with pytest.raises((Refused, Invalid)):
            start_run(script=script, actor=actor, trigger="api", device_ids=[linux(world, world.site_a1).pk])
    assert nothing_queued()


def test_a_site_restricted_member_runs_the_library_on_the_devices_of_their_sites_only(
    world, make_org_member, make_script
):
    # The library is used from wherever scripts:execute is held in its organization (rmm.authz, library scopes);
    # the devices still need devices:execute each.
    script = make_script(world.org_a)
    site_admin = make_org_member("site.admin@a.example", world.org_a, "Org Admin", sites=[world.site_a1])

    with pytest.raises(Invalid):
        start_run(script=script, actor=site_admin, trigger="api", device_ids=[linux(world, world.site_a2_main).pk])
    assert nothing_queued()
    run = start_run(script=script, actor=site_admin, trigger="api", device_ids=[linux(world, world.site_a1).pk])
    assert run.queued == 1


def test_an_organization_admin_runs_a_script_of_the_partners_library_in_their_organization(
    world, org_admin, make_script
):
    script = make_script(world.partner_a)

    run = start_run(script=script, actor=org_admin, trigger="api", device_ids=[linux(world, world.site_a1).pk])

    assert run.queued == 1


# --- targets ---


def test_a_group_target_runs_on_its_current_members(world, partner_technician, make_script):
    script = make_script(world.org_a, language="python")
    group = world.groups["A1 servers"]
    add_members(group, world.devices[world.site_a1])

    run = start_run(script=script, actor=partner_technician, trigger="manual", group=group)

    assert (run.target, run.queued, run.skipped, run.org_id) == ({"groupId": str(group.pk)}, 2, [], world.org_a.pk)
    assert set(DeviceCommand.objects.values_list("device_id", flat=True)) == {
        d.pk for d in world.devices[world.site_a1]
    }
    assert run.requested_by == partner_technician


def test_a_group_without_members_has_no_devices(world, org_admin, make_script):
    with pytest.raises(Conflict) as refused:
        start_run(script=make_script(world.org_a), actor=org_admin, trigger="api", group=world.groups["A1 servers"])
    assert refused.value.code == "no_devices"
    assert nothing_queued()


def test_a_site_and_a_whole_organization_are_targets_too(world, make_script):
    script = make_script(world.org_a, language="python")
    by_site = start_run(script=script, actor=None, trigger="schedule", site=world.site_a2)
    whole = start_run(script=script, actor=None, trigger="schedule", org=world.org_a)
    assert (by_site.queued, whole.queued) == (2, 4)
    assert (by_site.target, whole.target) == ({"siteId": str(world.site_a2.pk)}, {"orgId": str(world.org_a.pk)})
    assert whole.requested_by is None
    assert AuditLog.objects.filter(action="script.run", actor_user__isnull=True).count() == 2


def test_exactly_one_target_is_named(world, org_admin, make_script):
    script = make_script(world.org_a)
    for targets in ({}, {"device_ids": [linux(world, world.site_a1).pk], "site": world.site_a1}):
        with pytest.raises(Invalid):
            start_run(script=script, actor=org_admin, trigger="api", **targets)
    assert nothing_queued()


def test_more_than_10000_devices_are_refused(world, org_admin, make_script, monkeypatch):
    script = make_script(world.org_a)
    with pytest.raises(Invalid) as refused:
        start_run(script=script, actor=org_admin, trigger="api", device_ids=[uuid.uuid4() for _ in range(10_001)])
    assert refused.value.code == "too_many_devices"
    # The same limit for a group (lowered here rather than enrolling 10,001 devices).
    group = world.groups["A1 servers"]
    add_members(group, world.devices[world.site_a1])
    monkeypatch.setattr(runs_service, "MAX_RUN_DEVICES", 1)
    with pytest.raises(Invalid) as refused:
        start_run(script=script, actor=org_admin, trigger="api", group=group)
    assert refused.value.code == "too_many_devices"
    assert nothing_queued()


def test_an_archived_script_cannot_run(world, org_admin, make_script):
    from scripts.services.library import archive_script

    script = make_script(world.org_a)
    archive_script(script=script, actor=org_admin)
    with pytest.raises(Conflict) as refused:
        start_run(script=script, actor=org_admin, trigger="api", device_ids=[linux(world, world.site_a1).pk])
    assert refused.value.code == "script_archived"
    assert nothing_queued()


def test_a_partner_library_script_runs_in_each_of_the_partners_organizations(world, partner_technician, make_script):
    script = make_script(world.partner_a)
    in_a = start_run(
        script=script, actor=partner_technician, trigger="api", device_ids=[linux(world, world.site_a1).pk]
    )
    in_a2 = start_run(
        script=script, actor=partner_technician, trigger="api", device_ids=[linux(world, world.site_a2_main).pk]
    )
    assert (in_a.org_id, in_a2.org_id) == (world.org_a.pk, world.org_a2.pk)
    # One run, one organization.
    with pytest.raises(Invalid):
        start_run(
            script=script,
            actor=partner_technician,
            trigger="api",
            device_ids=[linux(world, world.site_a1).pk, linux(world, world.site_a2_main).pk],
        )


def test_a_script_of_one_organization_is_refused_on_anothers_devices(world, partner_admin, superuser, make_script):
    script = make_script(world.org_a)
    with pytest.raises(Invalid) as refused:
        start_run(script=script, actor=partner_admin, trigger="api", device_ids=[linux(world, world.site_a2_main).pk])
    assert set(refused.value.fields) == {"deviceIds"}
    add_members(world.groups["A2 main"], world.devices[world.site_a2_main])
    with pytest.raises(Invalid) as refused:
        start_run(script=script, actor=partner_admin, trigger="api", group=world.groups["A2 main"])
    assert set(refused.value.fields) == {"groupId"}
    # Not even the server, nor a superuser, runs a partner's library in another partner's organization.
    partner_script = make_script(world.partner_a)
    with pytest.raises(Invalid):
        start_run(script=partner_script, actor=superuser, trigger="api", device_ids=[linux(world, world.site_b1).pk])
    with pytest.raises(Invalid):
        start_run(script=partner_script, actor=None, trigger="schedule", org=world.org_b)
    assert nothing_queued()


def test_bad_parameters_queue_nothing(world, org_admin, make_script):
    script = make_script(world.org_a, parameters=PARAMETERS)
    with pytest.raises(Invalid) as refused:
        start_run(
            script=script, actor=org_admin, trigger="api", parameters={}, device_ids=[linux(world, world.site_a1).pk]
        )
    assert set(refused.value.fields) == {"parameters.target"}
    assert nothing_queued()


# --- progress, results, cancel ---


def test_progress_counts_each_status_and_judges_exit_codes(world, org_admin, make_script):
    script = make_script(world.org_a, language="python", success_exit_codes=[0, 3])
    run = start_run(script=script, actor=org_admin, trigger="api", org=world.org_a)
    commands = list(run_results(run))
    assert len(commands) == 4
    outcomes = [
        ("completed", {"exitCode": 3}),
        ("completed", {"exitCode": 1}),
        ("timeout", {"exitCode": None}),
        ("sent", None),
    ]
    for command, (status, result) in zip(commands, outcomes, strict=True):
        DeviceCommand.objects.filter(pk=command.pk).update(status=status, result=result)

    assert run_progress([run])[run.pk] == {
        "pending": 0,
        "sent": 1,
        "succeeded": 1,
        "failed": 1,
        "timedOut": 1,
        "cancelled": 0,
        "expired": 0,
        "skipped": 0,
        "total": 4,
    }
    statuses = [result_status(command, [0, 3]) for command in run_results(run)]
    assert statuses == ["succeeded", "failed", "timedOut", "sent"]


def test_results_are_the_runs_commands_in_id_order_with_their_devices(
    world, org_admin, make_script, django_assert_num_queries
):
    script = make_script(world.org_a, language="python")
    run = start_run(script=script, actor=org_admin, trigger="api", org=world.org_a)
    start_run(script=script, actor=org_admin, trigger="api", org=world.org_a)  # another run's commands
    with django_assert_num_queries(1):
        commands = list(run_results(run))
        hostnames = {command.device.hostname for command in commands}
    assert [command.pk for command in commands] == sorted(command.pk for command in commands)
    assert hostnames == {"a1-1", "a1-2", "a2-1", "a2-2"}


def test_progress_of_several_runs_is_one_query(world, org_admin, make_script, django_assert_num_queries):
    script = make_script(world.org_a, language="python")
    runs = [start_run(script=script, actor=org_admin, trigger="api", org=world.org_a) for _ in range(3)]
    runs.append(start_run(script=script, actor=org_admin, trigger="api", site=world.site_a1))
    with django_assert_num_queries(1):
        progress = run_progress(runs)
    assert [progress[run.pk]["pending"] for run in runs] == [4, 4, 4, 2]
    with django_assert_num_queries(0):
        assert run_progress([]) == {}


def test_cancel_cancels_only_pending_commands(world, org_admin, make_script):
    script = make_script(world.org_a, language="python")
    run = start_run(script=script, actor=org_admin, trigger="api", org=world.org_a)
    other = start_run(script=script, actor=org_admin, trigger="api", org=world.org_a)
    first, second, *_ = run_results(run)
    DeviceCommand.objects.filter(pk=first.pk).update(status="sent")
    DeviceCommand.objects.filter(pk=second.pk).update(status="completed", result={"exitCode": 0})

    assert cancel_run(run=run, actor=org_admin, ip="10.1.1.1") == 2

    assert sorted(DeviceCommand.objects.filter(script_run=run).values_list("status", flat=True)) == [
        "cancelled",
        "cancelled",
        "completed",
        "sent",
    ]
    assert set(DeviceCommand.objects.filter(script_run=other).values_list("status", flat=True)) == {"pending"}
    row = AuditLog.objects.get(action="script_run.cancel")
    assert (row.actor_user, row.ip, row.details["cancelled"]) == (org_admin, "10.1.1.1", 2)
    assert run_progress([run])[run.pk]["cancelled"] == 2
