"""Memberships keep to their tenant: the database refuses foreign organizations, sites and roles, and
`manage.py grant_access` gives technicians exactly the access asked for."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from accounts.models import OrganizationUser, PartnerUser, Role, User
from accounts.services import MembershipError, grant_organization_access, grant_partner_access
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenancy():
    partner = factories.partner(slug="msp-a")
    acme = factories.organization(partner, slug="acme")
    globex = factories.organization(partner, slug="globex")
    other_partner_org = factories.organization(factories.partner(slug="msp-b"), slug="initech")
    return {
        "partner": partner,
        "acme": acme,
        "globex": globex,
        "foreign_org": other_partner_org,
        "hq": factories.site(acme, name="HQ"),
        "branch": factories.site(acme, name="Branch"),
        "foreign_site": factories.site(globex, name="Globex HQ"),
        "technician": Role.objects.create(name="Partner Technician", scope="partner", is_system=True),
        "org_user": Role.objects.create(name="Org User", scope="organization", is_system=True),
    }


@pytest.fixture
def user():
    return User.objects.create_user("tech@example.com", "pw-1234567890")


def test_the_database_refuses_a_selected_organization_of_another_partner(tenancy, user):
    membership = PartnerUser.objects.create(
        partner=tenancy["partner"], user=user, role=tenancy["technician"], org_access="selected"
    )
    with pytest.raises(IntegrityError, match="does not belong to the partner"), transaction.atomic():
        membership.selected_organizations.add(tenancy["foreign_org"])


def test_the_database_refuses_a_site_restriction_with_a_site_of_another_organization(tenancy, user):
    membership = OrganizationUser.objects.create(org=tenancy["acme"], user=user, role=tenancy["org_user"])
    with pytest.raises(IntegrityError, match="does not belong to the organization"), transaction.atomic():
        membership.sites.add(tenancy["foreign_site"])


def test_the_database_refuses_a_role_of_the_wrong_scope(tenancy, user):
    with pytest.raises(IntegrityError, match="needs a role of scope partner"), transaction.atomic():
        PartnerUser.objects.create(partner=tenancy["partner"], user=user, role=tenancy["org_user"])
    with pytest.raises(IntegrityError, match="needs a role of scope organization"), transaction.atomic():
        OrganizationUser.objects.create(org=tenancy["acme"], user=user, role=tenancy["technician"])


def test_the_database_refuses_a_custom_role_of_another_partner(tenancy, user):
    theirs = Role.objects.create(name="Their tech", scope="partner", partner=tenancy["foreign_org"].partner)
    with pytest.raises(IntegrityError, match="belongs to another partner"), transaction.atomic():
        PartnerUser.objects.create(partner=tenancy["partner"], user=user, role=theirs)


def test_the_service_explains_what_is_wrong_before_the_database_has_to(tenancy, user):
    with pytest.raises(MembershipError, match="initech"):
        grant_partner_access(
            partner=tenancy["partner"],
            user=user,
            role=tenancy["technician"],
            org_access="selected",
            organizations=[tenancy["foreign_org"]],
        )
    with pytest.raises(MembershipError, match=r"needs a role of scope .organization."):
        grant_organization_access(org=tenancy["acme"], user=user, role=tenancy["technician"])


def test_grant_access_creates_a_partner_technician_for_selected_organizations(tenancy, capsys):
    call_command(
        "grant_access",
        "new.tech@example.com",
        "--partner",
        "msp-a",
        "--role",
        "Partner Technician",
        "--orgs",
        "acme,globex",
        "--create-user",
        "--name",
        "New Tech",
    )
    user = User.objects.get(email="new.tech@example.com")
    assert user.is_staff and user.name == "New Tech"
    membership = PartnerUser.objects.get(user=user)
    assert membership.org_access == "selected"
    assert set(membership.selected_organizations.values_list("slug", flat=True)) == {"acme", "globex"}
    out = capsys.readouterr().out
    password = out.split("(shown once): ")[1].strip()
    assert user.check_password(password)


def test_grant_access_changes_an_existing_membership_instead_of_adding_one(tenancy, user):
    call_command("grant_access", user.email, "--partner", "msp-a", "--role", "Partner Technician", "--orgs", "acme")
    call_command("grant_access", user.email, "--partner", "msp-a", "--role", "Partner Technician", "--all-orgs")
    membership = PartnerUser.objects.get(user=user)
    assert membership.org_access == "all"
    assert not membership.selected_organizations.exists()


def test_grant_access_gives_an_org_user_one_site(tenancy, user):
    call_command(
        "grant_access", user.email, "--partner", "msp-a", "--org", "acme", "--role", "Org User", "--sites", "HQ"
    )
    membership = OrganizationUser.objects.get(user=user)
    assert list(membership.sites.values_list("name", flat=True)) == ["HQ"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orgs", "initech"], "has no organization"),
        (["--org", "acme", "--sites", "Nowhere"], "has no site"),
        (["--role", "Nope"], "No role named"),
    ],
)
def test_grant_access_refuses_what_is_outside_the_partner(tenancy, user, args, message):
    base = ["grant_access", user.email, "--partner", "msp-a", "--role", "Partner Technician"]
    if "--org" in args:
        base[-1] = "Org User"
    if "--role" in args:
        base = base[:-2]
    with pytest.raises(CommandError, match=message):
        call_command(*base, *args)
    assert not PartnerUser.objects.filter(user=user).exists()
