"""A device's status over time (agent-api.md): ``offline`` is set by a periodic sweep, never by a request.

Heartbeats bring an ``offline`` device back ``online`` (``devices.agent_api.sql``); technicians set ``maintenance``,
quarantine, approve and decommission. The sweep touches only ``online`` devices, so a device in maintenance or
quarantine keeps its status however long it is silent.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from devices.models import Device


def mark_offline(*, now: dt.datetime | None = None, after_seconds: int | None = None) -> int:
    """Mark ``offline`` every online device not heard from for DEVICE_OFFLINE_AFTER_SECONDS; returns how many.

    A device that was never heard from counts from its creation. A heartbeat racing the sweep wins: the UPDATE
    re-checks ``last_seen_at`` on the row the heartbeat just wrote.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=after_seconds or settings.DEVICE_OFFLINE_AFTER_SECONDS)
    silent = Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True, created_at__lt=cutoff)
    return Device.objects.filter(silent, status=Device.Status.ONLINE).update(
        status=Device.Status.OFFLINE, updated_at=now
    )
