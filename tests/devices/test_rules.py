"""Filter rules (devices/rules.py): what each operator selects on each kind of field and source, with devices that
lack a value; what the validator refuses and where it says the mistake is; values that look like SQL or LIKE
patterns staying literal; one query per evaluation."""

from __future__ import annotations

import datetime as dt
import math
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import (
    Device,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkInterface,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.rules import (
    FIELDS,
    MAX_DEPTH,
    MAX_REGEX_LENGTH,
    TIME_BASED_FIELDS,
    RuleError,
    compile_rule,
    fields_used,
    validate_rule,
)
from tests import factories

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
_NO_VALUE = object()


def cond(field: str, operator: str, value: object = _NO_VALUE) -> dict:
    condition = {"field": field, "operator": operator}
    if value is not _NO_VALUE:
        condition["value"] = value
    return condition


def all_of(*conditions: dict) -> dict:
    return {"operator": "AND", "conditions": list(conditions)}


def any_of(*conditions: dict) -> dict:
    return {"operator": "OR", "conditions": list(conditions)}


def matching(rule: dict, fleet: dict[str, Device], *, now: dt.datetime = NOW) -> set[str]:
    """The labels of the fleet's devices the rule selects, evaluated as callers do: inside the fleet's organization."""
    org_id = next(iter(fleet.values())).org_id
    ids = set(Device.objects.filter(compile_rule(rule, now=now), org_id=org_id).values_list("id", flat=True))
    label_of = {device.id: label for label, device in fleet.items()}
    assert ids <= label_of.keys(), "the rule selected a device outside the fleet"
    return {label_of[device_id] for device_id in ids}


def errors_of(rule: object) -> dict[str, list[str]]:
    with pytest.raises(RuleError) as caught:
        validate_rule(rule)
    return caught.value.errors


def valid(rule: dict) -> dict:
    validate_rule(rule)
    return rule


# Text fields: the same semantics whether the text is a device column, the hardware row or any interface.

DEVICE_TEXT_FIELDS = ["hostname", "displayName", "osVersion", "osBuild", "agentVersion", "lastSeenIp", "architecture"]
HARDWARE_TEXT_FIELDS = [
    "hardware.manufacturer",
    "hardware.model",
    "hardware.serialNumber",
    "hardware.cpuModel",
    "hardware.gpuModel",
]
NETWORK_TEXT_FIELDS = ["network.ipAddress", "network.macAddress"]

# "missing" has no row at all (no hardware summary, no interface); on a device column it is '' like "blank".
TEXT_VALUES = {"upper": "WEB-Server-01", "lower": "web-server-02", "db": "db-01", "blank": "", "wild": "50%_off\\"}
TEXT_LABELS = {*TEXT_VALUES, "missing"}


def text_fleet(field_name: str) -> dict[str, Device]:
    field = FIELDS[field_name]
    site = factories.site()
    fleet = {}
    for label, text in [*TEXT_VALUES.items(), ("missing", None)]:
        if field.source == "device":
            fleet[label] = factories.device(site, **{field.column: text or ""})
            continue
        device = fleet[label] = factories.device(site)
        if text is None:
            continue
        if field.source == "hardware":
            DeviceHardware.objects.create(device=device, org_id=device.org_id, **{field.column: text})
        else:
            DeviceNetworkInterface.objects.create(
                device=device, org_id=device.org_id, interface_name="eth0", **{field.column: text}
            )
    return fleet


TEXT_CASES = [
    ("equals", "web-server-01", {"upper"}),
    ("equals", "web", set()),
    ("notEquals", "web-server-01", TEXT_LABELS - {"upper"}),
    ("contains", "SERVER", {"upper", "lower"}),
    ("notContains", "server", {"db", "blank", "wild", "missing"}),
    ("startsWith", "web", {"upper", "lower"}),
    ("endsWith", "01", {"upper", "db"}),
    ("matches", "^web", {"lower"}),
    ("matches", "(?i)^web", {"upper", "lower"}),
    ("matches", "x*", {"upper", "lower", "db", "wild"}),
    ("in", ["DB-01", "web-server-02", "nothing"], {"lower", "db"}),
    ("notIn", ["DB-01", "web-server-02"], {"upper", "blank", "wild", "missing"}),
    ("isNull", _NO_VALUE, {"blank", "missing"}),
    ("isNotNull", _NO_VALUE, {"upper", "lower", "db", "wild"}),
]


@pytest.mark.parametrize("field", DEVICE_TEXT_FIELDS + HARDWARE_TEXT_FIELDS + NETWORK_TEXT_FIELDS)
@pytest.mark.parametrize(
    ("operator", "value", "expected"), TEXT_CASES, ids=[f"{op}-{value}" for op, value, _ in TEXT_CASES]
)
def test_text_operators_ignore_case_and_treat_empty_and_missing_as_no_value(field, operator, value, expected):
    fleet = text_fleet(field)
    assert matching(valid(cond(field, operator, value)), fleet) == expected


def test_an_interface_condition_holds_when_any_interface_satisfies_it():
    site = factories.site()
    fleet = {label: factories.device(site) for label in ("two", "blank", "none")}
    DeviceNetworkInterface.objects.bulk_create(
        DeviceNetworkInterface(
            device=fleet[label], org_id=site.org_id, interface_name=name, ip_address=ip, mac_address=mac
        )
        for label, name, ip, mac in [
            ("two", "eth0", "10.0.0.1", "AA:BB:CC:DD:EE:01"),
            ("two", "wlan0", "192.168.1.5", ""),
            ("blank", "eth0", "", ""),
        ]
    )

    assert matching(cond("network.ipAddress", "equals", "10.0.0.1"), fleet) == {"two"}
    assert matching(cond("network.ipAddress", "startsWith", "192.168."), fleet) == {"two"}
    # A negative operator: no interface satisfies the positive one.
    assert matching(cond("network.ipAddress", "notEquals", "10.0.0.1"), fleet) == {"blank", "none"}
    assert matching(cond("network.ipAddress", "notEquals", "192.168.1.5"), fleet) == {"blank", "none"}
    assert matching(cond("network.ipAddress", "notEquals", "172.16.0.1"), fleet) == {"two", "blank", "none"}
    assert matching(cond("network.ipAddress", "notContains", "10."), fleet) == {"blank", "none"}
    assert matching(cond("network.macAddress", "equals", "aa:bb:cc:dd:ee:01"), fleet) == {"two"}
    # One interface with an address is enough to have one.
    assert matching(cond("network.macAddress", "isNotNull"), fleet) == {"two"}
    assert matching(cond("network.macAddress", "isNull"), fleet) == {"blank", "none"}


# Numbers: hardware columns, any disk, the latest telemetry sample.

NUMBER_FIELDS = [
    "hardware.cpuCores",
    "hardware.ramTotalMb",
    "hardware.diskTotalGb",
    "disks.usedPercent",
    "metrics.cpuPercent",
    "metrics.ramPercent",
    "metrics.diskPercent",
]
# "null" has a row whose value is NULL (a hardware summary without it, a disk of unknown use, a latest sample
# without the metric); "missing" has no row at all.
NUMBER_VALUES = {"four": 4, "eight": 8, "sixteen": 16, "null": None}
NUMBER_LABELS = {*NUMBER_VALUES, "missing"}


def number_fleet(field_name: str) -> dict[str, Device]:
    field = FIELDS[field_name]
    site = factories.site()
    fleet = {label: factories.device(site) for label in NUMBER_LABELS}
    for label, number in NUMBER_VALUES.items():
        device = fleet[label]
        if field.source == "hardware":
            DeviceHardware.objects.create(device=device, org_id=device.org_id, **{field.column: number})
        elif field.source == "disks":
            DeviceDisk.objects.create(device=device, org_id=device.org_id, mount_point="/", used_percent=number)
        else:
            # An older sample that would satisfy every comparison below: only the latest one counts.
            DeviceTelemetry.objects.bulk_create(
                [
                    DeviceTelemetry(
                        device=device, org_id=device.org_id, ts=NOW - dt.timedelta(hours=1), **{field.column: 100}
                    ),
                    DeviceTelemetry(
                        device=device, org_id=device.org_id, ts=NOW - dt.timedelta(minutes=1), **{field.column: number}
                    ),
                ]
            )
    return fleet


NUMBER_CASES = [
    ("equals", 8, {"eight"}),
    ("equals", 8.0, {"eight"}),
    ("notEquals", 8, NUMBER_LABELS - {"eight"}),
    ("greaterThan", 8, {"sixteen"}),
    ("greaterThan", 7.5, {"eight", "sixteen"}),
    ("greaterThanOrEquals", 8, {"eight", "sixteen"}),
    ("lessThan", 8, {"four"}),
    ("lessThan", 8.5, {"four", "eight"}),
    ("lessThanOrEquals", 8, {"four", "eight"}),
    ("between", {"from": 4, "to": 8}, {"four", "eight"}),
    ("between", {"from": 4.5, "to": 15.9}, {"eight"}),
    ("between", {"from": 5, "to": 5}, set()),
    ("isNull", _NO_VALUE, {"null", "missing"}),
    ("isNotNull", _NO_VALUE, {"four", "eight", "sixteen"}),
]


@pytest.mark.parametrize("field", NUMBER_FIELDS)
@pytest.mark.parametrize(
    ("operator", "value", "expected"), NUMBER_CASES, ids=[f"{op}-{value}" for op, value, _ in NUMBER_CASES]
)
def test_number_operators_compare_the_value_and_treat_missing_rows_as_no_value(field, operator, value, expected):
    fleet = number_fleet(field)
    assert matching(valid(cond(field, operator, value)), fleet) == expected


def test_a_disk_condition_holds_when_any_disk_satisfies_it():
    site = factories.site()
    fleet = {label: factories.device(site) for label in ("mixed", "low", "unknown", "none")}
    DeviceDisk.objects.bulk_create(
        DeviceDisk(device=fleet[label], org_id=site.org_id, mount_point=mount, used_percent=used)
        for label, mount, used in [("mixed", "C:", 50), ("mixed", "D:", 95.5), ("low", "/", 10), ("unknown", "/", None)]
    )

    assert matching(cond("disks.usedPercent", "greaterThan", 90), fleet) == {"mixed"}
    assert matching(cond("disks.usedPercent", "lessThan", 60), fleet) == {"mixed", "low"}
    assert matching(cond("disks.usedPercent", "notEquals", 50), fleet) == {"low", "unknown", "none"}
    assert matching(cond("disks.usedPercent", "between", {"from": 40, "to": 60}), fleet) == {"mixed"}
    # One disk must lie inside the range; 50 and 95.5 on two disks do not make 60..90.
    assert matching(cond("disks.usedPercent", "between", {"from": 60, "to": 90}), fleet) == set()
    assert matching(cond("disks.usedPercent", "isNull"), fleet) == {"unknown", "none"}
    assert matching(cond("disks.usedPercent", "isNotNull"), fleet) == {"mixed", "low"}


def test_an_integer_column_is_not_rounded_for_a_fractional_bound():
    site = factories.site()
    fleet = {label: factories.device(site) for label in ("three", "four")}
    for label, cores in (("three", 3), ("four", 4)):
        DeviceHardware.objects.create(device=fleet[label], org_id=site.org_id, cpu_cores=cores)

    assert matching(cond("hardware.cpuCores", "lessThan", 3.5), fleet) == {"three"}
    assert matching(cond("hardware.cpuCores", "lessThanOrEquals", 3.9), fleet) == {"three"}
    assert matching(cond("hardware.cpuCores", "equals", 3.5), fleet) == set()
    assert matching(cond("hardware.cpuCores", "greaterThan", 10**12), fleet) == set()


# Enums.


@pytest.fixture
def enum_fleet():
    first = factories.site()
    second = factories.site(first.org)
    fleet = {
        "a": factories.device(first, status="online", os_type="linux"),
        "b": factories.device(first, status="offline", os_type="windows"),
        "c": factories.device(second, status="maintenance", os_type="macos"),
    }
    return fleet, {"first": str(first.id), "second": str(second.id)}


ENUM_CASES = [
    ("status", "equals", "online", {"a"}),
    ("status", "notEquals", "online", {"b", "c"}),
    ("status", "in", ["online", "offline"], {"a", "b"}),
    ("status", "notIn", ["online"], {"b", "c"}),
    ("status", "equals", "quarantined", set()),
    ("osType", "equals", "windows", {"b"}),
    ("osType", "notEquals", "windows", {"a", "c"}),
    ("osType", "in", ["macos"], {"c"}),
    ("osType", "notIn", ["windows", "macos"], {"a"}),
    ("siteId", "equals", "first", {"a", "b"}),
    ("siteId", "notEquals", "first", {"c"}),
    ("siteId", "in", ["second"], {"c"}),
    ("siteId", "notIn", ["first", "second"], set()),
    ("siteId", "equals", str(uuid.UUID(int=1)), set()),
]


@pytest.mark.parametrize(("field", "operator", "value", "expected"), ENUM_CASES)
def test_enum_operators_compare_exact_values(enum_fleet, field, operator, value, expected):
    fleet, site_ids = enum_fleet
    value = [site_ids.get(item, item) for item in value] if isinstance(value, list) else site_ids.get(value, value)
    assert matching(valid(cond(field, operator, value)), fleet) == expected


# Date-times.

DATETIME_LABELS = {"recent", "hours", "old", "never"}


def datetime_fleet(field_name: str) -> dict[str, Device]:
    column = FIELDS[field_name].column
    site = factories.site()
    moments = {
        "recent": NOW - dt.timedelta(minutes=10),
        "hours": NOW - dt.timedelta(hours=5),
        "old": NOW - dt.timedelta(days=3),
        "never": None,
    }
    return {label: factories.device(site, **{column: moment}) for label, moment in moments.items()}


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


DATETIME_CASES = [
    ("before", iso(NOW - dt.timedelta(days=1)), {"old"}),
    ("before", iso(NOW - dt.timedelta(hours=5)), {"old"}),  # strict
    ("after", iso(NOW - dt.timedelta(days=1)), {"recent", "hours"}),
    ("after", "2025-06-01T09:00:00+02:00", {"recent"}),  # 07:00 UTC, exactly "hours": strict
    ("before", "2025-05-31T12:00:00", {"old"}),  # no offset: UTC
    ("after", "2025-05-31", {"recent", "hours"}),  # a bare date: its midnight UTC
    (
        "between",
        {"from": iso(NOW - dt.timedelta(hours=5)), "to": iso(NOW - dt.timedelta(minutes=10))},
        {"recent", "hours"},
    ),
    ("between", {"from": iso(NOW - dt.timedelta(days=4)), "to": iso(NOW - dt.timedelta(hours=6))}, {"old"}),
    ("withinLast", {"amount": 30, "unit": "minutes"}, {"recent"}),
    ("withinLast", {"amount": 5, "unit": "hours"}, {"recent", "hours"}),  # at the boundary: included
    ("withinLast", {"amount": 1, "unit": "days"}, {"recent", "hours"}),
    ("withinLast", {"amount": 1, "unit": "weeks"}, {"recent", "hours", "old"}),
    ("notWithinLast", {"amount": 1, "unit": "hours"}, {"hours", "old", "never"}),
    ("notWithinLast", {"amount": 5, "unit": "hours"}, {"old", "never"}),
    ("notWithinLast", {"amount": 2, "unit": "weeks"}, {"never"}),
    ("isNull", _NO_VALUE, {"never"}),
    ("isNotNull", _NO_VALUE, {"recent", "hours", "old"}),
]


@pytest.mark.parametrize("field", ["lastSeenAt", "enrolledAt"])
@pytest.mark.parametrize(
    ("operator", "value", "expected"), DATETIME_CASES, ids=[f"{op}-{value}" for op, value, _ in DATETIME_CASES]
)
def test_datetime_operators_compare_with_the_given_moment_and_now(field, operator, value, expected):
    fleet = datetime_fleet(field)
    assert matching(valid(cond(field, operator, value)), fleet) == expected


def test_within_last_is_measured_from_the_now_given_to_the_compiler():
    fleet = datetime_fleet("lastSeenAt")
    rule = cond("lastSeenAt", "withinLast", {"amount": 1, "unit": "hours"})
    assert matching(rule, fleet, now=NOW) == {"recent"}
    assert matching(rule, fleet, now=NOW - dt.timedelta(hours=4, minutes=30)) == {"hours", "recent"}
    assert matching(rule, fleet, now=NOW + dt.timedelta(hours=2)) == set()


# daysSinceLastSeen.


@pytest.fixture
def seen_fleet():
    site = factories.site()
    ages = {
        "half_day": dt.timedelta(hours=12),
        "one_day": dt.timedelta(days=1),
        "day_and_half": dt.timedelta(hours=36),
        "two_and_half": dt.timedelta(hours=60),
        "ten_days": dt.timedelta(days=10),
        "future": -dt.timedelta(hours=1),  # a clock running ahead: -1 days
    }
    fleet = {label: factories.device(site, last_seen_at=NOW - age) for label, age in ages.items()}
    fleet["never"] = factories.device(site, last_seen_at=None)
    days = {label: math.floor(age / dt.timedelta(days=1)) for label, age in ages.items()}
    return fleet, days


DAYS_CASES = [
    ("equals", 1, {"one_day", "day_and_half"}),
    ("equals", 0, {"half_day"}),
    ("notEquals", 1, {"half_day", "two_and_half", "ten_days", "future", "never"}),
    ("greaterThan", 1, {"two_and_half", "ten_days"}),
    ("greaterThanOrEquals", 1, {"one_day", "day_and_half", "two_and_half", "ten_days"}),
    ("lessThan", 1, {"half_day", "future"}),
    ("lessThanOrEquals", 1, {"half_day", "one_day", "day_and_half", "future"}),
    ("between", {"from": 1, "to": 2}, {"one_day", "day_and_half", "two_and_half"}),
    ("isNull", _NO_VALUE, {"never"}),
    ("isNotNull", _NO_VALUE, {"half_day", "one_day", "day_and_half", "two_and_half", "ten_days", "future"}),
]


@pytest.mark.parametrize(("operator", "value", "expected"), DAYS_CASES)
def test_days_since_last_seen_counts_whole_days_and_never_seen_has_no_value(seen_fleet, operator, value, expected):
    fleet, _ = seen_fleet
    assert matching(valid(cond("daysSinceLastSeen", operator, value)), fleet) == expected


def test_days_since_last_seen_agrees_with_floor_of_elapsed_days_for_every_bound(seen_fleet):
    fleet, days = seen_fleet
    comparisons = {
        "equals": lambda d, n: d == n,
        "notEquals": lambda d, n: d != n,
        "greaterThan": lambda d, n: d > n,
        "greaterThanOrEquals": lambda d, n: d >= n,
        "lessThan": lambda d, n: d < n,
        "lessThanOrEquals": lambda d, n: d <= n,
    }
    for n in range(12):
        for operator, holds in comparisons.items():
            expected = {label for label, d in days.items() if holds(d, n)}
            if operator == "notEquals":
                expected.add("never")
            assert matching(cond("daysSinceLastSeen", operator, n), fleet) == expected, (operator, n)
        for high in range(n, 12):
            expected = {label for label, d in days.items() if n <= d <= high}
            assert matching(cond("daysSinceLastSeen", "between", {"from": n, "to": high}), fleet) == expected


# Tags.


@pytest.fixture
def tag_fleet():
    site = factories.site()
    tags = {"prod_web": ["prod", "web"], "prod": ["prod"], "capital": ["Prod"], "none": [], "odd": ["it's 100%_sure"]}
    return {label: factories.device(site, tags=values) for label, values in tags.items()}


TAG_CASES = [
    ("hasAny", ["web", "db"], {"prod_web"}),
    ("hasAny", ["prod"], {"prod_web", "prod"}),
    ("hasAny", ["PROD"], set()),  # case-sensitive
    ("hasAll", ["prod", "web"], {"prod_web"}),
    ("hasAll", ["prod"], {"prod_web", "prod"}),
    ("hasAll", ["prod", "db"], set()),
    ("hasAny", ["it's 100%_sure"], {"odd"}),
    ("hasAny", ["%"], set()),
    ("isEmpty", _NO_VALUE, {"none"}),
    ("isNotEmpty", _NO_VALUE, {"prod_web", "prod", "capital", "odd"}),
]


@pytest.mark.parametrize(("operator", "value", "expected"), TAG_CASES)
def test_tag_operators_compare_whole_tags_exactly(tag_fleet, operator, value, expected):
    assert matching(valid(cond("tags", operator, value)), tag_fleet) == expected


# Software.


@pytest.fixture
def software_fleet():
    site = factories.site()
    programs = {
        "chrome_zip": ["Google Chrome", "7-Zip"],
        "firefox": ["Mozilla Firefox"],
        "none": [],
        "odd": ["O'Brien's 100%_Tool\\"],
    }
    fleet = {label: factories.device(site) for label in programs}
    DeviceSoftware.objects.bulk_create(
        DeviceSoftware(device=fleet[label], org_id=site.org_id, name=name)
        for label, names in programs.items()
        for name in names
    )
    return fleet


SOFTWARE_CASES = [
    ("software.installed", "equals", "google chrome", {"chrome_zip"}),
    ("software.installed", "equals", "Google", set()),
    ("software.installed", "contains", "ZIP", {"chrome_zip"}),
    ("software.installed", "contains", "o", {"chrome_zip", "firefox", "odd"}),
    ("software.installed", "in", ["mozilla firefox", "Opera"], {"firefox"}),
    ("software.installed", "contains", "%_", {"odd"}),
    ("software.installed", "contains", "_", {"odd"}),
    ("software.installed", "equals", "O'Brien's 100%_Tool\\", {"odd"}),
    ("software.notInstalled", "equals", "Google Chrome", {"firefox", "none", "odd"}),
    ("software.notInstalled", "contains", "fire", {"chrome_zip", "none", "odd"}),
    ("software.notInstalled", "contains", "o", {"none"}),
    ("software.notInstalled", "in", ["7-zip", "MOZILLA FIREFOX"], {"none", "odd"}),
]


@pytest.mark.parametrize(("field", "operator", "value", "expected"), SOFTWARE_CASES)
def test_software_conditions_look_for_an_installed_program_by_name(software_fleet, field, operator, value, expected):
    assert matching(valid(cond(field, operator, value)), software_fleet) == expected


# Groups.


def test_groups_combine_their_conditions_with_and_and_or(enum_fleet):
    fleet, _ = enum_fleet
    online, linux, windows, macos = (
        cond("status", "equals", "online"),
        cond("osType", "equals", "linux"),
        cond("osType", "equals", "windows"),
        cond("osType", "equals", "macos"),
    )
    assert matching(all_of(online, linux), fleet) == {"a"}
    assert matching(all_of(online, windows), fleet) == set()
    assert matching(any_of(online, windows), fleet) == {"a", "b"}
    assert matching(any_of(all_of(cond("status", "equals", "offline"), windows), macos), fleet) == {"b", "c"}
    assert matching(all_of(any_of(linux, windows), cond("status", "notEquals", "online")), fleet) == {"b"}
    assert matching(any_of(windows), fleet) == {"b"}


def test_groups_nested_five_deep_evaluate():
    site = factories.site()
    fleet = {"web": factories.device(site, hostname="web-1"), "db": factories.device(site, hostname="db-1")}
    rule = cond("hostname", "startsWith", "web")
    for _ in range(MAX_DEPTH):
        rule = all_of(rule)
    assert matching(valid(rule), fleet) == {"web"}


def test_conditions_of_every_source_combine_in_one_query():
    site = factories.site()
    device = factories.device(site, last_seen_at=NOW - dt.timedelta(minutes=5), tags=["prod"])
    factories.device(site, last_seen_at=None)
    DeviceHardware.objects.create(device=device, org_id=device.org_id, manufacturer="Dell Inc.", cpu_cores=8)
    DeviceNetworkInterface.objects.create(
        device=device, org_id=device.org_id, interface_name="eth0", ip_address="10.0.0.7"
    )
    DeviceDisk.objects.create(device=device, org_id=device.org_id, mount_point="/", used_percent=93)
    DeviceSoftware.objects.create(device=device, org_id=device.org_id, name="Google Chrome")
    DeviceTelemetry.objects.bulk_create([DeviceTelemetry(device=device, org_id=device.org_id, ts=NOW, cpu_percent=75)])
    rule = all_of(
        cond("osType", "equals", "linux"),
        cond("tags", "hasAny", ["prod"]),
        any_of(cond("hardware.manufacturer", "contains", "dell"), cond("hardware.cpuCores", "greaterThan", 64)),
        cond("network.ipAddress", "startsWith", "10."),
        cond("disks.usedPercent", "greaterThan", 90),
        cond("metrics.cpuPercent", "between", {"from": 50, "to": 80}),
        cond("software.installed", "equals", "google chrome"),
        cond("software.notInstalled", "contains", "firefox"),
        cond("daysSinceLastSeen", "lessThan", 1),
        cond("lastSeenAt", "withinLast", {"amount": 1, "unit": "hours"}),
        cond("hostname", "matches", "^host-"),
    )
    queryset = Device.objects.filter(compile_rule(valid(rule), now=NOW), org_id=site.org_id)

    with CaptureQueriesContext(connection) as queries:
        ids = list(queryset.values_list("id", flat=True))

    assert ids == [device.id]
    assert len(queries.captured_queries) == 1


# Values that look like SQL or LIKE patterns.

INJECTION_HOSTNAMES = {
    "wild": "50%_off\\",
    "decoy_digits": "500-off",
    "decoy_letter": "50x-off",
    "quote": "O'Brien",
    "drop": "'; DROP TABLE devices; --",
    "or_true": "' OR '1'='1",
    "backslash": "C:\\temp",
    "plain": "plain",
}

INJECTION_CASES = [
    ("contains", "%_", {"wild"}),
    ("contains", "_", {"wild"}),
    ("contains", "%", {"wild"}),
    ("startsWith", "50%", {"wild"}),
    ("endsWith", "\\", {"wild"}),
    ("endsWith", "_off\\", {"wild"}),
    ("contains", "\\", {"wild", "backslash"}),
    ("equals", "50%_off\\", {"wild"}),
    ("equals", "'; DROP TABLE devices; --", {"drop"}),
    ("equals", "' OR '1'='1", {"or_true"}),
    ("contains", "' OR '", {"or_true"}),
    ("contains", "'", {"quote", "drop", "or_true"}),
    ("in", ["' OR '1'='1", "o'brien", "%"], {"or_true", "quote"}),
    ("matches", "^O'", {"quote"}),
    ("notEquals", "' OR '1'='1", set(INJECTION_HOSTNAMES) - {"or_true"}),
    ("notContains", "%", set(INJECTION_HOSTNAMES) - {"wild"}),
]


@pytest.mark.parametrize(("operator", "value", "expected"), INJECTION_CASES)
def test_quotes_wildcards_and_sql_in_values_match_literally(operator, value, expected):
    site = factories.site()
    fleet = {label: factories.device(site, hostname=hostname) for label, hostname in INJECTION_HOSTNAMES.items()}
    before = Device.objects.count()

    assert matching(valid(cond("hostname", operator, value)), fleet) == expected
    assert Device.objects.count() == before


def test_sql_in_software_names_and_tags_matches_literally():
    site = factories.site()
    fleet = {label: factories.device(site) for label in ("drop", "plain")}
    DeviceSoftware.objects.create(device=fleet["drop"], org_id=site.org_id, name="'; DROP TABLE devices; --")
    DeviceSoftware.objects.create(device=fleet["plain"], org_id=site.org_id, name="Firefox")
    Device.objects.filter(pk=fleet["drop"].pk).update(tags=["' OR '1'='1"])
    before = Device.objects.count()

    assert matching(cond("software.installed", "equals", "'; DROP TABLE devices; --"), fleet) == {"drop"}
    assert matching(cond("software.installed", "contains", "' OR '1'='1"), fleet) == set()
    assert matching(cond("software.notInstalled", "in", ["'; DROP TABLE devices; --"]), fleet) == {"plain"}
    assert matching(cond("tags", "hasAny", ["' OR '1'='1"]), fleet) == {"drop"}
    assert matching(cond("tags", "hasAll", ["'; DROP TABLE devices; --"]), fleet) == set()
    assert Device.objects.count() == before


# Validation.

GOOD = cond("hostname", "equals", "web")
BAD_STATUS = (
    "'sleeping' is not a valid status; expected one of: online, offline, maintenance, decommissioned, quarantined"
)

INVALID_RULES = [
    pytest.param(
        "hostname",
        {"": ["a rule is an object: a condition {field, operator, value} or a group {operator, conditions}"]},
        id="not-an-object",
    ),
    pytest.param(
        None,
        {"": ["a rule is an object: a condition {field, operator, value} or a group {operator, conditions}"]},
        id="null",
    ),
    pytest.param(
        {}, {"": ["expected a condition {field, operator, value} or a group {operator, conditions}"]}, id="empty-object"
    ),
    pytest.param(
        all_of(GOOD, [GOOD]),
        {
            "conditions[1]": [
                "a rule is an object: a condition {field, operator, value} or a group {operator, conditions}"
            ]
        },
        id="nested-not-an-object",
    ),
    pytest.param(cond("hostnme", "equals", "web"), {"field": ["unknown field 'hostnme'"]}, id="unknown-field"),
    pytest.param({"operator": "equals", "value": "web"}, {"field": ["a condition needs a field"]}, id="missing-field"),
    pytest.param(cond(7, "equals", "web"), {"field": ["a field name is text, not a number"]}, id="field-not-text"),
    pytest.param(
        {"field": "hostname", "value": "web"}, {"operator": ["a condition needs an operator"]}, id="missing-operator"
    ),
    pytest.param(cond("hostname", "likes", "web"), {"operator": ["unknown operator 'likes'"]}, id="unknown-operator"),
    pytest.param(
        all_of(GOOD, cond("hardware.cpuCores", "before", "2025-01-01")),
        {"conditions[1].operator": ["'before' does not apply to a number field"]},
        id="operator-not-for-number",
    ),
    pytest.param(
        all_of(GOOD, any_of(cond("status", "contains", "on"))),
        {"conditions[1].conditions[0].operator": ["'contains' does not apply to an enum field"]},
        id="operator-not-for-enum",
    ),
    pytest.param(
        cond("tags", "equals", "prod"),
        {"operator": ["'equals' does not apply to an array field"]},
        id="operator-not-for-array",
    ),
    pytest.param(
        cond("lastSeenAt", "greaterThan", 3),
        {"operator": ["'greaterThan' does not apply to a datetime field"]},
        id="operator-not-for-datetime",
    ),
    pytest.param(
        cond("software.installed", "startsWith", "Google"),
        {"operator": ["'startsWith' does not apply to software.installed; use equals, contains or in"]},
        id="operator-not-for-software",
    ),
    pytest.param(
        cond("software.notInstalled", "isNull"),
        {"operator": ["'isNull' does not apply to software.notInstalled; use equals, contains or in"]},
        id="isnull-not-for-software",
    ),
    pytest.param(cond("hostname", "equals", 5), {"value": ["expected text, got a number"]}, id="number-for-text"),
    pytest.param(
        cond("hostname", "equals", ""),
        {"value": ["the value must not be empty (isNull finds devices without a value)"]},
        id="empty-text",
    ),
    pytest.param(
        cond("hostname", "contains", "x" * 1001), {"value": ["text is at most 1,000 characters"]}, id="text-too-long"
    ),
    pytest.param(
        cond("hostname", "equals", "a\x00b"), {"value": ["text must not contain the NUL character"]}, id="nul-in-text"
    ),
    pytest.param(
        cond("hostname", "in", "web"), {"value": ["'in' needs a list of values, got text"]}, id="in-not-a-list"
    ),
    pytest.param(cond("hostname", "in", []), {"value": ["'in' needs at least one value"]}, id="in-empty-list"),
    pytest.param(
        cond("tags", "hasAny", ["a"] * 1001), {"value": ["a list holds at most 1,000 values"]}, id="list-too-long"
    ),
    pytest.param(
        cond("hostname", "notIn", ["a", 2, None]),
        {"value[1]": ["expected text, got a number"], "value[2]": ["expected text, got null"]},
        id="list-item-not-text",
    ),
    pytest.param(
        cond("hardware.cpuCores", "greaterThan", "4"), {"value": ["expected a number, got text"]}, id="text-for-number"
    ),
    pytest.param(
        cond("hardware.cpuCores", "equals", True),
        {"value": ["expected a number, got true/false"]},
        id="boolean-for-number",
    ),
    pytest.param(
        cond("hardware.ramTotalMb", "lessThan", float("inf")),
        {"value": ["a number lies between -1,000,000,000,000,000 and 1,000,000,000,000,000"]},
        id="infinite-number",
    ),
    pytest.param(
        cond("hardware.ramTotalMb", "lessThan", 10**16),
        {"value": ["a number lies between -1,000,000,000,000,000 and 1,000,000,000,000,000"]},
        id="huge-number",
    ),
    pytest.param(
        cond("daysSinceLastSeen", "greaterThan", 1.5),
        {"value": ["daysSinceLastSeen is a whole number of days from 0 to 100,000"]},
        id="fractional-days",
    ),
    pytest.param(
        cond("daysSinceLastSeen", "lessThan", -1),
        {"value": ["daysSinceLastSeen is a whole number of days from 0 to 100,000"]},
        id="negative-days",
    ),
    pytest.param(
        cond("daysSinceLastSeen", "between", {"from": -1, "to": 3}),
        {"value.from": ["daysSinceLastSeen is a whole number of days from 0 to 100,000"]},
        id="negative-days-in-between",
    ),
    pytest.param(cond("hostname", "equals"), {"value": ["'equals' needs a value"]}, id="missing-value"),
    pytest.param(cond("hostname", "equals", None), {"value": ["'equals' needs a value"]}, id="null-value"),
    pytest.param(cond("hostname", "isNull", "x"), {"value": ["'isNull' takes no value"]}, id="value-for-isnull"),
    pytest.param(cond("tags", "isEmpty", []), {"value": ["'isEmpty' takes no value"]}, id="value-for-isempty"),
    pytest.param(
        cond("status", "equals", "sleeping"),
        {"value": [BAD_STATUS]},
        id="bad-status",
    ),
    pytest.param(
        cond("osType", "in", ["linux", "Windows"]),
        {"value[1]": ["'Windows' is not a valid osType; expected one of: windows, macos, linux"]},
        id="bad-os-type-in-list",
    ),
    pytest.param(
        cond("siteId", "equals", "site-1"), {"value": ["'site-1' is not a site id (a UUID)"]}, id="bad-site-id"
    ),
    pytest.param(
        cond("lastSeenAt", "before", "yesterday"),
        {"value": ["expected an ISO-8601 date and time such as 2025-05-01T08:00:00Z, got 'yesterday'"]},
        id="bad-datetime",
    ),
    pytest.param(
        cond("lastSeenAt", "before", "2025-13-01T00:00:00Z"),
        {"value": ["expected an ISO-8601 date and time such as 2025-05-01T08:00:00Z, got '2025-13-01T00:00:00Z'"]},
        id="impossible-datetime",
    ),
    pytest.param(
        cond("lastSeenAt", "after", 1717243200),
        {"value": ["expected an ISO-8601 date and time such as 2025-05-01T08:00:00Z, got a number"]},
        id="epoch-datetime",
    ),
    pytest.param(
        cond("lastSeenAt", "withinLast", {"amount": 3, "unit": "months"}),
        {"value.unit": ["the unit is one of minutes, hours, days, weeks, not 'months'"]},
        id="bad-unit",
    ),
    pytest.param(
        cond("lastSeenAt", "withinLast", {"amount": 0, "unit": "days"}),
        {"value.amount": ["the amount is a whole number from 1 to 100,000"]},
        id="zero-amount",
    ),
    pytest.param(
        cond("enrolledAt", "notWithinLast", {"amount": 1.5, "unit": "days"}),
        {"value.amount": ["the amount is a whole number from 1 to 100,000"]},
        id="fractional-amount",
    ),
    pytest.param(
        cond("enrolledAt", "notWithinLast", {"amount": 100_001, "unit": "weeks"}),
        {"value.amount": ["the amount is a whole number from 1 to 100,000"]},
        id="huge-amount",
    ),
    pytest.param(
        cond("lastSeenAt", "withinLast", {"unit": "days"}),
        {"value.amount": ["the amount is a whole number from 1 to 100,000"]},
        id="missing-amount",
    ),
    pytest.param(
        cond("lastSeenAt", "withinLast", 3),
        {
            "value": [
                '\'withinLast\' needs an object {amount, unit} such as {"amount": 2, "unit": "hours"}, got a number'
            ]
        },
        id="duration-not-an-object",
    ),
    pytest.param(
        cond("lastSeenAt", "withinLast", {"amount": 3, "unit": "days", "ago": True}),
        {"value.ago": ["unknown key 'ago'"]},
        id="unknown-key-in-duration",
    ),
    pytest.param(
        cond("hardware.cpuCores", "between", {"from": 8, "to": 4}),
        {"value": ["'from' must not be greater than 'to'"]},
        id="from-above-to",
    ),
    pytest.param(
        cond("lastSeenAt", "between", {"from": "2025-06-02T00:00:00Z", "to": "2025-06-01T00:00:00Z"}),
        {"value": ["'from' must not be after 'to'"]},
        id="from-after-to",
    ),
    pytest.param(
        cond("hardware.cpuCores", "between", {"from": 4}),
        {"value.to": ["'between' needs a 'to'"]},
        id="between-missing-to",
    ),
    pytest.param(
        cond("hardware.cpuCores", "between", [4, 8]),
        {"value": ['\'between\' needs an object {"from": ..., "to": ...}, got a list']},
        id="between-not-an-object",
    ),
    pytest.param(
        {"operator": "AND", "conditions": []},
        {"conditions": ["a group needs at least one condition"]},
        id="empty-conditions",
    ),
    pytest.param(
        {"operator": "AND", "conditions": GOOD},
        {"conditions": ["a group needs a list of conditions"]},
        id="conditions-not-a-list",
    ),
    pytest.param(
        {"operator": "AND"}, {"conditions": ["a group needs a list of conditions"]}, id="group-without-conditions"
    ),
    pytest.param(
        {"operator": "AND", "conditions": [GOOD] * 101},
        {"conditions": ["a group holds at most 100 conditions"]},
        id="group-too-large",
    ),
    pytest.param(
        {"operator": "XOR", "conditions": [GOOD]},
        {"operator": ["a group's operator is AND or OR, not 'XOR'"]},
        id="bad-group-operator",
    ),
    pytest.param(
        all_of(GOOD, {"operator": "and", "conditions": [GOOD]}),
        {"conditions[1].operator": ["a group's operator is AND or OR, not 'and'"]},
        id="lowercase-group-operator",
    ),
    pytest.param(
        {"conditions": [GOOD]}, {"operator": ["a group needs an operator: AND or OR"]}, id="group-without-operator"
    ),
    pytest.param(
        all_of({**GOOD, "negate": True}),
        {"conditions[0].negate": ["unknown key 'negate'"]},
        id="unknown-key-in-condition",
    ),
    pytest.param({**all_of(GOOD), "name": "x"}, {"name": ["unknown key 'name'"]}, id="unknown-key-in-group"),
    pytest.param(
        all_of(GOOD, {**GOOD, "conditions": [GOOD]}),
        {"conditions[1]": ["a node is either a condition (field) or a group (conditions), not both"]},
        id="condition-and-group",
    ),
]


@pytest.mark.parametrize(("rule", "expected"), INVALID_RULES)
def test_a_bad_rule_is_refused_with_the_path_and_reason(rule, expected):
    assert errors_of(rule) == expected


def test_every_error_of_a_rule_is_reported():
    rule = {
        "operator": "AND",
        "conditions": [
            cond("hostnme", "equals", "web"),
            cond("hardware.cpuCores", "before", "2025-01-01"),
            any_of(cond("status", "equals", "sleeping"), cond("hostname", "matches", "(")),
            {"operator": "NOR", "conditions": []},
        ],
    }
    assert errors_of(rule) == {
        "conditions[0].field": ["unknown field 'hostnme'"],
        "conditions[1].operator": ["'before' does not apply to a number field"],
        "conditions[2].conditions[0].value": [BAD_STATUS],
        "conditions[2].conditions[1].value": ["not a valid regular expression: parentheses () not balanced"],
        "conditions[3].operator": ["a group's operator is AND or OR, not 'NOR'"],
        "conditions[3].conditions": ["a group needs at least one condition"],
    }


def nested(depth: int) -> dict:
    rule = GOOD
    for _ in range(depth):
        rule = all_of(rule)
    return rule


def test_groups_nest_five_levels_deep_and_no_deeper():
    validate_rule(nested(MAX_DEPTH))
    assert errors_of(nested(MAX_DEPTH + 1)) == {
        "conditions[0].conditions[0].conditions[0].conditions[0].conditions[0]": ["groups nest at most 5 levels deep"]
    }


def test_a_very_deep_rule_is_refused_without_exhausting_the_stack():
    assert list(errors_of(nested(5_000)).values()) == [["groups nest at most 5 levels deep"]]


def test_a_rule_holds_at_most_a_thousand_conditions():
    eleven_full_groups = all_of(*[all_of(*[GOOD] * 100) for _ in range(11)])
    assert errors_of(eleven_full_groups) == {"": ["a rule holds at most 1,000 conditions"]}
    validate_rule(all_of(*[all_of(*[GOOD] * 100) for _ in range(10)]))


def test_a_regular_expression_is_at_most_250_characters_and_refused_before_any_query(django_assert_num_queries):
    validate_rule(cond("hostname", "matches", "a" * MAX_REGEX_LENGTH))
    with django_assert_num_queries(0):
        errors = errors_of(cond("hostname", "matches", "a" * (MAX_REGEX_LENGTH + 1)))
    assert errors == {"value": ["a regular expression is at most 250 characters"]}


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(", "parentheses () not balanced"),
        ("[a-", "brackets [] not balanced"),
        ("a{3,1}", "invalid repetition count(s)"),
        ("(?P<name>x)", "invalid embedded option"),  # Python's named groups are not PostgreSQL's
    ],
)
def test_a_regular_expression_postgresql_refuses_is_reported_with_its_reason(pattern, reason):
    assert errors_of(cond("network.ipAddress", "matches", pattern)) == {
        "value": [f"not a valid regular expression: {reason}"]
    }
    # The failed check ran in a savepoint: had it aborted the test's transaction, this query would raise.
    assert not Device.objects.filter(hostname="after the failed check").exists()


def test_postgresql_regular_expressions_python_would_refuse_are_accepted():
    site = factories.site()
    fleet = {"word": factories.device(site, hostname="db web"), "joined": factories.device(site, hostname="dbweb")}
    rule = valid(cond("hostname", "matches", r"\mweb\M"))  # PostgreSQL's word boundaries
    assert matching(rule, fleet) == {"word"}


def test_valid_rules_pass_validation():
    for rule in [
        GOOD,
        cond("hostname", "isNull", None),
        cond("tags", "isNotEmpty"),
        cond("daysSinceLastSeen", "between", {"from": 0, "to": 0}),
        cond("daysSinceLastSeen", "equals", 3.0),
        cond("lastSeenAt", "between", {"from": "2025-06-01", "to": "2025-06-01T00:00:00Z"}),
        cond("siteId", "in", [str(uuid.uuid4())]),
        cond("metrics.cpuPercent", "greaterThanOrEquals", -5.5),
        cond("software.notInstalled", "in", ["Google Chrome"]),
        cond("hostname", "matches", "(?i)^web-[0-9]+$"),
    ]:
        validate_rule(rule)


def test_compile_refuses_an_invalid_rule():
    with pytest.raises(RuleError) as caught:
        compile_rule(cond("hostnme", "equals", "web"), now=NOW)
    assert caught.value.errors == {"field": ["unknown field 'hostnme'"]}


def test_compile_needs_an_aware_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        compile_rule(GOOD, now=NOW.replace(tzinfo=None))


# The rule's metadata.


def test_fields_used_lists_each_field_once_in_order():
    rule = all_of(
        cond("tags", "hasAny", ["prod"]),
        any_of(cond("software.installed", "equals", "Chrome"), cond("daysSinceLastSeen", "greaterThan", 3)),
        cond("tags", "isNotEmpty"),
        all_of(cond("hardware.cpuCores", "lessThan", 4), cond("software.installed", "contains", "Zip")),
    )
    assert fields_used(rule) == ["daysSinceLastSeen", "hardware.cpuCores", "software.installed", "tags"]
    assert fields_used(cond("hostname", "equals", "web")) == ["hostname"]


def test_every_field_of_the_spec_is_known_with_its_type():
    assert {name: field.type for name, field in FIELDS.items()} == {
        **dict.fromkeys(DEVICE_TEXT_FIELDS, "string"),
        "status": "enum",
        "osType": "enum",
        "siteId": "enum",
        "tags": "array",
        "lastSeenAt": "datetime",
        "enrolledAt": "datetime",
        **dict.fromkeys(HARDWARE_TEXT_FIELDS, "string"),
        "hardware.cpuCores": "number",
        "hardware.ramTotalMb": "number",
        "hardware.diskTotalGb": "number",
        **dict.fromkeys(NETWORK_TEXT_FIELDS, "string"),
        "disks.usedPercent": "number",
        "metrics.cpuPercent": "number",
        "metrics.ramPercent": "number",
        "metrics.diskPercent": "number",
        "software.installed": "string",
        "software.notInstalled": "string",
        "daysSinceLastSeen": "number",
    }
    assert {
        "lastSeenAt",
        "enrolledAt",
        "daysSinceLastSeen",
        "metrics.cpuPercent",
        "metrics.ramPercent",
        "metrics.diskPercent",
    } == TIME_BASED_FIELDS
