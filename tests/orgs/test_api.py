"""Organizations and sites over the technician API: lists hold exactly what is in reach, refused writes
leave nothing behind, and nothing moves across tenants."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditLog
from orgs.models import EnrollmentKey, Organization, Site

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def names(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["name"] for row in response.json()}


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("superuser", {"Org A", "Org A2", "Org B"}),
        ("partner_admin", {"Org A", "Org A2"}),
        ("partner_technician", {"Org A", "Org A2"}),
        ("org_admin", {"Org A"}),
        ("org_user", {"Org A"}),
        ("outsider", {"Org B"}),
    ],
)
def test_it_lists_only_organizations_in_reach(request, persona, expected):
    assert names(client_for(request.getfixturevalue(persona)).get("/api/v1/orgs")) == expected


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("partner_admin", {"A1", "A2", "A2 main"}),
        ("org_admin", {"A1", "A2"}),
        ("org_user", {"A1"}),
        ("outsider", {"B1"}),
    ],
)
def test_it_lists_only_sites_in_reach(request, persona, expected):
    assert names(client_for(request.getfixturevalue(persona)).get("/api/v1/sites")) == expected


def test_filters_apply_inside_the_reach_never_around_it(world, outsider):
    response = client_for(outsider).get("/api/v1/sites", {"orgId": str(world.org_a.pk)})
    assert names(response) == set()


def test_a_refused_create_saves_nothing(world, org_user):
    before = Site.objects.count()
    response = client_for(org_user).post(
        "/api/v1/sites", {"orgId": str(world.org_a.pk), "name": "Annex"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert Site.objects.count() == before
    assert not AuditLog.objects.filter(action="site.create").exists()


def test_a_site_cannot_move_to_another_organization(world, partner_admin):
    response = client_for(partner_admin).patch(
        f"/api/v1/sites/{world.site_a1.pk}", {"orgId": str(world.org_a2.pk)}, format="json"
    )
    assert response.status_code == 400
    assert "orgId" in response.json()["fields"]
    world.site_a1.refresh_from_db()
    assert world.site_a1.org_id == world.org_a.pk


def test_a_reference_to_another_tenants_organization_reads_as_nonexistent(world, outsider):
    response = client_for(outsider).post("/api/v1/sites", {"orgId": str(world.org_a.pk), "name": "X"}, format="json")
    assert response.status_code == 400
    assert "does not exist" in response.json()["fields"]["orgId"][0]
    assert not Site.objects.filter(name="X").exists()


def test_a_duplicate_site_name_gets_a_field_error(world, partner_admin):
    response = client_for(partner_admin).post(
        "/api/v1/sites", {"orgId": str(world.org_a.pk), "name": "A1"}, format="json"
    )
    assert response.status_code == 400
    assert "name" in response.json()["fields"]
    assert Site.objects.filter(org=world.org_a, name="A1").count() == 1


def test_a_new_organization_is_in_its_creators_reach_and_audited(world, partner_admin):
    client = client_for(partner_admin)
    created = client.post("/api/v1/orgs", {"name": "Initrode", "slug": "initrode"}, format="json")
    assert created.status_code == 201
    assert created.json()["partnerId"] == str(world.partner_a.pk)  # the creator's only partner
    assert "Initrode" in names(client.get("/api/v1/orgs"))
    entry = AuditLog.objects.get(action="organization.create")
    assert entry.actor_user == partner_admin and entry.target_id == created.json()["id"]


def test_the_partners_organization_limit_is_enforced(world, partner_admin):
    world.partner_a.max_organizations = 2
    world.partner_a.save()
    response = client_for(partner_admin).post("/api/v1/orgs", {"name": "Third", "slug": "third"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "organization_limit_reached"
    assert not Organization.objects.filter(slug="third").exists()


def test_an_organization_with_sites_cannot_be_deleted(world, partner_admin):
    response = client_for(partner_admin).delete(f"/api/v1/orgs/{world.org_a2.pk}")
    assert response.status_code == 409
    assert response.json()["error"] == "organization_not_empty"
    assert Organization.objects.filter(pk=world.org_a2.pk).exists()
    assert list(Site.objects.filter(org=world.org_a2)) == [world.site_a2_main]
    assert not AuditLog.objects.filter(action="organization.delete").exists()


def test_lists_run_a_constant_number_of_queries(world, partner_admin, django_assert_max_num_queries):
    client = client_for(partner_admin)
    client.get("/api/v1/sites")  # warm: the reach is computed per request, so count a whole request
    for n in range(30):
        Site.objects.create(org=world.org_a, name=f"Extra {n}")
    with django_assert_max_num_queries(8):
        assert len(client.get("/api/v1/sites").json()) == 33


def test_an_enrollment_key_is_shown_once_and_only_its_hmac_is_stored(world, org_admin):
    from devices.services.credentials import hash_enrollment_key

    client = client_for(org_admin)
    created = client.post(
        "/api/v1/enrollment-keys",
        {"siteId": str(world.site_a1.pk), "name": "Rollout", "maxUsage": 5, "expiresInHours": 24},
        format="json",
    )
    assert created.status_code == 201, created.content
    raw = created.json()["key"]
    key = EnrollmentKey.objects.get(pk=created.json()["id"])
    assert key.key_hash == hash_enrollment_key(raw) and raw not in key.key_hash
    assert (key.org_id, key.max_usage, key.created_by) == (world.org_a.pk, 5, org_admin)
    listed = client.get("/api/v1/enrollment-keys")
    assert raw not in listed.content.decode() and key.key_hash not in listed.content.decode()
    assert client.get(f"/api/v1/enrollment-keys/{key.pk}").json()["keyPrefix"] == raw[:8]
    assert AuditLog.objects.filter(action="enrollment_key.create", target_id=str(key.pk)).exists()


def test_a_revoked_key_stays_revoked(world, org_admin):
    key = world.keys[world.site_a1]
    client = client_for(org_admin)
    first = client.post(f"/api/v1/enrollment-keys/{key.pk}/revoke")
    assert first.status_code == 200 and first.json()["revokedAt"]
    again = client.post(f"/api/v1/enrollment-keys/{key.pk}/revoke")
    assert again.json()["revokedAt"] == first.json()["revokedAt"]
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert AuditLog.objects.filter(action="enrollment_key.revoke", target_id=str(key.pk)).count() == 1


def test_a_key_for_a_site_out_of_reach_reads_as_nonexistent(world, org_user):
    response = client_for(org_user).post(
        "/api/v1/enrollment-keys", {"siteId": str(world.site_a2.pk), "name": "x"}, format="json"
    )
    assert response.status_code == 400 and "siteId" in response.json()["fields"]
    assert not EnrollmentKey.objects.filter(name="x").exists()
