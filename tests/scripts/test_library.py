"""The script library service: saving, versions, archiving (scripts.services.library)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.models import AuditLog
from rmm.domain_errors import Conflict, Invalid
from scripts.models import Script, ScriptSchedule, ScriptVersion
from scripts.services.library import archive_script, save_script


def test_a_new_script_is_version_1_with_its_version_row_and_an_audit_row(world, org_admin, make_script):
    script = make_script(world.org_a, actor=org_admin, content="echo one\n")

    assert script.version == 1
    assert list(ScriptVersion.objects.filter(script=script).values_list("version", "content")) == [(1, "echo one\n")]
    row = AuditLog.objects.get(action="script.create", target_id=str(script.pk))
    assert row.actor_user == org_admin
    assert row.org_id == world.org_a.pk


def test_a_partner_library_script_is_saved_too(world, partner_admin, make_script):
    script = make_script(world.partner_a, actor=partner_admin)
    assert (script.partner_id, script.org_id, script.version) == (world.partner_a.pk, None, 1)
    assert AuditLog.objects.filter(action="script.create", target_id=str(script.pk), org__isnull=True).exists()


@pytest.mark.parametrize(
    ("language", "os_types"),
    [
        ("powershell", ["windows"]),
        ("cmd", ["windows"]),
        ("bash", ["macos", "linux"]),
        ("sh", ["macos", "linux"]),
        ("python", ["windows", "macos", "linux"]),
    ],
)
def test_os_types_default_from_the_language(world, make_script, language, os_types):
    assert make_script(world.org_a, language=language).os_types == os_types


def test_os_types_given_are_kept(world, make_script):
    assert make_script(world.org_a, language="python", os_types=["linux"]).os_types == ["linux"]


def test_content_is_stored_byte_for_byte(world, make_script):
    content = "  \r\necho hi   \r\n\t\n\n"
    script = make_script(world.org_a, content=content)
    script.refresh_from_db()
    assert script.content == content
    assert ScriptVersion.objects.get(script=script).content == content


def test_content_up_to_256_kib_is_accepted_and_beyond_refused(world, make_script):
    exactly = "#" * (256 * 1024 - 1) + "\n"
    assert make_script(world.org_a, content=exactly).content == exactly
    # 2-byte characters: 131,073 of them are 256 KiB + 2 bytes.
    with pytest.raises(Invalid) as refused:
        make_script(world.org_a, content="é" * (128 * 1024 + 1))
    assert set(refused.value.fields) == {"content"}
    assert Script.objects.count() == 1


@pytest.mark.parametrize("content", ["", "   \n\t", "echo\x00"])
def test_blank_content_or_nul_is_refused(world, make_script, content):
    with pytest.raises(Invalid) as refused:
        make_script(world.org_a, content=content)
    assert set(refused.value.fields) == {"content"}
    assert not Script.objects.exists() and not AuditLog.objects.filter(action="script.create").exists()


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"language": "ruby"}, {"language", "osTypes"}),  # no OS types to default to either
        ({"timeout_seconds": 0}, {"timeoutSeconds"}),
        ({"timeout_seconds": 86401}, {"timeoutSeconds"}),
        ({"success_exit_codes": []}, {"successExitCodes"}),
        ({"success_exit_codes": [2**31]}, {"successExitCodes"}),
        ({"os_types": ["beos"]}, {"osTypes"}),
        ({"language": "cmd", "os_types": ["windows", "linux"]}, {"osTypes"}),
        ({"name": "  "}, {"name"}),
        ({"parameters": [{"name": "ok", "type": "int"}, {"name": "OK", "type": "int"}]}, {"parameters[1].name"}),
    ],
)
def test_bad_fields_are_refused_with_the_apis_field_names(world, make_script, fields, errors):
    with pytest.raises(Invalid) as refused:
        make_script(world.org_a, **fields)
    assert set(refused.value.fields) == errors
    assert not Script.objects.exists()


def test_a_name_is_unique_in_its_library_only(world, make_script):
    make_script(world.org_a, name="Cleanup")
    with pytest.raises(Invalid) as refused:
        make_script(world.org_a, name="Cleanup")
    assert set(refused.value.fields) == {"name"}
    make_script(world.org_a2, name="Cleanup")
    make_script(world.partner_a, name="Cleanup")
    with pytest.raises(Invalid):
        make_script(world.partner_a, name="Cleanup")


def test_a_script_needs_exactly_one_owner(world, org_admin):
    with pytest.raises(Invalid) as refused:
        save_script(script=Script(name="x", language="bash", content="ls"), actor=org_admin)
    assert "orgId" in refused.value.fields
    with pytest.raises(Invalid):
        save_script(
            script=Script(org=world.org_a, partner=world.partner_a, name="x", language="bash", content="ls"),
            actor=org_admin,
        )


def test_success_exit_codes_are_kept_sorted_without_duplicates(world, make_script):
    assert make_script(world.org_a, success_exit_codes=[3, 0, 3]).success_exit_codes == [0, 3]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", "echo two\n"),
        ("content", 'echo "hello"\r\n'),  # only the line ending changed: still another script
        ("language", "sh"),
        ("parameters", [{"name": "days", "type": "int", "required": True}]),
        ("timeout_seconds", 60),
        ("success_exit_codes", [0, 3010]),
    ],
)
def test_a_change_to_what_runs_is_a_new_version(world, org_admin, make_script, field, value):
    script = make_script(world.org_a, actor=org_admin)
    setattr(script, field, value)
    save_script(script=script, actor=org_admin)

    script.refresh_from_db()
    assert script.version == 2
    versions = {row.version: row for row in ScriptVersion.objects.filter(script=script)}
    assert set(versions) == {1, 2}
    assert versions[1].content == 'echo "hello"\n' and versions[1].language == "bash"
    assert getattr(versions[2], field) == getattr(script, field)
    row = AuditLog.objects.get(action="script.update", target_id=str(script.pk))
    assert row.details["version"] == 2 and row.details["changes"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "Renamed"), ("description", "What it does"), ("category", "Maintenance"), ("os_types", ["linux"])],
)
def test_a_change_to_its_description_keeps_the_version(world, org_admin, make_script, field, value):
    script = make_script(world.org_a, actor=org_admin)
    setattr(script, field, value)
    save_script(script=script, actor=org_admin)

    script.refresh_from_db()
    assert (script.version, getattr(script, field)) == (1, value)
    assert ScriptVersion.objects.filter(script=script).count() == 1
    row = AuditLog.objects.get(action="script.update", target_id=str(script.pk))
    assert row.details["version"] == 1


def test_saving_the_same_parameters_in_another_spelling_keeps_the_version(world, make_script):
    script = make_script(world.org_a, parameters=[{"name": "days", "type": "int", "required": False}])
    script.parameters = [{"type": "int", "name": "days"}]
    save_script(script=script, actor=None)
    assert script.version == 1


def test_an_update_is_audited_with_what_changed_without_the_content(world, org_admin, make_script):
    script = make_script(world.org_a, actor=org_admin)
    script.content = "echo secret-ish\n"
    script.name = "New name"
    save_script(script=script, actor=org_admin, ip="10.0.0.9")
    row = AuditLog.objects.get(action="script.update")
    assert row.actor_user == org_admin and row.ip == "10.0.0.9"
    assert set(row.details["changes"]) == {"name", "contentBytes", "contentSha256"}
    assert "secret-ish" not in str(row.details)


def test_an_archived_script_refuses_edits(world, org_admin, make_script):
    script = make_script(world.org_a, actor=org_admin)
    archive_script(script=script, actor=org_admin)
    script.content = "echo changed\n"
    with pytest.raises(Conflict) as refused:
        save_script(script=script, actor=org_admin)
    assert refused.value.code == "script_archived"
    script.refresh_from_db()
    assert (script.version, script.content) == (1, 'echo "hello"\n')


def test_archiving_disables_schedules_keeps_history_and_is_idempotent(world, org_admin, make_script):
    script = make_script(world.org_a, actor=org_admin)
    schedule = ScriptSchedule.objects.create(org=world.org_a, script=script, cron="0 3 * * *", timezone="UTC")

    archive_script(script=script, actor=org_admin)
    first = Script.objects.get(pk=script.pk).archived_at
    archive_script(script=Script.objects.get(pk=script.pk), actor=org_admin)

    assert first is not None and Script.objects.get(pk=script.pk).archived_at == first
    schedule.refresh_from_db()
    assert schedule.enabled is False
    assert ScriptVersion.objects.filter(script=script).count() == 1
    rows = AuditLog.objects.filter(action="script.archive", target_id=str(script.pk))
    assert rows.count() == 1 and rows.get().details["schedulesDisabled"] == 1


def test_the_model_clean_lists_parameter_problems_under_the_parameters_field(world):
    script = Script(org=world.org_a, name="x", language="bash", content="ls", os_types=["linux"])
    script.parameters = [{"name": "9", "type": "int"}]
    with pytest.raises(ValidationError) as refused:
        script.full_clean()
    assert set(refused.value.message_dict) == {"parameters"}
    assert refused.value.message_dict["parameters"][0].startswith("parameters[0].name: ")
