"""Alerting in the demo (``manage.py seed_demo``): a few useful rules for every demo organization, and a fleet in
which some of them fire, so a newcomer sees real open alerts right after ``make run``.

The rules have no notification channel: their alerts are visible in the console (the admin and the API) only.
They are made through ``alerts.services.rules.save_rule`` (validated and audited like any other rule), once: a
rule whose name the organization already has is left as it is, so seeding twice keeps one set of rules. Then one
evaluation pass (``alerts.services.evaluate.evaluate_all``) opens the alerts at once, without waiting for the
scheduler's first run.

What makes them fire (``make_some_devices_need_attention``, called while the fleet is written): in each
organization one busy server (CPU samples of the last 15 minutes above 90 %) and one nearly full disk (4 % free).
The fleet itself has offline devices (last seen 10 minutes to 30 days ago) and Windows devices without an antivirus
program in their software list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F

from alerts.models import Alert, AlertRule, Severity
from devices.models import Device, DeviceDisk, DeviceTelemetry
from orgs.models import Organization, Partner

# The antivirus programs of the demo's software catalogs (devices.demo.WINDOWS_SOFTWARE): Sophos and CrowdStrike.
ANTIVIRUS_MISSING = {
    "operator": "AND",
    "conditions": [
        {"field": "osType", "operator": "equals", "value": "windows"},
        {"field": "software.notInstalled", "operator": "contains", "value": "sophos"},
        {"field": "software.notInstalled", "operator": "contains", "value": "crowdstrike"},
    ],
}


@dataclass(frozen=True)
class DemoRule:
    name: str
    severity: str
    condition: dict[str, Any]
    fields: dict[str, Any] = field(default_factory=dict)


DEMO_RULES = (
    DemoRule(
        "CPU above 90 % for 10 minutes",
        Severity.WARNING,
        {"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10},
        {"resolve_after_minutes": 5},
    ),
    DemoRule("Disk below 10 % free", Severity.CRITICAL, {"kind": "disk", "freePercentBelow": 10}),
    DemoRule("Offline for 15 minutes", Severity.WARNING, {"kind": "offline", "minutes": 15}),
    DemoRule("Antivirus missing", Severity.WARNING, {"kind": "rule", "filterRules": ANTIVIRUS_MISSING}),
)

# How the demo's busy servers and full disks look.
BUSY_CPU_PERCENT = (96.4, 93.1, 98.7)
BUSY_MINUTES = 15
FULL_DISK_USED_PERCENT = 96.0


@dataclass
class DemoAlerting:
    """What ``set_up_demo_alerting`` did: rules created now, rules of the demo in all, alerts open after the pass."""

    rules_created: int
    rules: int
    open_alerts: int


def make_some_devices_need_attention(*, now: dt.datetime, organization_ids: list) -> None:
    """In each organization, make the first online server with recent telemetry busy (its CPU samples of the last
    ``BUSY_MINUTES`` above 90 %) and give the first online server's first disk 4 % free space. Called before the
    dynamic groups are evaluated, so "Disks over 90 %" counts the full disk too."""
    recent = now - dt.timedelta(minutes=BUSY_MINUTES)
    for org_id in organization_ids:
        online = Device.objects.filter(org_id=org_id, status=Device.Status.ONLINE).order_by("hostname", "id")
        servers = online.filter(hostname__startswith="srv-")
        busy = (
            servers.filter(id__in=DeviceTelemetry.objects.filter(org_id=org_id, ts__gt=recent).values("device_id"))
            .values_list("id", flat=True)
            .first()
        )
        if busy is not None:
            samples = DeviceTelemetry.objects.filter(device_id=busy, ts__gt=recent).order_by("-ts")
            for value, sample_ts in zip(BUSY_CPU_PERCENT, samples.values_list("ts", flat=True), strict=False):
                DeviceTelemetry.objects.filter(device_id=busy, ts=sample_ts).update(cpu_percent=value)
        full = servers.first() or online.first()
        if full is not None:
            disk = DeviceDisk.objects.filter(device=full, total_gb__gt=0).order_by("mount_point").first()
            if disk is not None:
                DeviceDisk.objects.filter(pk=disk.pk).update(
                    used_percent=FULL_DISK_USED_PERCENT,
                    used_gb=F("total_gb") * FULL_DISK_USED_PERCENT / 100,
                    free_gb=F("total_gb") * (100 - FULL_DISK_USED_PERCENT) / 100,
                    health=DeviceDisk.Health.CRITICAL,
                )


def set_up_demo_alerting(*, partner: Partner, actor=None, now: dt.datetime | None = None) -> DemoAlerting:
    """Give every organization of ``partner`` the demo rules it lacks (by name), then run one evaluation pass."""
    from alerts.services.evaluate import evaluate_all
    from alerts.services.rules import save_rule

    created = 0
    for org in Organization.objects.filter(partner=partner).order_by("name"):
        existing = set(AlertRule.objects.filter(org=org).values_list("name", flat=True))
        for demo in DEMO_RULES:
            if demo.name in existing:
                continue
            rule = AlertRule(
                org=org,
                name=demo.name,
                severity=demo.severity,
                condition=demo.condition,
                created_by=actor,
                **demo.fields,
            )
            save_rule(rule=rule, actor=actor, channels=[])
            created += 1
    evaluate_all(now=now)
    names = [demo.name for demo in DEMO_RULES]
    rules = AlertRule.objects.filter(org__partner=partner, name__in=names)
    open_alerts = Alert.objects.filter(org__partner=partner, status=Alert.Status.OPEN).count()
    return DemoAlerting(rules_created=created, rules=rules.count(), open_alerts=open_alerts)
