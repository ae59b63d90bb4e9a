"""Storm control in the evaluator: a site that goes dark opens one site-level alert, not one per device."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from alerts.models import Alert, AlertState, Notification, NotificationChannel
from alerts.services.evaluate import evaluate_all
from devices.models import Device
from tests import factories

MIN = dt.timedelta(minutes=1)
OFFLINE_15 = {"kind": "offline", "minutes": 15}


def _devices(site, count: int, last_seen_at: dt.datetime, prefix: str = "ws") -> list[Device]:
    return Device.objects.bulk_create(
        Device(
            org_id=site.org_id,
            site=site,
            agent_id=uuid.uuid4().hex,
            hostname=f"{prefix}-{n:03d}",
            os_type="windows",
            last_seen_at=last_seen_at,
        )
        for n in range(count)
    )


@pytest.fixture
def site(db):
    return factories.site(name="Head office")


def test_200_devices_of_a_site_offline_open_one_site_alert_and_no_device_alerts(site, now, make_rule):
    _devices(site, 200, now - 20 * MIN)
    elsewhere = factories.device(factories.site(site.org), last_seen_at=now - 20 * MIN)
    channel = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    rule = make_rule(site.org, OFFLINE_15)
    rule.channels.set([channel])

    report = evaluate_all(now=now)

    site_alert = Alert.objects.get(site=site)
    assert (site_alert.device_id, site_alert.rule_id, site_alert.subject) == (None, None, f"site:{site.pk}")
    assert site_alert.title == f"Site unreachable: Head office ({site.org.name})"
    assert site_alert.severity == rule.severity
    assert site_alert.value == 100
    assert list(Alert.objects.filter(rule=rule).values_list("device", flat=True)) == [elsewhere.pk]
    assert (report.site_alerts_opened, report.opened) == (1, 1)
    assert Notification.objects.filter(alert=site_alert).count() == 1

    evaluate_all(now=now + MIN)  # still dark: nothing more

    assert Alert.objects.filter(site=site).count() == 1
    assert Notification.objects.filter(alert__site=site).count() == 1


def test_the_site_alert_resolves_when_the_site_comes_back(site, now, make_rule):
    devices = _devices(site, 10, now - 20 * MIN)
    make_rule(site.org, OFFLINE_15)
    evaluate_all(now=now)
    site_alert = Alert.objects.get(site=site, device=None)
    Device.objects.filter(pk__in=[device.pk for device in devices[:8]]).update(last_seen_at=now + MIN)

    report = evaluate_all(now=now + 2 * MIN)

    site_alert.refresh_from_db()
    assert (site_alert.status, site_alert.resolve_reason) == ("resolved", "condition_cleared")
    assert report.site_alerts_resolved == 1
    # The two still silent are their own problem now: their pending states had counted all along.
    assert set(Alert.objects.filter(device__isnull=False, status="open").values_list("device", flat=True)) == {
        devices[8].pk,
        devices[9].pk,
    }


def test_devices_crossing_the_limit_over_two_passes_still_make_one_site_alert(site, now, make_rule):
    """Heartbeats are spread over a minute: when the site goes dark, half its devices pass the limit one pass
    before the other half."""
    _devices(site, 5, now - 15 * MIN - dt.timedelta(seconds=10), prefix="early")
    _devices(site, 5, now - 15 * MIN + dt.timedelta(seconds=20), prefix="late")
    make_rule(site.org, OFFLINE_15)

    evaluate_all(now=now)
    evaluate_all(now=now + MIN)

    assert Alert.objects.filter(site=site, device=None, status="open").count() == 1
    assert not Alert.objects.filter(device__isnull=False).exists()
    assert AlertState.objects.count() == 10  # pending behind the site alert, so they count if the site recovers


def test_a_few_devices_offline_are_device_alerts_not_an_outage(site, now, make_rule):
    _devices(site, 4, now - 20 * MIN, prefix="down")  # fewer than 5
    _devices(site, 1, now, prefix="up")
    rule = make_rule(site.org, OFFLINE_15)

    evaluate_all(now=now)

    assert not Alert.objects.filter(device=None).exists()
    assert Alert.objects.filter(rule=rule).count() == 4


def test_less_than_80_percent_offline_is_not_an_outage(site, now, make_rule):
    _devices(site, 7, now - 20 * MIN, prefix="down")
    _devices(site, 3, now, prefix="up")
    rule = make_rule(site.org, OFFLINE_15)

    evaluate_all(now=now)

    assert not Alert.objects.filter(device=None).exists()
    assert Alert.objects.filter(rule=rule).count() == 7


def test_a_dark_site_is_announced_once_to_every_channel_of_every_offline_rule_that_sees_it(site, now, make_rule):
    """The bench found it: the site alert went only to the channels of the highest-severity rule, a console-only
    one, while another offline rule watching the site had an e-mail channel."""
    devices = _devices(site, 10, now - 20 * MIN)
    noc = NotificationChannel.objects.create(org=site.org, name="noc", kind="email", config={"to": ["n@x.test"]})
    ops = NotificationChannel.objects.create(org=site.org, name="ops", kind="email", config={"to": ["o@x.test"]})
    muted = NotificationChannel.objects.create(
        org=site.org, name="muted", kind="email", config={"to": ["m@x.test"]}, enabled=False
    )
    make_rule(site.org, OFFLINE_15, severity="critical")  # console only
    make_rule(site.org, OFFLINE_15, severity="warning").channels.set([noc, muted])
    make_rule(site.org, {"kind": "offline", "minutes": 10}, severity="info").channels.set([noc, ops])

    evaluate_all(now=now)

    site_alert = Alert.objects.get(site=site, device=None)
    assert site_alert.severity == "critical"
    assert sorted(
        Notification.objects.filter(alert=site_alert).values_list("channel__name", "event", "payload__rule__name")
    ) == [("noc", "alert.opened", "offline rule 1"), ("ops", "alert.opened", "offline rule 1")]

    Device.objects.filter(pk__in=[device.pk for device in devices]).update(last_seen_at=now + MIN)
    evaluate_all(now=now + 2 * MIN)

    assert sorted(
        Notification.objects.filter(alert=site_alert, event="alert.resolved").values_list("channel__name", flat=True)
    ) == ["noc", "ops"]
