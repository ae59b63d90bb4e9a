"""Script schedules over the technician API: CRUD through scripts.services.schedules (cron and time zone checked,
next slot computed, parameters checked against the script), scripts:write throughout, the list's filters."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog
from scripts.models import ScriptSchedule

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_error_shape(response, status: int, code: str = "validation_error") -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "message", "fields"}
    assert body["error"] == code
    return body["fields"]


def test_an_org_admin_schedules_a_script_on_a_site_with_its_next_slot_and_an_audit_row(world, org_admin, make_script):
    script = make_script(world.org_a, parameters=[{"name": "days", "type": "int", "required": True}])

    response = client_for(org_admin).post(
        "/api/v1/script-schedules",
        {
            "scriptId": str(script.pk),
            "siteId": str(world.site_a1.pk),
            "name": "Nightly cleanup",
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "parameters": {"days": 7},
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["orgId"] == str(world.org_a.pk)  # from the site
    assert body["nextRunAt"] is not None and body["lastRunAt"] is None and body["enabled"] is True
    schedule = ScriptSchedule.objects.get(pk=body["id"])
    assert schedule.site_id == world.site_a1.pk and schedule.parameters == {"days": 7}
    assert AuditLog.objects.filter(action="script_schedule.create", target_id=str(schedule.pk)).exists()


def test_the_organization_comes_from_an_organizations_script(world, org_admin, make_script):
    script = make_script(world.org_a)

    response = client_for(org_admin).post(
        "/api/v1/script-schedules", {"scriptId": str(script.pk), "cron": "0 * * * *"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["orgId"] == str(world.org_a.pk)
    assert response.json()["siteId"] is None and response.json()["deviceGroupId"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "every night"}, "cron"),
        ({"cron": "0 0 * * * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"parameters": {"days": "many"}}, "parameters.days"),
        ({"parameters": {}}, "parameters.days"),
        ({"siteId": "not-a-uuid"}, "siteId"),
    ],
)
def test_a_bad_schedule_gets_400_naming_the_field_and_saves_nothing(world, org_admin, make_script, change, field):
    script = make_script(world.org_a, parameters=[{"name": "days", "type": "int", "required": True}])
    body = {"scriptId": str(script.pk), "cron": "0 3 * * *", "parameters": {"days": 1}, **change}

    response = client_for(org_admin).post("/api/v1/script-schedules", body, format="json")

    assert field in assert_error_shape(response, 400)
    assert not ScriptSchedule.objects.exists()


def test_a_site_of_another_partner_does_not_exist(world, org_admin, make_script):
    script = make_script(world.org_a)

    response = client_for(org_admin).post(
        "/api/v1/script-schedules",
        {"scriptId": str(script.pk), "siteId": str(world.site_b1.pk), "cron": "0 3 * * *"},
        format="json",
    )

    assert list(assert_error_shape(response, 400)) == ["siteId"]
    assert not ScriptSchedule.objects.exists()


def test_disabling_a_schedule_clears_its_next_slot_and_delete_removes_it(world, org_admin, make_script):
    script = make_script(world.org_a)
    client = client_for(org_admin)
    created = client.post(
        "/api/v1/script-schedules", {"scriptId": str(script.pk), "cron": "0 3 * * *"}, format="json"
    ).json()

    disabled = client.patch(f"/api/v1/script-schedules/{created['id']}", {"enabled": False}, format="json")
    deleted = client.delete(f"/api/v1/script-schedules/{created['id']}")

    assert disabled.status_code == 200, disabled.content
    assert disabled.json()["enabled"] is False and disabled.json()["nextRunAt"] is None
    assert deleted.status_code == 204, deleted.content
    assert not ScriptSchedule.objects.filter(pk=created["id"]).exists()
    assert AuditLog.objects.filter(action="script_schedule.update", target_id=created["id"]).exists()
    assert AuditLog.objects.filter(action="script_schedule.delete", target_id=created["id"]).exists()


def test_the_organization_of_a_schedule_cannot_change(world, partner_admin, make_script):
    script = make_script(world.partner_a)
    client = client_for(partner_admin)
    created = client.post(
        "/api/v1/script-schedules",
        {"scriptId": str(script.pk), "orgId": str(world.org_a.pk), "cron": "0 3 * * *"},
        format="json",
    ).json()

    response = client.patch(f"/api/v1/script-schedules/{created['id']}", {"orgId": str(world.org_a2.pk)}, format="json")

    assert "orgId" in assert_error_shape(response, 400)
    assert ScriptSchedule.objects.get(pk=created["id"]).org_id == world.org_a.pk


def test_a_technician_without_scripts_write_neither_sees_nor_writes_schedules(world, partner_technician, make_script):
    script = make_script(world.org_a)
    schedule = ScriptSchedule.objects.create(org=world.org_a, script=script, cron="0 3 * * *")
    client = client_for(partner_technician)

    listed = client.get("/api/v1/script-schedules")
    created = client.post("/api/v1/script-schedules", {"scriptId": str(script.pk), "cron": "0 3 * * *"}, format="json")
    patched = client.patch(f"/api/v1/script-schedules/{schedule.pk}", {"name": "x"}, format="json")

    assert listed.status_code == 200 and listed.json()["results"] == []
    assert_error_shape(created, 403, "permission_denied")
    assert_error_shape(patched, 404, "not_found")
    assert ScriptSchedule.objects.count() == 1


def test_the_list_filters_by_script_and_enabled(world, org_admin, make_script):
    first, second = make_script(world.org_a), make_script(world.org_a)
    a = ScriptSchedule.objects.create(org=world.org_a, script=first, cron="0 3 * * *", name="a")
    b = ScriptSchedule.objects.create(org=world.org_a, script=second, cron="0 3 * * *", name="b", enabled=False)
    client = client_for(org_admin)

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/v1/script-schedules{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids("") == [str(a.pk), str(b.pk)]
    assert ids(f"?scriptId={second.pk}") == [str(b.pk)]
    assert ids("?enabled=true") == [str(a.pk)]


def test_an_outsider_gets_404_for_a_schedule(world, outsider, make_script):
    schedule = ScriptSchedule.objects.create(org=world.org_a, script=make_script(world.org_a), cron="0 3 * * *")

    response = client_for(outsider).get(f"/api/v1/script-schedules/{schedule.pk}")

    assert_error_shape(response, 404, "not_found")
