"""The script library in the console: "Run on…" offered to the people who may run the script (scripts:execute),
a partner technician running a partner-library script from it, and the run's results readable."""

from __future__ import annotations

import pytest
from django.urls import reverse

from devices.models import DeviceCommand
from devices.services.commands import record_result
from scripts.models import Script, ScriptRun
from scripts.services.library import save_script
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

LIST = admin_url(Script, "changelist")


def run_url(script: Script) -> str:
    return reverse("admin:scripts_script_run", args=[script.pk])


@pytest.fixture
def inventory(world) -> Script:
    """A script of partner A's library, usable in all its organizations."""
    return save_script(
        script=Script(partner=world.partner_a, name="Inventory check", language="bash", content="uname -a\n"),
        actor=None,
    )


def test_a_partner_technician_runs_a_partner_script_and_reads_its_results(world, inventory, partner_technician):
    client = admin_as(partner_technician)
    assert run_url(inventory) in client.get(LIST).content.decode()
    # Both Linux: a bash script skips Windows devices.
    response = client.post(run_url(inventory), {"org": world.org_a.pk, "devices": "a1-1\na2-1"})

    assert response.status_code == 302
    run = ScriptRun.objects.get()
    assert (run.requested_by, run.queued) == (partner_technician, 2)
    first, second = DeviceCommand.objects.filter(script_run=run).select_related("device").order_by("device__hostname")
    DeviceCommand.objects.filter(pk__in=[first.pk, second.pk]).update(status="sent")
    record_result(
        device_id=first.device_id,
        command_id=first.pk,
        status="completed",
        result={"exitCode": 0, "stdout": "Linux a1-1\n", "stderr": "", "durationMs": 1500, "error": None},
    )
    record_result(
        device_id=second.device_id,
        command_id=second.pk,
        status="failed",
        result={"exitCode": 2, "stdout": "", "stderr": "<no uname>\n", "durationMs": 20, "error": None},
    )

    page = client.get(admin_url(ScriptRun, "change", run.pk))

    assert page.status_code == 200
    html = page.content.decode()
    assert '<span class="status status-succeeded">succeeded</span>' in html
    assert '<span class="status status-failed">failed</span>' in html
    assert "Linux a1-1\n</pre>" in html
    assert "&lt;no uname&gt;" in html
    assert "<td>1.5 s</td>" in html
    assert admin_url(DeviceCommand, "change", second.pk) in html
    command_page = client.get(admin_url(DeviceCommand, "change", second.pk)).content.decode()
    assert '<pre class="command-stream command-stderr">&lt;no uname&gt;\n</pre>' in command_page


@pytest.mark.parametrize(("persona", "offered"), [("partner_technician", True), ("org_user", False), ("viewer", False)])
def test_run_on_is_offered_only_to_who_may_run_the_script(request, inventory, persona, offered):
    client = admin_as(request.getfixturevalue(persona))

    listed = client.get(LIST)
    page = client.get(admin_url(Script, "change", inventory.pk))

    assert listed.status_code == 200 and page.status_code == 200
    assert (run_url(inventory) in listed.content.decode()) == offered
    assert (run_url(inventory) in page.content.decode()) == offered
    assert client.get(run_url(inventory)).status_code == (200 if offered else 403)


def test_the_library_list_costs_the_same_queries_for_more_scripts(
    world, inventory, partner_technician, django_assert_max_num_queries
):
    client = admin_as(partner_technician)
    client.get(LIST)
    with django_assert_max_num_queries(30) as few:
        assert client.get(LIST).status_code == 200
    for n in range(10):
        owner = {"partner": world.partner_a} if n % 2 else {"org": world.org_a}
        save_script(script=Script(**owner, name=f"Script {n}", language="bash", content="true\n"), actor=None)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    assert response.status_code == 200
    assert response.content.decode().count('href="/admin/scripts/script/') >= 11
