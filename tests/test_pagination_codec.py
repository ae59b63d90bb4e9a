"""The keyset cursor holds a sort key of every type a model field gives it (text, UUID, datetime, date, integer,
float, boolean; decimals too) and reads it back as that type: KeysetPagination itself walks real rows one a page,
ascending and descending, with ties, NULLs and the ends of each type's range (issue 10, item 3)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from types import SimpleNamespace

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from devices.models import DeviceDisk, DeviceGroupMembership, DeviceNetworkConnection, DeviceSoftware
from devices.services import groups
from rmm import pagination
from rmm.pagination import KeysetPagination, Ordering

pytestmark = pytest.mark.django_db

EARLY = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LATE = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)


def _walk_queryset(queryset, ordering: Ordering) -> list:
    """Walk ``queryset`` with KeysetPagination itself, one row a page, as a view with this one ordering would."""
    view = SimpleNamespace(orderings={"o": ordering}, default_ordering="o")
    seen, cursor = [], None
    while True:
        request = Request(APIRequestFactory().get("/", {"limit": 1, **({"cursor": cursor} if cursor else {})}))
        paginator = KeysetPagination()
        seen += [row.pk for row in paginator.paginate_queryset(queryset, request, view)]
        cursor = paginator.get_paginated_response([]).data["next"]
        if cursor is None:
            return seen
        assert len(seen) <= queryset.count()


@pytest.mark.parametrize(
    ("model", "field", "values"),
    [
        (DeviceSoftware, "install_date", [dt.date(2026, 1, 2), None, dt.date(2026, 1, 2), dt.date(1, 1, 1), None]),
        (DeviceSoftware, "updated_at", [dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)] * 2 + [EARLY, LATE]),
        (DeviceDisk, "total_gb", [1.5, None, 1.5, -0.0, 1e300]),
        (DeviceNetworkConnection, "local_port", [443, 22, 443, 0, 65535]),
        (DeviceSoftware, "name", ["zeta", "Ärger", "zeta", "", "😀 emoji", "a'\"\\"]),
        (DeviceGroupMembership, "id", None),
        (DeviceGroupMembership, "is_pinned", [True, False, True, False]),
    ],
    ids=lambda v: v if isinstance(v, str) else getattr(v, "__name__", None),
)
@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
def test_a_cursor_holds_a_key_of_every_type_and_reads_it_back(world, model, field, values, descending):
    device = world.devices[world.site_a1][0]
    if model is DeviceGroupMembership:
        members = list(world.devices_in(world.site_a1, world.site_a2))
        groups.add_members(group=world.groups["All of A"], devices=members, actor=None)
        for n, membership in enumerate(DeviceGroupMembership.objects.all()):
            if values:
                DeviceGroupMembership.objects.filter(pk=membership.pk).update(**{field: values[n % len(values)]})
    else:
        base = {
            DeviceSoftware: {"name": "x"},
            DeviceDisk: {"mount_point": "/"},
            DeviceNetworkConnection: {"protocol": "tcp", "local_addr": "192.0.2.1", "local_port": 1},
        }[model]
        model.objects.bulk_create(
            model(device=device, org_id=device.org_id, **{**base, field: value}) for value in values
        )
    ordering = Ordering(field, descending=descending)
    queryset = model.objects.all()
    expected = list(queryset.order_by(*ordering.order_by()).values_list("pk", flat=True))
    assert len(expected) >= 3
    assert _walk_queryset(queryset, ordering) == expected


def test_a_decimal_key_is_written_as_text_and_read_back_exactly():
    decode = pagination._DECODERS["DecimalField"]
    for value in (Decimal("12.50"), Decimal("-0.000001"), Decimal("123456789012345678901234567890.1")):
        assert decode(json.loads(json.dumps(pagination.encode_key(value)))) == value
    for bad in ("NaN", "Infinity", 1.5, "1e999999999999"):
        with pytest.raises(ValueError):
            decode(bad)
