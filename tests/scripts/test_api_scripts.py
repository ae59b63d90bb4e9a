"""Scripts and their versions over the technician API: CRUD through scripts.services.library (content byte for byte,
versions on what runs, path-addressed parameter errors, archive instead of delete), partner scope for the partner's
library, the list's filters, and the versions routes."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog
from scripts.models import Script, ScriptSchedule, ScriptVersion

pytestmark = pytest.mark.django_db

CONTENT = '#!/bin/sh\r\necho "$RMM_PARAM_NAME"  \r\n\r\n'


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


def new_script(org, **fields) -> dict:
    return {
        "orgId": str(org.pk),
        "name": "Disk cleanup",
        "language": "sh",
        "content": CONTENT,
        "parameters": [{"name": "name", "type": "string", "required": False, "default": "world"}],
        **fields,
    }


def test_an_org_admin_creates_a_script_kept_byte_for_byte_with_version_1_and_an_audit_row(world, org_admin):
    response = client_for(org_admin).post("/api/v1/scripts", new_script(world.org_a), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["content"] == CONTENT and body["version"] == 1 and body["archivedAt"] is None
    assert sorted(body["osTypes"]) == ["linux", "macos"]  # derived from the language
    assert body["createdById"] == str(org_admin.pk) and body["partnerId"] is None
    script = Script.objects.get(pk=body["id"])
    assert script.content == CONTENT
    assert ScriptVersion.objects.get(script=script).content == CONTENT
    assert AuditLog.objects.filter(action="script.create", target_id=str(script.pk), actor_user=org_admin).exists()


def test_a_bad_parameter_definition_gets_400_naming_its_path(world, org_admin):
    body = new_script(world.org_a, parameters=[{"name": "ok", "type": "string"}, {"name": "1bad", "type": "string"}])

    response = client_for(org_admin).post("/api/v1/scripts", body, format="json")

    fields = assert_error_shape(response, 400)
    assert list(fields) == ["parameters[1].name"]
    assert not Script.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"language": "cobol"},
        {"content": ""},
        {"content": "x" * (256 * 1024 + 1)},
        {"timeoutSeconds": 0},
        {"osTypes": ["amiga"]},
        {"successExitCodes": "zero"},
        {"parameters": "not a list"},
        {"orgId": "not-a-uuid"},
    ],
)
def test_a_bad_body_gets_400_in_the_error_shape_and_saves_nothing(world, org_admin, change):
    response = client_for(org_admin).post("/api/v1/scripts", new_script(world.org_a, **change), format="json")

    assert_error_shape(response, 400)
    assert not Script.objects.exists()


def test_a_script_of_an_organization_out_of_reach_does_not_exist(world, org_admin):
    response = client_for(org_admin).post("/api/v1/scripts", new_script(world.org_b), format="json")

    assert list(assert_error_shape(response, 400)) == ["orgId"]
    assert not Script.objects.exists()


def test_only_partner_scope_writes_the_partner_library(world, partner_admin, org_admin, make_script):
    body = {**new_script(world.org_a), "orgId": None, "partnerId": str(world.partner_a.pk)}

    by_org_admin = client_for(org_admin).post("/api/v1/scripts", body, format="json")
    by_partner_admin = client_for(partner_admin).post("/api/v1/scripts", body, format="json")

    assert list(assert_error_shape(by_org_admin, 400)) == ["partnerId"]  # an Org Admin does not see the partner
    assert by_partner_admin.status_code == 201, by_partner_admin.content
    assert Script.objects.get().partner_id == world.partner_a.pk


def test_editing_what_runs_makes_a_new_version_and_the_old_one_stays(world, org_admin, make_script):
    script = make_script(world.org_a, content="echo one\n")
    client = client_for(org_admin)

    renamed = client.patch(f"/api/v1/scripts/{script.pk}", {"name": "Renamed"}, format="json")
    edited = client.patch(f"/api/v1/scripts/{script.pk}", {"content": "echo two\n"}, format="json")

    assert renamed.status_code == 200, renamed.content
    assert renamed.json()["version"] == 1
    assert edited.status_code == 200, edited.content
    assert edited.json()["version"] == 2
    versions = client.get(f"/api/v1/scripts/{script.pk}/versions")
    assert versions.status_code == 200
    assert [row["version"] for row in versions.json()["results"]] == [2, 1]
    assert "content" not in versions.json()["results"][0]
    first = client.get(f"/api/v1/scripts/{script.pk}/versions/1")
    assert first.status_code == 200
    assert first.json()["content"] == "echo one\n" and first.json()["version"] == 1
    assert AuditLog.objects.filter(action="script.update", target_id=str(script.pk)).count() == 2


def test_a_version_that_does_not_exist_gets_404(world, org_admin, make_script):
    script = make_script(world.org_a)

    response = client_for(org_admin).get(f"/api/v1/scripts/{script.pk}/versions/2")

    assert_error_shape(response, 404, "not_found")


def test_the_owner_of_a_script_cannot_change(world, partner_admin, make_script):
    script = make_script(world.org_a)

    response = client_for(partner_admin).patch(
        f"/api/v1/scripts/{script.pk}", {"orgId": str(world.org_a2.pk)}, format="json"
    )

    assert "orgId" in assert_error_shape(response, 400)
    assert Script.objects.get(pk=script.pk).org_id == world.org_a.pk


def test_delete_archives_the_script_disables_its_schedules_and_keeps_it(world, org_admin, make_script):
    script = make_script(world.org_a)
    schedule = ScriptSchedule.objects.create(org=world.org_a, script=script, cron="0 3 * * *", enabled=True)
    client = client_for(org_admin)

    response = client.delete(f"/api/v1/scripts/{script.pk}")

    assert response.status_code == 204, response.content
    script.refresh_from_db()
    assert script.archived_at is not None
    assert ScriptSchedule.objects.get(pk=schedule.pk).enabled is False
    assert AuditLog.objects.filter(action="script.archive", target_id=str(script.pk)).count() == 1
    edit = client.patch(f"/api/v1/scripts/{script.pk}", {"name": "Again"}, format="json")
    assert_error_shape(edit, 409, "script_archived")
    assert client.delete(f"/api/v1/scripts/{script.pk}").status_code == 204  # idempotent
    assert AuditLog.objects.filter(action="script.archive", target_id=str(script.pk)).count() == 1


def test_the_list_hides_archived_scripts_unless_asked_and_filters(world, org_admin, make_script):
    cleanup = make_script(world.org_a, name="Disk cleanup", category="Maintenance", language="powershell")
    restart = make_script(world.org_a, name="Restart service", category="Services", language="bash")
    old = make_script(world.org_a, name="Old cleanup", category="Maintenance")
    Script.objects.filter(pk=old.pk).update(archived_at="2026-01-01T00:00:00Z")
    client = client_for(org_admin)

    def names(query: str = "") -> list[str]:
        response = client.get(f"/api/v1/scripts{query}")
        assert response.status_code == 200, response.content
        return [row["name"] for row in response.json()["results"]]

    assert names() == ["Disk cleanup", "Restart service"]
    assert names("?archived=true") == ["Old cleanup"]
    assert names("?category=maintenance") == ["Disk cleanup"]
    assert names("?language=bash") == ["Restart service"]
    assert names("?osType=windows") == ["Disk cleanup"]
    assert names("?osType=linux") == ["Restart service"]
    assert names("?search=CLEAN") == ["Disk cleanup"]
    assert names("?search=clean&archived=false") == ["Disk cleanup"]
    assert "content" not in client.get("/api/v1/scripts").json()["results"][0]
    assert {cleanup.pk, restart.pk} == {row.pk for row in Script.objects.filter(archived_at__isnull=True)}


def test_the_list_walks_in_keyset_pages(world, org_admin, make_script):
    for n in range(5):
        make_script(world.org_a, name=f"Script {n:02}")
    client = client_for(org_admin)

    first = client.get("/api/v1/scripts?limit=2").json()
    second = client.get(f"/api/v1/scripts?limit=2&cursor={first['next']}").json()
    third = client.get(f"/api/v1/scripts?limit=2&cursor={second['next']}").json()

    assert [row["name"] for page in (first, second, third) for row in page["results"]] == [
        f"Script {n:02}" for n in range(5)
    ]
    assert third["next"] is None


def test_a_viewer_reads_but_cannot_write_a_script(world, viewer, make_script):
    script = make_script(world.org_a)
    client = client_for(viewer)

    assert client.get(f"/api/v1/scripts/{script.pk}").status_code == 200
    assert_error_shape(client.patch(f"/api/v1/scripts/{script.pk}", {"name": "x"}, format="json"), 403,
                       "permission_denied")  # fmt: skip
    assert_error_shape(client.delete(f"/api/v1/scripts/{script.pk}"), 403, "permission_denied")
    assert Script.objects.get(pk=script.pk).name == script.name and script.archived_at is None


def test_an_outsider_gets_404_for_a_script_of_another_partner(world, outsider, make_script):
    script = make_script(world.org_a)

    response = client_for(outsider).get(f"/api/v1/scripts/{script.pk}")

    assert_error_shape(response, 404, "not_found")
