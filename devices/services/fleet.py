"""The fleet at a glance: how many devices are in each status and on each OS.

``device_summary`` is the one place these counts are made: ``GET /api/v1/devices/summary`` and the console's
dashboard (``rmm/dashboard.py``) both call it with the devices the person may read, so the two always agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, QuerySet

from devices.models import Device


@dataclass(frozen=True)
class DeviceSummary:
    """Counts of a set of devices: every status and every OS type of the model (zero included), and the total."""

    by_status: dict[str, int]
    by_os_type: dict[str, int]
    total: int


def device_summary(devices: QuerySet[Device]) -> DeviceSummary:
    """Count ``devices`` (already narrowed to what the reader may see, and filtered as they asked) by status and by
    OS type in ONE query: one pass over the rows grouped by (status, OS), at most 15 groups, added up here. (Two
    grouped scans read a 100,000-device table twice; filtered counts per value cost more than the grouping.)"""
    by_status = dict.fromkeys(Device.Status.values, 0)
    by_os_type = dict.fromkeys(Device.OsType.values, 0)
    total = 0
    for status, os_type, count in devices.order_by().values_list("status", "os_type").annotate(n=Count("pk")):
        by_status[status] += count  # the database allows only these values (check constraints)
        by_os_type[os_type] += count
        total += count
    return DeviceSummary(by_status=by_status, by_os_type=by_os_type, total=total)
