"""Device telemetry: its composite primary key keeps it out of ModelAdmin, so it gets its own read-only page."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils import timezone

from devices.admin.common import (
    TELEMETRY_HEADERS,
    TELEMETRY_PAGE_SIZE,
    TELEMETRY_PERMISSION,
    TELEMETRY_UNFILTERED_WINDOW,
    _telemetry_row,
    _telemetry_url,
)
from devices.models import (
    Device,
    DeviceTelemetry,
)
from rmm import authz
from rmm.admin import (
    RmmAdminSite,
)
from rmm.inputs import QueryDateTimeField

# --- Telemetry -----------------------------------------------------------------------------------------------------


class TelemetryQueryForm(forms.Form):
    """The telemetry page's query string: an optional device (its hostname, or its ID as the page's own links give
    it), and the keyset position of the page."""

    device = forms.CharField(
        required=False,
        max_length=255,  # a hostname's length (Device.hostname)
        label="Device",
        widget=forms.TextInput(attrs={"placeholder": "hostname or ID"}),
    )
    before = QueryDateTimeField(required=False, label="Older than")  # rmm.parsing: offsets PostgreSQL holds
    # With no device filter several devices can share a ts, so the position is (ts, device id).
    before_device = forms.UUIDField(required=False, widget=forms.HiddenInput)


def _telemetry_samples(
    *, user, device: Device | None, before: dt.datetime | None, before_device
) -> tuple[list[DeviceTelemetry], str | None, dt.datetime | None]:
    """One page of samples of devices ``user`` may read, newest first, with the link to the next (older) page and
    the window looked at."""
    queryset = authz.visible(user, TELEMETRY_PERMISSION, DeviceTelemetry.objects.select_related("device"))
    window_start = None
    if device is not None:
        queryset = queryset.filter(device_id=device.pk).order_by("-ts")
        if before is not None:
            queryset = queryset.filter(ts__lt=before)
    else:
        window_end = before or timezone.now()
        earliest = dt.datetime.min.replace(tzinfo=dt.UTC)
        window_start = max(window_end, earliest + TELEMETRY_UNFILTERED_WINDOW) - TELEMETRY_UNFILTERED_WINDOW
        queryset = queryset.filter(ts__gte=window_start).order_by("-ts", "-device_id")
        if before is not None and before_device is not None:
            queryset = queryset.filter(Q(ts__lt=before) | Q(ts=before, device_id__lt=before_device))
        elif before is not None:
            queryset = queryset.filter(ts__lt=before)
    samples = list(queryset[: TELEMETRY_PAGE_SIZE + 1])
    older_url = None
    if len(samples) > TELEMETRY_PAGE_SIZE:
        samples = samples[:TELEMETRY_PAGE_SIZE]
        last = samples[-1]
        older_url = _telemetry_url(
            device=device.pk if device else None,
            before=last.ts.isoformat(),
            before_device=None if device else last.device_id,
        )
    elif window_start is not None:  # no device chosen
        # This window is exhausted; the next page is the window before it.
        older_url = _telemetry_url(before=window_start.isoformat())
    return samples, older_url, window_start


def _find_device(devices, wanted: str) -> tuple[Device | None, str, int]:
    """The device of ``devices`` (those in the reader's reach) that ``wanted`` names, by ID or by hostname; with
    none, why not and the page's status."""
    try:
        pk = uuid.UUID(wanted)
    except ValueError:
        pass
    else:
        device = devices.filter(pk=pk).first()
        return (device, "", 200) if device else (None, "No device has this ID.", 404)
    # The exact hostname first (an index scan of devices_hostname_id), then regardless of case.
    matches = list(devices.filter(hostname=wanted)[:2]) or list(devices.filter(hostname__iexact=wanted)[:2])
    if len(matches) == 1:
        return matches[0], "", 200
    if matches:
        return None, f"Several devices are named “{wanted}”: open the one you mean from the device list.", 400
    return None, f"No device is named “{wanted}”.", 404


def telemetry_page(request, site) -> TemplateResponse:
    """Device telemetry, newest first, read-only, ``TELEMETRY_PAGE_SIZE`` samples per page.

    ``?device=<hostname or id>`` shows one device's samples (an index scan of its (device_id, ts) primary key).
    Without it, the page shows one ``TELEMETRY_UNFILTERED_WINDOW`` at a time. Paging is by keyset (``before`` = the
    last ts shown), never by offset, and nothing counts the table: it holds a sample per device every minute or so.

    Only samples of devices the user may read are shown (``authz.visible``, by organization, site and device); a
    device out of reach is answered like one that does not exist (404). The site serves the page only to users who
    hold ``devices:read`` somewhere (``register_page``).
    """
    form = TelemetryQueryForm(request.GET)
    samples: list[DeviceTelemetry] = []
    older_url, window_start, device, before = None, None, None, None
    status = 200
    if not form.is_valid():
        status = 400
    else:
        before = form.cleaned_data["before"]
        if form.cleaned_data["device"]:
            devices = authz.visible(request.user, TELEMETRY_PERMISSION, Device.objects.select_related("org", "site"))
            device, problem, status = _find_device(devices, form.cleaned_data["device"])
            if device is None:
                form.add_error("device", problem)
        if status == 200:
            samples, older_url, window_start = _telemetry_samples(
                user=request.user, device=device, before=before, before_device=form.cleaned_data["before_device"]
            )

    opts = DeviceTelemetry._meta
    context = {
        **site.each_context(request),
        "title": f"Telemetry of {device}" if device else "Device telemetry",
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "form": form,
        "device": device,
        "headers": TELEMETRY_HEADERS,
        "rows": [(sample, _telemetry_row(sample)) for sample in samples],
        "window_start": window_start,
        "window_minutes": int(TELEMETRY_UNFILTERED_WINDOW.total_seconds() // 60),
        "older_url": older_url,
        "newest_url": _telemetry_url(device=device.pk if device else None) if before else None,
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/devices/devicetelemetry/telemetry_list.html", context, status=status)


cast(RmmAdminSite, admin.site).register_page(DeviceTelemetry, telemetry_page, permission=TELEMETRY_PERMISSION)
