"""Time-zone fields (a partner's, a site's) hold IANA names only: the API and the admin refuse anything else the
same way, because both run the model field's one validator (rmm.model_base.validate_time_zone)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from orgs.models import Partner, Site

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def assert_time_zone_refused(response) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "validation_error"
    assert list(body["fields"]) == ["timezone"]
    assert "IANA" in body["fields"]["timezone"][0]


@pytest.mark.parametrize("value", ["Mars/Olympus", "utc ", "Europe/Berlin\x00", "../../etc/passwd", "+02:00"])
def test_creating_a_site_with_an_unknown_time_zone_gets_400_naming_the_field(world, partner_admin, value):
    response = client_for(partner_admin).post(
        "/api/v1/sites", {"orgId": str(world.org_a.pk), "name": "Olympus base", "timezone": value}, format="json"
    )
    assert_time_zone_refused(response)
    assert not Site.objects.filter(name="Olympus base").exists()


def test_changing_a_site_to_an_unknown_time_zone_gets_400_and_keeps_the_old_one(world, partner_admin):
    response = client_for(partner_admin).patch(
        f"/api/v1/sites/{world.site_a1.pk}", {"timezone": "Mars/Olympus"}, format="json"
    )
    assert_time_zone_refused(response)
    world.site_a1.refresh_from_db()
    assert world.site_a1.timezone == "UTC"


def test_a_site_takes_any_iana_time_zone(world, partner_admin):
    response = client_for(partner_admin).patch(
        f"/api/v1/sites/{world.site_a1.pk}", {"timezone": "America/Argentina/Buenos_Aires"}, format="json"
    )
    assert response.status_code == 200, response.content
    world.site_a1.refresh_from_db()
    assert world.site_a1.timezone == "America/Argentina/Buenos_Aires"


def test_changing_a_partner_to_an_unknown_time_zone_gets_400(world, superuser):
    response = client_for(superuser).patch(
        f"/api/v1/partners/{world.partner_a.pk}", {"timezone": "Mars/Olympus"}, format="json"
    )
    assert_time_zone_refused(response)
    assert Partner.objects.get(pk=world.partner_a.pk).timezone == "UTC"


def test_the_admin_refuses_an_unknown_time_zone_for_a_site(world, superuser, client):
    client.force_login(superuser)
    site = world.site_a1
    response = client.post(
        reverse("admin:orgs_site_change", args=[site.pk]),
        {"name": site.name, "timezone": "Mars/Olympus", "address": "{}", "contact": "{}", "settings": "{}"},
    )
    assert response.status_code == 200  # the form again, with its error; a saved change would redirect
    assert "IANA" in response.context["adminform"].form.errors["timezone"][0]
    site.refresh_from_db()
    assert site.timezone == "UTC"


def test_the_admin_refuses_an_unknown_time_zone_for_a_partner(world, superuser, client):
    client.force_login(superuser)
    partner = world.partner_a
    response = client.post(
        reverse("admin:orgs_partner_change", args=[partner.pk]),
        {
            "name": partner.name,
            "slug": partner.slug,
            "type": partner.type,
            "status": partner.status,
            "timezone": "Mars/Olympus",
            "settings": "{}",
        },
    )
    assert response.status_code == 200
    assert "IANA" in response.context["adminform"].form.errors["timezone"][0]
    assert Partner.objects.get(pk=partner.pk).timezone == "UTC"
