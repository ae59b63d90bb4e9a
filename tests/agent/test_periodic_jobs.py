"""The offline sweep, and the commands that run every periodic job once or in a loop."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from devices.models import Device
from devices.services.status import mark_offline
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_offline_sweep_marks_exactly_the_silent_online_devices(settings):
    settings.DEVICE_OFFLINE_AFTER_SECONDS = 300
    site, now = factories.site(), timezone.now()
    silent = now - dt.timedelta(seconds=301)
    recent = now - dt.timedelta(seconds=200)
    devices = {
        "silent online": factories.device(site, status="online", last_seen_at=silent),
        "recent online": factories.device(site, status="online", last_seen_at=recent),
        "silent maintenance": factories.device(site, status="maintenance", last_seen_at=silent),
        "silent quarantined": factories.device(site, status="quarantined", last_seen_at=silent),
        "silent decommissioned": factories.device(site, status="decommissioned", last_seen_at=silent),
        "already offline": factories.device(site, status="offline", last_seen_at=silent),
    }
    Device.objects.filter(pk=devices["silent online"].pk).update(updated_at=now - dt.timedelta(days=1))

    assert mark_offline() == 1

    statuses = {name: Device.objects.get(pk=d.pk).status for name, d in devices.items()}
    assert statuses == {
        "silent online": "offline",
        "recent online": "online",
        "silent maintenance": "maintenance",
        "silent quarantined": "quarantined",
        "silent decommissioned": "decommissioned",
        "already offline": "offline",
    }
    assert Device.objects.get(pk=devices["silent online"].pk).updated_at > now - dt.timedelta(minutes=1)
    assert mark_offline() == 0


def test_a_device_never_heard_from_counts_from_its_creation(settings):
    site = factories.site()
    old = factories.device(site, status="online", last_seen_at=None)
    Device.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    new = factories.device(site, status="online", last_seen_at=None)
    assert mark_offline() == 1
    assert Device.objects.get(pk=old.pk).status == "offline"
    assert Device.objects.get(pk=new.pk).status == "online"


def test_a_device_marked_offline_comes_back_with_its_next_heartbeat(agent):
    Device.objects.filter(pk=agent.device_id).update(last_seen_at=timezone.now() - dt.timedelta(hours=1))
    assert mark_offline() == 1
    assert agent.heartbeat().status_code == 200
    assert agent.device.status == "online"


def test_mark_offline_runs_once_from_the_command_line(capsys):
    factories.device(status="online", last_seen_at=timezone.now() - dt.timedelta(days=1))
    call_command("mark_offline", "--once")
    assert "devices marked offline: 1" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)  # the scheduler keeps its books on a connection of its own
def test_run_periodic_runs_every_job_once(capsys):
    factories.device(status="online", last_seen_at=timezone.now() - dt.timedelta(days=1))
    call_command("run_periodic")
    out = capsys.readouterr().out
    assert "offline: 1" in out and "commands expired: 0" in out and "partitions created" in out
