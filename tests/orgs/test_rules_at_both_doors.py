"""The tenancy rules hold whichever door a change comes through: the same request sent through the technician API
and through the admin (the test client posting the admin's forms) meets the same refusal and saves nothing, and an
allowed change writes an audit row with the same action name (accounts.models.AuditAction)."""

from __future__ import annotations

import time

import pytest

from accounts.models import AuditLog, User
from devices.models import DeviceGroup
from orgs.models import EnrollmentKey, Organization, Partner, Site
from tests import factories
from tests.concurrency import run_concurrently
from tests.doors import actions_since, admin_as, admin_url, api_as

pytestmark = pytest.mark.django_db

NEW_ORG = {"name": "Initech", "slug": "initech", "type": "customer", "status": "active"}


def api_create_org(user, partner: Partner):
    return api_as(user).post("/api/v1/orgs", {**NEW_ORG, "partnerId": str(partner.pk)}, format="json")


def admin_create_org(user, partner: Partner):
    return admin_as(user).post(admin_url(Organization, "add"), {**NEW_ORG, "partner": partner.pk, "settings": "{}"})


# --- the partner's organization limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["partner_admin", "superuser"])
def test_the_organization_limit_refuses_the_api_with_403_and_nothing_saved(request, world, persona):
    Partner.objects.filter(pk=world.partner_a.pk).update(max_organizations=2)

    response = api_create_org(request.getfixturevalue(persona), world.partner_a)

    assert response.status_code == 403
    assert response.json()["error"] == "organization_limit_reached"
    assert "maximum of 2 organizations" in response.json()["message"]
    assert not Organization.objects.filter(slug="initech").exists()
    assert not AuditLog.objects.filter(action="organization.create").exists()


@pytest.mark.parametrize("persona", ["partner_admin", "superuser"])
def test_the_organization_limit_refuses_the_admin_form_and_nothing_saved(request, world, persona):
    """Operators too: the limit is the partner's; an operator raises it first (an audited partner.update)."""
    Partner.objects.filter(pk=world.partner_a.pk).update(max_organizations=2)

    response = admin_create_org(request.getfixturevalue(persona), world.partner_a)

    assert response.status_code == 200
    assert "maximum of 2 organizations" in str(response.context["adminform"].form.non_field_errors())
    assert not Organization.objects.filter(slug="initech").exists()
    assert not AuditLog.objects.filter(action="organization.create").exists()


def test_below_the_limit_both_doors_create_and_write_organization_create(world, partner_admin):
    Partner.objects.filter(pk=world.partner_a.pk).update(max_organizations=4)
    mark = AuditLog.objects.count()

    api = api_create_org(partner_admin, world.partner_a)
    admin = admin_as(partner_admin).post(
        admin_url(Organization, "add"),
        {**NEW_ORG, "name": "Umbrella", "slug": "umbrella", "partner": world.partner_a.pk, "settings": "{}"},
    )

    assert (api.status_code, admin.status_code) == (201, 302)
    assert Organization.objects.filter(partner=world.partner_a).count() == 4
    assert actions_since(mark) == ["organization.create", "organization.create"]
    created = Organization.objects.get(slug="umbrella")
    entry = AuditLog.objects.get(action="organization.create", target_id=str(created.pk))
    assert (entry.actor_user, entry.org_id, entry.details["via"]) == (partner_admin, created.pk, "admin")


def test_a_creation_that_loses_the_race_for_the_last_place_is_a_message_in_the_admin(world, superuser, monkeypatch):
    """The form's early check passes, then a concurrent creation takes the last place: create_organization's check
    under the partner's lock refuses, and the admin says so instead of failing with a 500."""
    from orgs import admin as orgs_admin

    Partner.objects.filter(pk=world.partner_a.pk).update(max_organizations=2)
    monkeypatch.setattr(orgs_admin, "check_organization_limit", lambda partner: None)

    response = admin_create_org(superuser, world.partner_a)

    assert response.status_code == 302
    assert not Organization.objects.filter(slug="initech").exists()
    shown = [str(message) for message in response.wsgi_request._messages]
    assert any("maximum of 2 organizations" in message for message in shown)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("racers", [2, 8])
def test_concurrent_creations_at_one_below_the_limit_make_exactly_one_organization(monkeypatch, racers):
    from orgs import services

    partner = factories.partner(max_organizations=3)
    for _ in range(2):
        factories.organization(partner)
    operator = User.objects.create_superuser(email="operator@race.example", password="x" * 20)
    counted = services.check_organization_limit

    def count_slowly(partner_: Partner) -> None:
        counted(partner_)
        time.sleep(0.3)  # widens the gap between counting and inserting, where an unlocked check lets both in

    monkeypatch.setattr(services, "check_organization_limit", count_slowly)

    def create(n: int) -> int:
        body = {"name": f"Racer {n}", "slug": f"racer-{n}", "partnerId": str(partner.pk)}
        return api_as(operator).post("/api/v1/orgs", body, format="json").status_code

    statuses = run_concurrently(racers, create)

    assert sorted(statuses) == [201] + [403] * (racers - 1)
    assert Organization.objects.filter(partner=partner).count() == 3
    assert AuditLog.objects.filter(action="organization.create").count() == 1


# --- deleting an organization -----------------------------------------------------------------------------------


def test_an_organization_with_sites_is_refused_at_both_doors(world, superuser):
    api = api_as(superuser).delete(f"/api/v1/orgs/{world.org_a2.pk}")
    admin = admin_as(superuser).post(admin_url(Organization, "delete", world.org_a2.pk), {"post": "yes"})

    assert api.status_code == 409 and api.json()["error"] == "organization_not_empty"
    assert admin.status_code == 200  # Django's page: the sites are protected objects
    assert Organization.objects.filter(pk=world.org_a2.pk).exists()
    assert not AuditLog.objects.filter(action="organization.delete").exists()


def test_deleting_an_empty_organization_writes_organization_delete_at_both_doors(world, superuser):
    first, second = factories.organization(world.partner_a), factories.organization(world.partner_a)
    mark = AuditLog.objects.count()

    api = api_as(superuser).delete(f"/api/v1/orgs/{first.pk}")
    admin = admin_as(superuser).post(admin_url(Organization, "delete", second.pk), {"post": "yes"})

    assert (api.status_code, admin.status_code) == (204, 302)
    assert not Organization.objects.filter(pk__in=[first.pk, second.pk]).exists()
    assert actions_since(mark) == ["organization.delete", "organization.delete"]
    assert AuditLog.objects.get(target_id=str(second.pk)).org_id == second.pk


def test_a_site_with_devices_is_refused_at_both_doors(world, partner_admin):
    api = api_as(partner_admin).delete(f"/api/v1/sites/{world.site_a1.pk}")
    admin = admin_as(partner_admin).post(admin_url(Site, "delete", world.site_a1.pk), {"post": "yes"})

    assert api.status_code == 409 and api.json()["error"] == "site_not_empty"
    assert admin.status_code == 200  # Django's page: the devices are protected objects
    assert Site.objects.filter(pk=world.site_a1.pk).exists()
    assert not AuditLog.objects.filter(action="site.delete").exists()


def test_a_site_that_gains_a_device_while_its_deletion_is_confirmed_is_kept_with_a_message(world, partner_admin):
    """The admin's confirmation page found no devices; one enrolled before the user confirmed: delete_site refuses
    and the admin says so."""
    from django.db.models.deletion import Collector

    site = factories.site(world.org_a)
    factories.device(site)

    def no_protected_objects(self, *args, **kwargs):  # the confirmation page as it looked before the enrollment
        return None

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Collector, "collect", no_protected_objects)
        response = admin_as(partner_admin).post(admin_url(Site, "delete", site.pk), {"post": "yes"})

    assert response.status_code == 302
    assert Site.objects.filter(pk=site.pk).exists()
    shown = [str(message) for message in response.wsgi_request._messages]
    assert "Move or decommission the site's devices first." in shown


# --- one action name per change, whichever door -----------------------------------------------------------------


def test_site_create_update_delete_write_the_same_actions_through_both_doors(world, partner_admin):
    api, admin = api_as(partner_admin), admin_as(partner_admin)
    empty_json = {"address": "{}", "contact": "{}", "settings": "{}"}

    mark = AuditLog.objects.count()
    created = api.post("/api/v1/sites", {"orgId": str(world.org_a.pk), "name": "Annex"}, format="json")
    site = Site.objects.get(pk=created.json()["id"])
    updated = api.patch(f"/api/v1/sites/{site.pk}", {"name": "Annex 2"}, format="json")
    deleted = api.delete(f"/api/v1/sites/{site.pk}")
    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    added = admin.post(
        admin_url(Site, "add"), {"org": world.org_a.pk, "name": "Annex", "timezone": "UTC", **empty_json}
    )
    site = Site.objects.get(org=world.org_a, name="Annex")
    changed = admin.post(admin_url(Site, "change", site.pk), {"name": "Annex 2", "timezone": "UTC", **empty_json})
    removed = admin.post(admin_url(Site, "delete", site.pk), {"post": "yes"})
    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302)
    through_admin = actions_since(mark)

    assert through_api == through_admin == ["site.create", "site.update", "site.delete"]


def test_organization_update_writes_the_same_action_through_both_doors(world, partner_admin):
    mark = AuditLog.objects.count()

    api = api_as(partner_admin).patch(f"/api/v1/orgs/{world.org_a.pk}", {"name": "Org A one"}, format="json")
    admin = admin_as(partner_admin).post(
        admin_url(Organization, "change", world.org_a.pk),
        {"name": "Org A two", "slug": "org-a", "type": "customer", "status": "active", "settings": "{}"},
    )

    assert (api.status_code, admin.status_code) == (200, 302)
    assert actions_since(mark) == ["organization.update", "organization.update"]
    assert set(AuditLog.objects.filter(action="organization.update").values_list("org_id", flat=True)) == {
        world.org_a.pk
    }


def test_an_enrollment_key_made_and_revoked_through_either_door_writes_the_same_actions(world, partner_admin):
    api, admin = api_as(partner_admin), admin_as(partner_admin)

    mark = AuditLog.objects.count()
    created = api.post("/api/v1/enrollment-keys", {"siteId": str(world.site_a1.pk), "name": "By API"}, format="json")
    revoked = api.post(f"/api/v1/enrollment-keys/{created.json()['id']}/revoke")
    assert (created.status_code, revoked.status_code) == (201, 200)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    added = admin.post(admin_url(EnrollmentKey, "add"), {"site": world.site_a1.pk, "name": "By admin"})
    key = EnrollmentKey.objects.get(name="By admin")
    action = admin.post(
        admin_url(EnrollmentKey, "changelist"), {"action": "revoke_selected", "_selected_action": [str(key.pk)]}
    )
    assert (added.status_code, action.status_code) == (200, 302)  # 200: the page that shows the raw key once
    through_admin = actions_since(mark)

    assert through_api == through_admin == ["enrollment_key.create", "enrollment_key.revoke"]
    entry = AuditLog.objects.get(action="enrollment_key.create", target_id=str(key.pk))
    assert (entry.actor_user, entry.org_id, entry.details["via"]) == (partner_admin, world.org_a.pk, "admin")
    key.refresh_from_db()
    assert (key.created_by, key.org_id, key.revoked_at is not None) == (partner_admin, world.org_a.pk, True)


def test_a_device_group_created_changed_and_deleted_through_either_door_writes_the_same_actions(world, partner_admin):
    api, admin = api_as(partner_admin), admin_as(partner_admin)
    formset = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}

    mark = AuditLog.objects.count()
    created = api.post(
        "/api/v1/groups", {"orgId": str(world.org_a.pk), "siteId": str(world.site_a1.pk), "name": "Desk"}, format="json"
    )
    group_id = created.json()["id"]
    updated = api.patch(f"/api/v1/groups/{group_id}", {"name": "Desk 2"}, format="json")
    deleted = api.delete(f"/api/v1/groups/{group_id}")
    assert (created.status_code, updated.status_code, deleted.status_code) == (201, 200, 204)
    through_api = actions_since(mark)

    mark = AuditLog.objects.count()
    fields = {"org": world.org_a.pk, "site": world.site_a1.pk, "type": "static", "filter_rules": "null", **formset}
    added = admin.post(admin_url(DeviceGroup, "add"), {**fields, "name": "Desk"})
    group = DeviceGroup.objects.get(org=world.org_a, name="Desk")
    changed = admin.post(admin_url(DeviceGroup, "change", group.pk), {**fields, "name": "Desk 2"})
    removed = admin.post(admin_url(DeviceGroup, "delete", group.pk), {"post": "yes"})
    assert (added.status_code, changed.status_code, removed.status_code) == (302, 302, 302), added.content[:0]
    through_admin = actions_since(mark)

    assert through_api == through_admin == ["device_group.create", "device_group.update", "device_group.delete"]


def test_the_audit_log_filter_finds_a_groups_rows_from_both_doors_under_one_name(world, partner_admin):
    """The issue's symptom: ?action=devicegroup.* found the API's rows and missed the admin's."""
    formset = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    api = api_as(partner_admin).post("/api/v1/groups", {"orgId": str(world.org_a.pk), "name": "By API"}, format="json")
    admin = admin_as(partner_admin).post(
        admin_url(DeviceGroup, "add"),
        {"org": world.org_a.pk, "type": "static", "filter_rules": "null", "name": "By admin", **formset},
    )
    assert (api.status_code, admin.status_code) == (201, 302)

    listed = api_as(partner_admin).get("/api/v1/audit-log", {"action": "device_group.*"})

    assert listed.status_code == 200
    by_admin = DeviceGroup.objects.get(name="By admin")
    assert {row["targetId"] for row in listed.json()["results"]} == {api.json()["id"], str(by_admin.pk)}
