"""The demo's script library (scripts.demo): made through the services, with past runs whose results came back as
an agent's would, and made once however often the demo is seeded."""

from __future__ import annotations

import pytest

from accounts.models import AuditLog
from devices.models import DeviceCommand
from scripts.demo import DEMO_SCRIPTS, DISK_REPORT, set_up_demo_scripts
from scripts.models import Script, ScriptRun, ScriptSchedule, ScriptVersion
from scripts.services.library import parameter_env
from scripts.services.runs import run_progress

pytestmark = pytest.mark.django_db


def test_every_organization_of_the_partner_gets_the_library_and_others_do_not(world, superuser):
    done = set_up_demo_scripts(partner=world.partner_a, actor=superuser)

    names = {demo.name for demo in DEMO_SCRIPTS}
    for org in (world.org_a, world.org_a2):
        assert set(Script.objects.filter(org=org).values_list("name", flat=True)) == names
    assert not Script.objects.filter(org=world.org_b).exists()
    assert done.scripts_created == done.scripts == 2 * len(DEMO_SCRIPTS)
    assert ScriptVersion.objects.filter(version=1).count() == 2 * len(DEMO_SCRIPTS)
    assert AuditLog.objects.filter(action="script.create", actor_user=superuser).count() == 2 * len(DEMO_SCRIPTS)


def test_the_library_scripts_read_their_parameters_from_the_environment(world, superuser):
    set_up_demo_scripts(partner=world.partner_a, actor=superuser)

    for script in Script.objects.filter(org=world.org_a):
        for definition in script.parameters:
            env_name = f"RMM_PARAM_{definition['name'].upper()}"
            assert env_name in script.content, (script.name, env_name)
    cleanup = Script.objects.get(org=world.org_a, name="Disk cleanup")
    assert parameter_env(cleanup.parameters, {"minFreeGb": 15}) == {"RMM_PARAM_MINFREEGB": "15"}
    assert Script.objects.get(org=world.org_a, name=DISK_REPORT).os_types == ["macos", "linux"]


def test_past_runs_have_results_as_the_agents_reported_them(world, superuser, partner_technician):
    set_up_demo_scripts(partner=world.partner_a, actor=superuser, requested_by=partner_technician)

    runs = list(ScriptRun.objects.filter(org=world.org_a))
    assert runs and all(run.requested_by == partner_technician for run in runs)
    progress = run_progress(runs)
    assert sum(p["succeeded"] for p in progress.values()) > 0
    assert sum(p["failed"] for p in progress.values()) > 0
    for command in DeviceCommand.objects.filter(script_run__in=runs, status__in=["completed", "failed"]):
        assert set(command.result) == {"exitCode", "stdout", "stderr", "durationMs", "error"}
        assert command.created_at <= command.sent_at <= command.completed_at
    report = ScriptRun.objects.get(org=world.org_a, script__name=DISK_REPORT)
    assert report.skipped and report.skipped[0]["reason"] == "os_not_supported"


def test_seeding_twice_makes_nothing_new(world, superuser):
    set_up_demo_scripts(partner=world.partner_a, actor=superuser)
    before = (
        Script.objects.count(),
        ScriptRun.objects.count(),
        ScriptSchedule.objects.count(),
        AuditLog.objects.count(),
    )

    done = set_up_demo_scripts(partner=world.partner_a, actor=superuser)

    assert (done.scripts_created, done.runs_created, done.schedules_created) == (0, 0, 0)
    after = (
        Script.objects.count(),
        ScriptRun.objects.count(),
        ScriptSchedule.objects.count(),
        AuditLog.objects.count(),
    )
    assert after == before
