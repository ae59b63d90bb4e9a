"""Every keyset list of the technician API can be walked to its end, one row per page, in every ordering it offers,
and the walk sees each row exactly once, in the order one big page shows them (issue 10, item 3).

The lists are found in the OpenAPI document (every GET that answers ``{"results", "next"}``), with the orderings its
``ordering`` parameter names, so a new list or ordering is walked here without a change to this file; the rows come
from the growers of tests/test_list_query_counts.py, whose meta-test makes every list have one. Each list is walked
twice: as grown, and after its sort key was made equal on every row, so pages turn on the id (the tie-breaker) alone.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient

from accounts.models import AuditLog
from devices.models import (
    Device,
    DeviceCommand,
    DeviceGroupMembershipLog,
    DeviceNetworkConnection,
    DeviceSoftware,
)
from devices.services import groups
from tests.test_list_query_counts import CASES, FEW, Grower, make_grower

pytestmark = pytest.mark.django_db

MIN_ROWS = 3
EARLY = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LATE = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)


def _same(model, field: str):
    """Give every row of ``model`` the first row's ``field``."""

    def tie(g: Grower) -> None:
        model.objects.update(**{field: model.objects.order_by("pk").values_list(field, flat=True).first()})

    return tie


def _audit_rows_at_one_moment(g: Grower) -> None:
    # The audit log is append-only (a trigger refuses UPDATE): add rows that share an existing row's moment.
    moment = AuditLog.objects.order_by("pk").values_list("created_at", flat=True).first()
    AuditLog.objects.bulk_create(AuditLog(org=g.world.org_a, action="org.update", created_at=moment) for _ in range(3))


# How a list's sort key is made to tie across rows before its second walk. Unique keys (a disk's mount point, a
# registry path, a group's name) cannot tie, and a membership is sorted by its id.
TIES = {
    "/api/v1/audit-log": _audit_rows_at_one_moment,
    "/api/v1/devices": _same(Device, "hostname"),
    "/api/v1/devices/{id}/commands": _same(DeviceCommand, "created_at"),
    "/api/v1/devices/{id}/connections": _same(DeviceNetworkConnection, "local_port"),
    "/api/v1/devices/{id}/software": _same(DeviceSoftware, "name"),
    "/api/v1/groups/{id}/membership-log": _same(DeviceGroupMembershipLog, "at"),
}


def keyset_lists() -> dict[str, list[str]]:
    """Path → its orderings, for every GET of the OpenAPI document that pages with a cursor."""
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    lists = {}
    for path, operations in document["paths"].items():
        parameters = {p["name"]: p for p in operations.get("get", {}).get("parameters", []) if p["in"] == "query"}
        if "cursor" in parameters:
            lists[path] = parameters["ordering"]["schema"]["enum"]
    return lists


LISTS = keyset_lists()
WALKS = [(path, ordering) for path, orderings in LISTS.items() for ordering in orderings]


def _row_id(row: dict) -> str:
    if "id" in row:
        return row["id"]
    if "device" in row:
        return row["device"]["id"]  # a group member is its device
    if "deviceId" in row:
        return row["deviceId"]  # a run's result is its device's
    return str(row["version"])  # a script's version is its number


def walk(client: APIClient, path: str, ordering: str, most: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1, "ordering": ordering, **({"cursor": cursor} if cursor else {})}
        response = client.get(path, params)
        assert response.status_code == 200, (len(seen), response.content)
        page = response.json()
        assert len(page["results"]) <= 1
        seen += [_row_id(row) for row in page["results"]]
        cursor = page["next"]
        if cursor is None:
            return seen
        assert len(seen) <= most, "the walk does not end"


def test_the_walk_covers_every_keyset_list_with_rows():
    grown = {f"/api/v1/{case}" for case in CASES}
    assert set(LISTS) <= grown, set(LISTS) - grown
    assert len(LISTS) >= 12
    assert set(TIES) <= set(LISTS)


@pytest.mark.parametrize(("path", "ordering"), WALKS, ids=[f"{p.removeprefix('/api/v1/')} {o}" for p, o in WALKS])
def test_a_keyset_list_walked_one_row_a_page_shows_every_row_exactly_once(request, world, path, ordering):
    case = next(c for c in CASES if f"/api/v1/{c}" == path)
    grower = make_grower(request, world, case)
    for n in range(FEW):
        case.grow(grower, n)
    client = APIClient()
    client.force_authenticate(grower.user)
    url = grower.path(case)

    def check() -> None:
        everything = client.get(url, {"limit": 500, "ordering": ordering}).json()
        assert everything["next"] is None
        expected = [_row_id(row) for row in everything["results"]]
        assert len(expected) >= MIN_ROWS
        walked = walk(client, url, ordering, most=len(expected))
        assert len(walked) == len(set(walked))
        assert walked == expected

    check()
    if path in TIES:
        TIES[path](grower)
        check()


def test_an_inventory_list_sorted_on_a_number_pages_past_its_first_page(world, org_user):
    """The cursor of devices/{id}/connections holds an integer key; it was refused (400) when handed back."""
    device = world.devices[world.site_a1][0]
    for port in (443, 22, 8080):
        DeviceNetworkConnection.objects.create(
            device=device, org_id=device.org_id, protocol="tcp", local_addr="192.0.2.1", local_port=port
        )
    client = APIClient()
    client.force_authenticate(org_user)
    first = client.get(f"/api/v1/devices/{device.pk}/connections", {"limit": 2}).json()
    assert [row["localPort"] for row in first["results"]] == [22, 443]
    second = client.get(f"/api/v1/devices/{device.pk}/connections", {"limit": 2, "cursor": first["next"]})
    assert second.status_code == 200, second.content
    assert [row["localPort"] for row in second.json()["results"]] == [8080]


def test_a_group_of_more_members_than_a_page_is_listed_page_by_page(world, partner_admin):
    """The members' cursor holds a UUID key; encoding it answered 500 whenever a second page existed."""
    group = world.groups["All of A"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1, world.site_a2)), actor=partner_admin)
    client = APIClient()
    client.force_authenticate(partner_admin)
    first = client.get(f"/api/v1/groups/{group.pk}/devices", {"limit": 3})
    assert first.status_code == 200, first.content
    second = client.get(f"/api/v1/groups/{group.pk}/devices", {"limit": 3, "cursor": first.json()["next"]})
    assert second.status_code == 200, second.content
    members = [row["device"]["id"] for row in first.json()["results"] + second.json()["results"]]
    assert sorted(members) == sorted(str(d.pk) for d in world.devices_in(world.site_a1, world.site_a2))
    assert second.json()["next"] is None
