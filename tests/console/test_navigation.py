"""Navigation by work (issue 16, point 5): the sidebar and the index list the admin's pages in sections — Fleet,
Inventory, Tenancy, Access, Operations — from one table (rmm.admin.NAVIGATION), and every list a person may open is
still listed, once, whatever its section."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from devices.models import Device
from rmm.admin import DASHBOARD_ENTRY, NAVIGATION, SHORT_NAMES
from tests.doors import admin_as, admin_url

pytestmark = pytest.mark.django_db

PERSONAS = ["superuser", "partner_admin", "partner_technician", "viewer", "org_admin", "org_user", "outsider"]
INDEX = "/admin/"


def registered_labels() -> set[str]:
    site = admin.site
    return {model._meta.label_lower for model in [*site._registry, *site._pages]}  # type: ignore[attr-defined]


def sidebar(user, path: str = INDEX) -> list[dict]:
    request = RequestFactory().get(path)
    request.user = user
    return admin.site.get_app_list(request)


def by_app(user) -> set[str]:
    """What Django's own grouping (one app at a time, as /admin/<app>/ shows it) lists for ``user``."""
    request = RequestFactory().get(INDEX)
    request.user = user
    labels = {model._meta.app_label for model in [*admin.site._registry, *admin.site._pages]}  # type: ignore[attr-defined]
    return {
        entry["model"]._meta.label_lower
        for label in labels
        for app in admin.site.get_app_list(request, label)
        for entry in app["models"]
    }


def test_every_registered_model_has_a_place_in_the_navigation_table():
    placed = [label for _key, _name, labels in NAVIGATION for label in labels]

    assert len(placed) == len(set(placed)), "a model is placed in two sections"
    assert registered_labels() - set(placed) == set()


def test_the_navigation_table_names_only_pages_that_exist_or_djangos_groups():
    placed = {label for _key, _name, labels in NAVIGATION for label in labels}

    # auth.group may be unregistered when unused (it is Django's, not ours); everything else must exist.
    assert placed - registered_labels() - {DASHBOARD_ENTRY, "auth.group"} == set()


def test_the_operator_sees_the_sections_in_the_order_of_work(world, superuser):
    sections = sidebar(superuser)

    assert [section["name"] for section in sections] == ["Fleet", "Inventory", "Tenancy", "Access", "Operations"]
    fleet = [entry["object_name"] for entry in sections[0]["models"]]
    assert fleet[:5] == ["Dashboard", "Device", "DeviceGroup", "Alert", "DeviceCommand"]
    assert "DeviceTelemetry" in [entry["object_name"] for entry in sections[1]["models"]]
    assert [entry["object_name"] for entry in sections[2]["models"]] == [
        "Partner",
        "Organization",
        "Site",
        "EnrollmentKey",
    ]


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_list_a_person_may_open_is_in_the_sidebar_once(request, world, persona):
    user = request.getfixturevalue(persona)

    entries = [entry for section in sidebar(user) for entry in section["models"]]
    labels = [entry["model"]._meta.label_lower for entry in entries if entry["model"] is not None]

    assert len(labels) == len(set(labels))
    assert set(labels) == by_app(user)
    assert entries[0]["admin_url"] == reverse("admin:index")  # the dashboard, first


@pytest.mark.parametrize("persona", ["partner_technician", "org_user", "outsider"])
def test_the_operations_section_is_for_operators_only(request, world, persona):
    sections = sidebar(request.getfixturevalue(persona))

    assert "Operations" not in [section["name"] for section in sections]
    assert [section["name"] for section in sections][:1] == ["Fleet"]


def test_sections_keep_the_shape_of_djangos_app_list(world, partner_technician):
    for section in sidebar(partner_technician):
        assert {"name", "app_label", "app_url", "models"} <= set(section)
        assert section["app_url"] == reverse("admin:index")
        for entry in section["models"]:
            assert {"name", "object_name", "admin_url", "add_url", "perms", "view_only"} <= set(entry)


def test_only_the_page_shown_is_marked_current_in_the_sidebar(world, partner_technician):
    client = admin_as(partner_technician)

    device_list = client.get(admin_url(Device, "changelist")).content.decode()
    dashboard = client.get(INDEX).content.decode()

    current = re.compile(r'<tr class="model-(\w+) current-model">')
    assert current.findall(device_list) == ["device"]
    assert current.findall(dashboard) == ["dashboard"]


def test_the_dashboard_shows_the_sidebar_with_the_sections(world, partner_technician):
    page = admin_as(partner_technician).get(INDEX)

    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="nav-sidebar"' in body
    for name in ("Fleet", "Inventory", "Tenancy"):
        assert f'class="section" title="{name}">{name}</a>' in body
    # Access: their own API tokens.
    assert [app["name"] for app in page.context["app_list"]] == ["Fleet", "Inventory", "Tenancy", "Access"]


def test_an_apps_own_page_still_lists_that_apps_models(world, partner_technician):
    page = admin_as(partner_technician).get(reverse("admin:app_list", args=["devices"]))

    assert page.status_code == 200
    assert [app["app_label"] for app in page.context["app_list"]] == ["devices"]
    assert reverse("admin:devices_devicetelemetry_changelist") in page.content.decode()


def test_every_short_sidebar_name_belongs_to_a_model_of_the_navigation():
    placed = {label for _key, _name, labels in NAVIGATION for label in labels}
    assert set(SHORT_NAMES) <= placed
