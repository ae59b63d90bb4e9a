"""GET devices/{id}/telemetry?from&to&bucket: a device's metrics for charts."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone
from rest_framework import mixins
from rest_framework.response import Response

from devices.models import Device
from devices.services import telemetry
from rmm.api import ScopedViewSet
from rmm.errors import ApiError
from rmm.parsing import parse_datetime

BUCKET_CHOICES = ("auto", "raw", *telemetry.BUCKETS)
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def _moment(request, name: str) -> dt.datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return parse_datetime(raw, from_query=True)
    except ValueError as exc:
        raise ApiError(400, "validation_error", "Bad time.", {name: [str(exc)]}) from None


class DeviceTelemetryViewSet(ScopedViewSet, mixins.RetrieveModelMixin):
    """Points oldest first. ``bucket=auto`` (the default) picks raw samples, 5-minute or hourly buckets so a chart
    gets at most about 1,000 points; each point has the average of every metric, the maximum of cpu/ram/disk and
    the number of samples. The range defaults to the last 24 hours and may not exceed the retention."""

    resource = "devices"
    queryset = Device.objects.all()

    def retrieve(self, request, *args, **kwargs):
        device = self.get_object()
        end = _moment(request, "to") or timezone.now()
        start = _moment(request, "from")
        if start is None:
            if end - _EARLIEST < dt.timedelta(hours=24):
                raise ApiError(400, "validation_error", "Bad time.", {"to": ["Must be after 0001-01-02."]})
            start = end - dt.timedelta(hours=24)
        bucket = request.query_params.get("bucket", "auto")
        problems = {}
        if bucket not in BUCKET_CHOICES:
            problems["bucket"] = [f"One of: {', '.join(BUCKET_CHOICES)}."]
        if start >= end:
            problems["from"] = ["Must be before 'to'."]
        elif end - start > dt.timedelta(days=settings.TELEMETRY_RETENTION_DAYS + 1):
            problems["from"] = [f"At most {settings.TELEMETRY_RETENTION_DAYS} days of telemetry are kept."]
        elif bucket == "raw" and end - start > telemetry.AUTO_5M_UNTIL:
            problems["bucket"] = ["Raw samples are served for at most 83 hours; use 5m, 1h or auto."]
        if problems:
            raise ApiError(400, "validation_error", "The request has invalid fields.", problems)
        chosen = telemetry.choose_bucket(start, end) if bucket == "auto" else bucket
        points = telemetry.series(device_id=device.pk, start=start, end=end, bucket=chosen)
        return Response({"deviceId": device.pk, "from": start, "to": end, "bucket": chosen, "points": points})
