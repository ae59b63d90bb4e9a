"""Groups in the console: member counts in the list (one query whatever the number of groups), "Run on group" (a
command or a library script) offered to the people who may, and the dynamic-group rule editor's grammar and live
preview."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from accounts.models import AuditLog
from devices import rules
from devices.admin.groups import OPERATOR_LABELS, field_label, operator_shape, rule_grammar
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership
from devices.services import groups as group_service
from scripts.models import Script, ScriptRun
from scripts.services.library import save_script
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

LIST = admin_url(DeviceGroup, "changelist")
PREVIEW = reverse("admin:devices_devicegroup_rule_preview")
EDITOR = Path(settings.BASE_DIR) / "rmm" / "static" / "console" / "rule_editor.js"
WINDOWS = {"field": "osType", "operator": "equals", "value": "windows"}


def run_url(group: DeviceGroup) -> str:
    return reverse("admin:devices_devicegroup_run", args=[group.pk])


def offers(html: str) -> set[str]:
    return set(re.findall(r'data-console-action="([a-z_]+)"', html))


@pytest.fixture
def a1(world) -> DeviceGroup:
    """The static group "A1 servers" with both devices of site A1."""
    group = world.groups["A1 servers"]
    group_service.add_members(group=group, devices=world.devices[world.site_a1], actor=None)
    return group


def dynamic_group(world, rule=WINDOWS, name="Windows of A") -> DeviceGroup:
    return group_service.create_group(
        actor=None, org=world.org_a, site=None, name=name, type="dynamic", parent=None, filter_rules=rule
    )


# --- The list -------------------------------------------------------------------------------------------------------


def test_the_list_shows_each_groups_member_count(world, a1, partner_technician):
    dynamic_group(world)  # a2-2 and a1-2 are Windows

    response = admin_as(partner_technician).get(LIST)

    assert response.status_code == 200
    counts = {group.name: group.member_count for group in response.context["cl"].result_list}
    assert counts == {"A1 servers": 2, "A2 servers": 0, "A2 main": 0, "All of A": 0, "Windows of A": 2}
    assert f'?group={a1.pk}">2</a>' in response.content.decode()


def test_the_member_counts_cost_no_query_per_group(world, a1, partner_technician, django_assert_max_num_queries):
    client = admin_as(partner_technician)
    client.get(LIST)
    with django_assert_max_num_queries(30) as few:
        assert client.get(LIST).status_code == 200
    for n in range(12):
        group = DeviceGroup.objects.create(org=world.org_a, site=world.site_a1, name=f"More {n}")
        group_service.add_members(group=group, devices=world.devices[world.site_a1], actor=None)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LIST)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 16  # org A's four and the twelve


def test_the_list_offers_run_on_group_only_where_the_person_may_run_commands(world, a1, partner_technician, org_user):
    assert "run_on_group" in offers(admin_as(partner_technician).get(LIST).content.decode())
    assert "run_on_group" not in offers(admin_as(org_user).get(LIST).content.decode())


# --- Run on group ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "offered"),
    [
        ("superuser", True),
        ("partner_admin", True),
        ("partner_technician", True),
        ("org_admin", True),
        ("viewer", False),
        ("org_user", False),
        ("outsider", False),
    ],
)
def test_the_group_page_offers_run_on_group_to_who_may_run_commands(request, a1, persona, offered):
    client = admin_as(request.getfixturevalue(persona))

    page = client.get(admin_url(DeviceGroup, "change", a1.pk))

    assert ("run_on_group" in offers(page.content.decode())) == offered
    assert client.get(run_url(a1)).status_code == (200 if offered else 403 if persona != "outsider" else 404)


def test_a_technician_queues_a_command_on_every_member(world, a1, partner_technician):
    client = admin_as(partner_technician)
    page = client.get(run_url(a1))
    assert page.status_code == 200
    assert "<strong>2</strong> of the group's 2 members" in page.content.decode()

    response = client.post(run_url(a1), {"run": "command", "command-type": "reboot"})

    assert response.status_code == 302
    queued = DeviceCommand.objects.filter(type="reboot", status="pending", created_by=partner_technician)
    assert {c.device_id for c in queued} == {d.pk for d in world.devices[world.site_a1]}
    assert AuditLog.objects.filter(action="device_group.commands", target_id=str(a1.pk)).count() == 1


def test_a_bad_group_command_is_shown_on_its_field_and_nothing_is_queued(a1, partner_technician):
    response = admin_as(partner_technician).post(
        run_url(a1), {"run": "command", "command-type": "script", "command-language": "bash"}
    )

    assert response.status_code == 400
    assert response.context["command_form"].errors["content"] == ["The script to run is required."]
    assert not DeviceCommand.objects.exists()


def test_a_group_without_members_in_reach_says_so(world, partner_technician):
    empty = world.groups["A2 servers"]

    response = admin_as(partner_technician).post(run_url(empty), {"run": "command", "command-type": "reboot"})

    assert response.status_code == 400
    assert "no member you may run commands on" in response.content.decode()
    assert not DeviceCommand.objects.exists()


def test_a_viewer_posting_a_command_to_the_group_is_refused(a1, viewer):
    response = admin_as(viewer).post(run_url(a1), {"run": "command", "command-type": "reboot"})

    assert response.status_code == 403
    assert not DeviceCommand.objects.exists()


@pytest.fixture
def script(world) -> Script:
    return save_script(
        script=Script(
            org=world.org_a,
            name="Disk cleanup",
            language="bash",
            os_types=["linux", "windows"],
            content='echo "$RMM_PARAM_DAYS"\n',
            parameters=[{"name": "days", "type": "int", "required": True}],
        ),
        actor=None,
    )


def test_a_technician_runs_a_library_script_on_the_group_with_its_parameters(world, a1, script, partner_technician):
    client = admin_as(partner_technician)
    page = client.get(run_url(a1), {"script": script.pk})
    assert page.status_code == 200
    assert 'name="script-param_0"' in page.content.decode()

    response = client.post(run_url(a1), {"run": "script", "script": script.pk, "script-param_0": "7"})

    assert response.status_code == 302
    run = ScriptRun.objects.get()
    assert response["Location"] == admin_url(ScriptRun, "change", run.pk)
    assert (run.script_id, run.target, run.requested_by, run.queued) == (
        script.pk,
        {"groupId": str(a1.pk)},
        partner_technician,
        2,
    )
    payloads = [c.payload for c in DeviceCommand.objects.filter(script_run=run)]
    assert [p["env"]["RMM_PARAM_DAYS"] for p in payloads] == ["7", "7"]


def test_a_missing_parameter_is_shown_and_nothing_runs(a1, script, partner_technician):
    response = admin_as(partner_technician).post(run_url(a1), {"run": "script", "script": script.pk})

    assert response.status_code == 400
    assert response.context["run_form"].errors
    assert not ScriptRun.objects.exists() and not DeviceCommand.objects.exists()


def test_the_posted_group_cannot_be_swapped_for_another(world, a1, script, partner_technician):
    other = world.groups["A2 servers"]
    group_service.add_members(group=other, devices=world.devices[world.site_a2], actor=None)

    admin_as(partner_technician).post(
        run_url(a1), {"run": "script", "script": script.pk, "script-param_0": "1", "script-group": other.pk}
    )

    assert ScriptRun.objects.get().target == {"groupId": str(a1.pk)}


def test_scripts_of_another_organization_are_not_offered(world, a1, partner_admin):
    foreign = save_script(script=Script(org=world.org_b, name="B only", language="bash", content="ls\n"), actor=None)
    client = admin_as(partner_admin)

    assert "B only" not in client.get(run_url(a1)).content.decode()
    response = client.post(run_url(a1), {"run": "script", "script": foreign.pk})

    assert response.status_code == 400
    assert not ScriptRun.objects.exists()


# --- The rule editor -------------------------------------------------------------------------------------------------


def test_the_group_page_carries_the_editor_grammar_as_json_and_loads_its_script(world, partner_admin):
    group = dynamic_group(world)

    html = admin_as(partner_admin).get(admin_url(DeviceGroup, "change", group.pk)).content.decode()

    block = re.search(r'<script id="rule-grammar" type="application/json">(.*?)</script>', html, re.S)
    grammar = json.loads(block.group(1))
    assert [field["name"] for field in grammar["fields"]] == list(rules.FIELDS)
    assert {site["name"] for site in grammar["sites"]} == {"A1", "A2"}  # the group's organization's
    assert 'src="/static/console/rule_editor.js" defer' in html
    assert f'data-preview-url="{PREVIEW}"' in html
    assert "<script>" not in html  # no inline code


def test_every_operator_of_the_grammar_has_a_shape_and_a_label():
    grammar = rule_grammar([])
    used = {op for field in rules.FIELDS.values() for op in field.operators}
    assert set(grammar["operators"]) == used
    assert set(OPERATOR_LABELS) >= used
    assert {operator_shape(op) for op in used} == {"none", "single", "list", "range", "duration"}
    assert field_label("hardware.ramTotalMb") == "Hardware: RAM total MB"
    assert field_label("siteId") == "Site"


def sample_raw(field: dict, shape: str, site_id: str) -> dict:
    """What a person would type into the editor's row for this field and operator shape."""
    if field["sites"]:
        one = site_id
    elif field["choices"]:
        one = field["choices"][0]
    else:
        one = {"number": "5", "datetime": "2025-05-01T08:00:00Z", "boolean": "true"}.get(field["type"], "web")
    return {
        "none": {},
        "single": {"text": one},
        "list": {"items": [one]} if field["sites"] or field["choices"] else {"text": "web, db"},
        "range": {"from": "1", "to": "5"}
        if field["type"] == "number"
        else {"from": "2025-01-01", "to": "2025-02-01T00:00:00Z"},
        "duration": {"amount": "2", "unit": "hours"},
    }[shape]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node to run the editor's functions")
def test_what_the_editor_builds_for_every_field_and_operator_is_a_valid_rule(world):
    """The editor's own code (rule_editor.js, under Node) builds a row for every field and operator of the grammar
    from what a person would type; the grammar's validator accepts every one, and reading it back gives the rows."""
    grammar = rule_grammar([{"id": str(world.site_a1.pk), "name": "A1", "org": str(world.org_a.pk)}])
    rows = [
        {
            "field": f["name"],
            "operator": op,
            "raw": sample_raw(f, grammar["operators"][op]["shape"], str(world.site_a1.pk)),
        }
        for f in grammar["fields"]
        for op in f["operators"]
    ]
    script = f"""
        const editor = require({json.dumps(str(EDITOR))});
        const grammar = {json.dumps(grammar)};
        const rule = editor.buildRule(grammar, {{mode: "OR", rows: {json.dumps(rows)}}});
        const again = editor.buildRule(grammar, editor.parseRule(grammar, rule));
        process.stdout.write(JSON.stringify({{rule, again}}));
    """
    node = shutil.which("node") or "node"
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30, check=True)  # noqa: S603
    built = json.loads(done.stdout)

    for condition in built["rule"]["conditions"]:  # one by one: a group holds at most 100
        rules.validate_rule(condition)
        group_service.check_rule(condition, org_id=world.org_a.pk)
    assert built["again"] == built["rule"]
    assert len(built["rule"]["conditions"]) == len(rows) > 60


def preview(client, **body):
    return client.post(PREVIEW, json.dumps(body), content_type="application/json")


def test_the_preview_counts_the_devices_in_reach_that_match(world, partner_technician, org_user):
    rule = {"operator": "AND", "conditions": [WINDOWS]}

    technician = preview(admin_as(partner_technician), org=str(world.org_a.pk), rule=rule)
    restricted = preview(admin_as(org_user), org=str(world.org_a.pk), rule=rule)

    assert technician.status_code == 200
    assert technician.json()["count"] == 2  # a1-2 and a2-2
    assert {d["hostname"] for d in technician.json()["sample"]} == {"a1-2", "a2-2"}
    assert restricted.status_code == 200
    assert restricted.json()["count"] == 1  # site A1 only: a1-2


def test_the_preview_narrows_to_the_site(world, partner_technician):
    response = preview(admin_as(partner_technician), org=str(world.org_a.pk), site=str(world.site_a2.pk), rule=WINDOWS)

    assert response.status_code == 200
    assert [d["hostname"] for d in response.json()["sample"]] == ["a2-2"]


def test_the_preview_names_the_problems_of_a_bad_rule_by_their_path(world, partner_technician):
    rule = {
        "operator": "AND",
        "conditions": [WINDOWS, {"field": "hardware.cpuCores", "operator": "before", "value": 1}],
    }

    response = preview(admin_as(partner_technician), org=str(world.org_a.pk), rule=rule)

    assert response.status_code == 400
    assert "conditions[1].operator" in response.json()["fields"]


def test_an_outsider_gets_no_preview_of_another_partners_organization(world, outsider):
    response = preview(admin_as(outsider), org=str(world.org_a.pk), rule=WINDOWS)

    assert response.status_code == 403
    assert "count" not in response.json()


@pytest.mark.parametrize("body", [b"not json", b"[]", json.dumps({"org": "nope", "rule": WINDOWS}).encode()])
def test_the_preview_refuses_a_malformed_request(world, partner_technician, body):
    response = admin_as(partner_technician).post(PREVIEW, body, content_type="application/json")

    assert response.status_code in (400, 403)
    assert "count" not in response.json()


def test_the_preview_answers_only_post(partner_technician):
    assert admin_as(partner_technician).get(PREVIEW).status_code == 405


def test_the_editors_json_is_saved_through_the_form_as_before(world, partner_admin):
    group = dynamic_group(world)
    client = admin_as(partner_admin)
    url = admin_url(DeviceGroup, "change", group.pk)
    page = client.get(url)
    rule = {"operator": "OR", "conditions": [WINDOWS, {"field": "hostname", "operator": "startsWith", "value": "a1-"}]}
    data = {
        "site": "",
        "name": group.name,
        "parent": "",
        "filter_rules": json.dumps(rule),
        **{
            f"{fs.formset.management_form.prefix}-{key}": value
            for fs in page.context["inline_admin_formsets"]
            for key, value in fs.formset.management_form.initial.items()
        },
    }

    response = client.post(url, data)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    group.refresh_from_db()
    assert group.filter_rules == rule
    members = set(DeviceGroupMembership.objects.filter(group=group).values_list("device__hostname", flat=True))
    assert members == {"a1-1", "a1-2", "a2-2"}
    assert Device.objects.count() == 8
