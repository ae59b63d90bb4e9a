"""The alerts list and page as a technician's console: severity in its colour, the device's hostname, "opened 5 min
ago", and acknowledge / resolve offered exactly to the people the API lets do it (alerts:acknowledge)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from alerts.models import Alert
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

LIST = admin_url(Alert, "changelist")
MAY_ACKNOWLEDGE = {
    "superuser": True,
    "partner_admin": True,
    "partner_technician": True,
    "viewer": False,
    "org_admin": True,
    "org_user": True,  # Org User holds alerts:acknowledge, on its site A1
    "outsider": False,  # partner B's admin: this alert is out of reach
}


@pytest.fixture
def alert(world) -> Alert:
    device = world.devices[world.site_a1][0]
    return Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        severity="critical",
        title="Disk almost full",
        opened_at=timezone.now() - dt.timedelta(minutes=5, seconds=10),
    )


def menu(html: str) -> set[str]:
    found = re.search(r'<select name="action".*?</select>', html, re.S)
    return set(re.findall(r'<option value="([a-z_]+)"', found.group(0))) if found else set()


def test_the_list_shows_severity_hostname_status_and_how_long_ago_it_opened(alert, partner_technician):
    response = admin_as(partner_technician).get(LIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert '<span class="severity severity-critical">Critical</span>' in html
    assert f'href="{admin_url(type(alert.device), "change", alert.device_id)}">a1-1</a>' in html
    assert '<span class="status status-open">Open</span>' in html
    assert "5 min ago</time>" in html


def test_a_site_alert_says_so_instead_of_a_device(world, partner_technician):
    Alert.objects.create(org=world.org_a, site=world.site_a2, severity="warning", title="Site A2 unreachable")

    html = admin_as(partner_technician).get(LIST).content.decode()

    assert "(the whole site)" in html


@pytest.mark.parametrize("persona", list(MAY_ACKNOWLEDGE))
def test_the_alert_page_offers_acknowledge_and_resolve_only_to_who_may(request, alert, persona):
    client = admin_as(request.getfixturevalue(persona))

    response = client.get(admin_url(Alert, "change", alert.pk))

    offered = set(re.findall(r'data-console-action="([a-z_]+)"', response.content.decode()))
    assert offered == ({"acknowledge", "resolve"} if MAY_ACKNOWLEDGE[persona] else set())


@pytest.mark.parametrize("persona", list(MAY_ACKNOWLEDGE))
def test_the_list_offers_the_bulk_actions_only_to_who_may(request, alert, persona):
    response = admin_as(request.getfixturevalue(persona)).get(LIST)

    assert response.status_code == 200
    # The list offers them to whoever holds alerts:acknowledge somewhere (the outsider, on partner B's alerts).
    expected = {"acknowledge", "resolve"} if MAY_ACKNOWLEDGE[persona] or persona == "outsider" else set()
    assert menu(response.content.decode()) & {"acknowledge", "resolve"} == expected


def test_an_acknowledged_alert_offers_only_resolve(alert, partner_technician):
    Alert.objects.filter(pk=alert.pk).update(status=Alert.Status.ACKNOWLEDGED)

    html = admin_as(partner_technician).get(admin_url(Alert, "change", alert.pk)).content.decode()

    assert set(re.findall(r'data-console-action="([a-z_]+)"', html)) == {"resolve"}


def test_acknowledging_from_the_page_button_changes_the_alert(alert, partner_technician):
    client = admin_as(partner_technician)

    response = client.post(admin_url(Alert, "transition", alert.pk), {"transition": "acknowledge"})

    assert response.status_code == 302
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == (Alert.Status.ACKNOWLEDGED, partner_technician)


def test_the_list_costs_the_same_queries_for_more_alerts(
    world, alert, partner_technician, django_assert_max_num_queries
):
    client = admin_as(partner_technician)
    client.get(LIST)
    with django_assert_max_num_queries(30) as few:
        assert client.get(LIST).status_code == 200
    for device in [d for site in (world.site_a1, world.site_a2, world.site_a2_main) for d in world.devices[site]]:
        Alert.objects.create(
            org_id=device.org_id,
            site_id=device.site_id,
            device=device,
            severity="info",
            title=f"On {device}",
            subject="cpu",
        )
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(LIST).status_code == 200
