"""One vocabulary of audit actions (accounts.models.AuditAction): every door names a change the same way."""

from __future__ import annotations

import pytest

from accounts import audit
from accounts.models import AuditAction, AuditLog, OrganizationUser, PartnerUser, RolePermission
from devices.models import DeviceGroup
from orgs.models import EnrollmentKey, Organization

pytestmark = pytest.mark.django_db


def test_a_plain_string_is_refused_so_a_misspelt_action_fails_in_the_tests(world):
    with pytest.raises(TypeError, match="AuditAction"):
        audit.record(action="organisation.create", target=world.org_a)  # type: ignore[arg-type]
    assert not AuditLog.objects.filter(action="organisation.create").exists()


@pytest.mark.parametrize(
    ("model", "noun"),
    [
        (DeviceGroup, "device_group"),
        (EnrollmentKey, "enrollment_key"),
        (PartnerUser, "partner_user"),
        (OrganizationUser, "organization_user"),
        (RolePermission, "role_permission"),
        (Organization, "organization"),
    ],
)
def test_the_noun_of_a_model_is_its_class_name_in_snake_case(model, noun):
    assert audit.noun_of(model) == noun
    assert audit.action_for(model, "create") == AuditAction(f"{noun}.create")


def test_an_action_missing_from_the_vocabulary_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"'organization\.explode' is not an audit action"):
        audit.action_for(Organization, "explode")


def test_every_action_is_a_noun_and_a_verb_and_the_list_is_sorted_by_noun():
    nouns = [action.value.split(".")[0] for action in AuditAction]
    assert all(action.value.count(".") == 1 for action in AuditAction)
    assert nouns == sorted(nouns)


def test_an_organizations_own_rows_carry_its_id_whoever_writes_them(world):
    entry = audit.record(action=AuditAction.ORGANIZATION_UPDATE, target=world.org_a)
    assert entry.org_id == world.org_a.pk
