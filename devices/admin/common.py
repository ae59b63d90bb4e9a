"""What the device admin pages share: the one-object filters, the rows agents report, telemetry shown as text."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar
from urllib.parse import urlencode

from django.contrib import admin
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import localize

from devices.models import (
    DeviceTelemetry,
)
from devices.models.telemetry import METRICS as TELEMETRY_METRICS
from rmm.admin import (
    BigTableAdminMixin,
    ReadOnlyAdminMixin,
    ScopedAdminMixin,
    single_object_filter,
)

DeviceFilter = single_object_filter("device")
GroupFilter = single_object_filter("group")

# Samples shown on the device page, and per page of the telemetry list.
DEVICE_PAGE_TELEMETRY_SAMPLES = 20
TELEMETRY_PAGE_SIZE = 100
# Without a device filter the telemetry list looks at one hour at a time: the table has no B-tree index on ts alone
# (only (device_id, ts) and a BRIN), so "the newest N samples of all devices" is a scan of the hour's rows found
# through the BRIN, not of every partition.
TELEMETRY_UNFILTERED_WINDOW = dt.timedelta(hours=1)
TELEMETRY_PERMISSION = "devices:read"
COMMAND_PERMISSION = "devices:execute"  # queueing and cancelling commands, as in the API


# Shown for a metric the agent did not report.
MISSING = "\N{EN DASH}"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f} %"


def _bytes(value: int | None) -> str:
    return MISSING if value is None else filesizeformat(value)


def _mb(value: int | None) -> str:
    return MISSING if value is None else f"{value:,} MB"


def _gb(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.1f} GB"


_SHOWN_AS = {"percent": _percent, "MB": _mb, "GB": _gb, "bytes": _bytes, "count": lambda v: MISSING if v is None else v}


def _telemetry_row(sample: DeviceTelemetry) -> tuple:
    """The sample's time and every metric of the one table of metrics (devices.models.telemetry.METRICS)."""
    shown = (_SHOWN_AS[metric.unit](getattr(sample, metric.column)) for metric in TELEMETRY_METRICS)
    return (localize(timezone.localtime(sample.ts)), *shown)


TELEMETRY_HEADERS = ("time", *(metric.label for metric in TELEMETRY_METRICS))


def _telemetry_url(**params) -> str:
    url = reverse("admin:devices_devicetelemetry_changelist")
    params = {key: value for key, value in params.items() if value not in (None, "")}
    return f"{url}?{urlencode(params)}" if params else url


# The fields a person edits on a device, here and in the API (devices.services.status.update_device).
DEVICE_EDIT_FIELDS = ("display_name", "site", "tags")


class DeviceRowAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Shared by the lists of rows agents report: read-only, filterable by organization and by one device
    (``?device=<id>``, the target of the "see all" links on the device page). Rows follow their device's reach."""

    resource = "devices"

    list_filter: ClassVar[tuple[Any, ...]] = ("org", DeviceFilter)
    list_select_related: ClassVar[tuple[str, ...]] = ("device", "org")

    def get_readonly_fields(self, request, obj=None):
        return self.fields
