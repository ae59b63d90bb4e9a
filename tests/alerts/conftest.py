"""Fixtures shared by the alerts tests: a fixed clock, rules, telemetry samples and disks.

``now`` is a fixed, timezone-aware moment; tests pass it (and later moments) to the evaluator as ``now=`` so
``for_minutes``, hysteresis and cooldown are tested without sleeping. Rules are saved with ``full_clean()`` so a
test never builds one the validator would refuse.
"""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.models import AlertRule
from devices.models import Device, DeviceDisk, DeviceTelemetry
from devices.models.telemetry import METRICS

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)  # a Monday, noon UTC

_COLUMN_OF = {metric.wire: metric.column for metric in METRICS}


@pytest.fixture
def now() -> dt.datetime:
    """The tests' fixed clock."""
    return NOW


@pytest.fixture
def make_rule(db):
    """``make_rule(owner, condition, **fields)`` → a validated, saved ``AlertRule`` of an organization or a
    partner (``owner``), named after its condition unless ``name`` is given."""

    def make(owner, condition: dict, **fields) -> AlertRule:
        owner_field = "partner" if owner._meta.model_name == "partner" else "org"
        fields.setdefault("name", f"{condition.get('kind')} rule {AlertRule.objects.count() + 1}")
        rule = AlertRule(**{owner_field: owner}, condition=condition, **fields)
        rule.full_clean()
        rule.save()
        return rule

    return make


@pytest.fixture
def add_samples(db):
    """``add_samples(device, at, minutes=1, every=1, **metrics)``: one telemetry sample every ``every`` minutes
    for ``minutes`` minutes ending at ``at`` (inclusive), with the metrics given by their wire names
    (``cpuPercent=95``)."""

    def add(device: Device, at: dt.datetime, *, minutes: int = 1, every: int = 1, **metrics) -> None:
        values = {_COLUMN_OF[name]: value for name, value in metrics.items()}
        DeviceTelemetry.objects.bulk_create(
            DeviceTelemetry(device_id=device.pk, org_id=device.org_id, ts=at - dt.timedelta(minutes=m), **values)
            for m in range(0, minutes, every)
        )

    return add


@pytest.fixture
def add_disk(db):
    """``add_disk(device, mount, total_gb, free_gb)`` → a saved ``DeviceDisk`` with used/percent filled in."""

    def add(device: Device, mount: str, total_gb: float | None, free_gb: float | None) -> DeviceDisk:
        used = None if total_gb is None or free_gb is None else total_gb - free_gb
        percent = None if used is None or not total_gb else 100 * used / total_gb
        return DeviceDisk.objects.create(
            device=device,
            org_id=device.org_id,
            mount_point=mount,
            total_gb=total_gb,
            free_gb=free_gb,
            used_gb=used,
            used_percent=percent,
        )

    return add
