"""Every list of the alerts API runs as many queries for 30 rows as for 1: each row carries what its serializer
reads (a rule's channels, an alert's device and rule), and the persona signs in with a real API token, so
authentication and the reach are counted as in production."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts import auth
from alerts.models import Alert, AlertRule, MaintenanceWindow, Notification, NotificationChannel
from tests.conftest import World

pytestmark = pytest.mark.django_db

START = dt.datetime(2030, 1, 1, 2, 0, tzinfo=dt.UTC)


def _rule(world: World, n: int) -> None:
    rule = AlertRule.objects.create(org=world.org_a, name=f"Rule {n}", condition={"kind": "offline", "minutes": n + 1})
    rule.channels.set(
        NotificationChannel.objects.create(
            org=world.org_a, name=f"Channel {n}.{k}", kind="email", config={"to": [f"ops{k}@a.example"]}
        )
        for k in range(2)
    )


def _alert(world: World, n: int) -> None:
    device = world.devices[world.site_a1][n % 2]
    rule = AlertRule.objects.create(org=world.org_a, name=f"Rule {n}", condition={"kind": "offline", "minutes": 5})
    Alert.objects.create(
        org=world.org_a, site=world.site_a1, device=device, rule=rule, severity="warning", title=f"Alert {n}"
    )


def _window(world: World, n: int) -> None:
    MaintenanceWindow.objects.create(
        org=world.org_a,
        site=world.site_a1,
        name=f"Window {n}",
        starts_at=START + dt.timedelta(days=n),
        ends_at=START + dt.timedelta(days=n, hours=2),
        recurrence="weekly",
        weekdays=[n % 7],
    )


def _channel(world: World, n: int) -> None:
    NotificationChannel.objects.create(
        org=world.org_a, name=f"Hook {n}", kind="webhook", config={"url": f"https://h{n}.example"}, secret="x" * 20
    )


def _notification(world: World, n: int) -> None:
    channel = NotificationChannel.objects.create(
        org=world.org_a, name=f"Mail {n}", kind="email", config={"to": ["o@a.example"]}
    )
    device = world.devices[world.site_a1][0]
    alert = Alert.objects.create(
        org=world.org_a, site=world.site_a1, device=device, subject=f"/mnt/{n}", severity="info", title=str(n)
    )
    Notification.objects.create(channel=channel, org=world.org_a, alert=alert, event="alert.opened", payload={"n": n})


@dataclass(frozen=True)
class Case:
    path: str
    persona: str
    grow: Callable[[World, int], None]
    queries: int

    def __str__(self) -> str:
        return self.path.removeprefix("/api/v1/")


CASES = [
    Case("/api/v1/alert-rules", "org_admin", _rule, queries=8),
    Case("/api/v1/alerts", "org_user", _alert, queries=7),
    Case("/api/v1/maintenance-windows", "org_user", _window, queries=7),
    Case("/api/v1/notification-channels", "org_admin", _channel, queries=7),
    Case("/api/v1/notifications", "partner_technician", _notification, queries=7),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_list_runs_as_many_queries_for_30_rows_as_for_1(request, world, case, django_assert_max_num_queries):
    user = request.getfixturevalue(case.persona)
    raw, _token = auth.issue_api_token(user=user, name="query counts", lifetime=None)
    client = APIClient(headers={"Authorization": f"Bearer {raw}"})
    case.grow(world, 0)
    client.get(case.path)  # the token's first use stamps last_used_at: keep that write out of the count

    with django_assert_max_num_queries(case.queries):
        one = client.get(case.path)
    for n in range(1, 30):
        case.grow(world, n)
    with django_assert_max_num_queries(case.queries):
        many = client.get(case.path)

    assert one.status_code == many.status_code == 200, many.content
    assert (len(one.json()["results"]), len(many.json()["results"])) == (1, 30)
