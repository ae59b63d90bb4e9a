"""Alert conditions: what the validator accepts, and every mistake reported at its path."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from alerts.conditions import ConditionError, check_condition, validate_rule
from alerts.models import AlertRule
from devices.models import DeviceGroup
from tests import factories

VALID = [
    {"kind": "metric", "metric": "cpuPercent", "aggregate": "avg", "op": ">", "value": 90, "windowMinutes": 10},
    {"kind": "metric", "metric": "processCount", "aggregate": "min", "op": "<=", "value": 2.5, "windowMinutes": 1440},
    {"kind": "offline", "minutes": 10080},
    {"kind": "disk", "freePercentBelow": 10},
    {"kind": "disk", "freeGbBelow": 0.5, "mount": "C:"},
    {"kind": "rule", "filterRules": {"field": "software.notInstalled", "operator": "contains", "value": "antivirus"}},
    {"kind": "commandFailed", "withinMinutes": 60},
    {"kind": "commandFailed", "types": ["script", "update"], "withinMinutes": 1},
]


@pytest.mark.parametrize("condition", VALID, ids=lambda c: c["kind"])
def test_every_kind_of_the_spec_is_accepted(condition):
    check_condition(condition)


INVALID = [
    (
        "not an object",
        [],
        {"condition": ["must be an object with a kind (metric, offline, disk, rule, commandFailed), not a list"]},
    ),
    (
        "unknown kind",
        {"kind": "cpu"},
        {"condition.kind": ["must be one of metric, offline, disk, rule, commandFailed, not 'cpu'"]},
    ),
    ("no kind", {}, {"condition.kind": ["required: one of metric, offline, disk, rule, commandFailed"]}),
    (
        "metric window out of range and unknown metric",
        {"kind": "metric", "metric": "gpuPercent", "aggregate": "p95", "op": "=", "value": "90", "windowMinutes": 1441},
        {
            "condition.metric": [
                "must be one of cpuPercent, ramPercent, ramUsedMb, diskPercent, diskUsedGb, networkInBytes, "
                "networkOutBytes, processCount, not 'gpuPercent'"
            ],
            "condition.aggregate": ["must be one of avg, max, min, not 'p95'"],
            "condition.op": ["must be one of >, >=, <, <=, not '='"],
            "condition.value": ["must be a number, not text"],
            "condition.windowMinutes": ["must be a whole number from 1 to 1440"],
        },
    ),
    (
        "unknown key",
        {"kind": "offline", "minutes": 5, "hours": 1},
        {"condition.hours": ["unknown key: an offline condition takes kind, minutes"]},
    ),
    (
        "offline minutes a fraction",
        {"kind": "offline", "minutes": 1.5},
        {"condition.minutes": ["must be a whole number from 1 to 10080, not a number"]},
    ),
    (
        "offline minutes true",
        {"kind": "offline", "minutes": True},
        {"condition.minutes": ["must be a whole number from 1 to 10080, not true/false"]},
    ),
    (
        "offline minutes zero",
        {"kind": "offline", "minutes": 0},
        {"condition.minutes": ["must be a whole number from 1 to 10080"]},
    ),
    (
        "disk with both limits",
        {"kind": "disk", "freePercentBelow": 10, "freeGbBelow": 5},
        {"condition": ["a disk condition needs exactly one of freePercentBelow or freeGbBelow"]},
    ),
    (
        "disk without a limit",
        {"kind": "disk"},
        {"condition": ["a disk condition needs exactly one of freePercentBelow or freeGbBelow"]},
    ),
    (
        "disk percent above 100",
        {"kind": "disk", "freePercentBelow": 101},
        {"condition.freePercentBelow": ["must be at most 100"]},
    ),
    ("disk zero GB", {"kind": "disk", "freeGbBelow": 0}, {"condition.freeGbBelow": ["must be more than 0"]}),
    (
        "disk empty mount",
        {"kind": "disk", "freeGbBelow": 1, "mount": " "},
        {"condition.mount": ["must be a mount point such as C: or /var, not text"]},
    ),
    ("rule without filter", {"kind": "rule"}, {"condition.filterRules": ["required: a filter rule (filter-rules.md)"]}),
    (
        "rule with a bad filter",
        {
            "kind": "rule",
            "filterRules": {"operator": "AND", "conditions": [{"field": "nope", "operator": "equals", "value": 1}]},
        },
        {"condition.filterRules.conditions[0].field": ["unknown field 'nope'"]},
    ),
    (
        "commandFailed with an unknown type",
        {"kind": "commandFailed", "types": ["script", "format_disk"], "withinMinutes": 60},
        {
            "condition.types[1]": [
                "must be one of script, reboot, shutdown, update, refresh_inventory, not 'format_disk'"
            ]
        },
    ),
    (
        "commandFailed with no types",
        {"kind": "commandFailed", "types": [], "withinMinutes": 0},
        {
            "condition.withinMinutes": ["must be a whole number from 1 to 10080"],
            "condition.types": [
                "must be a non-empty list of command types (script, reboot, shutdown, update, refresh_inventory)"
            ],
        },
    ),
]


@pytest.mark.parametrize(("condition", "errors"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_every_mistake_is_reported_at_its_path(condition, errors):
    with pytest.raises(ConditionError) as caught:
        check_condition(condition)

    assert caught.value.errors == errors


@pytest.fixture
def org(db):
    return factories.organization()


def test_a_rule_shows_condition_mistakes_under_its_condition_field(org):
    rule = AlertRule(org=org, name="x", condition={"kind": "offline", "minutes": 0})

    with pytest.raises(ValidationError) as caught:
        validate_rule(rule)

    assert caught.value.message_dict == {"condition": ["condition.minutes: must be a whole number from 1 to 10080"]}


def test_only_an_organizations_rule_narrows_to_its_own_site_and_group(org):
    other = factories.organization(org.partner)
    partner_rule = AlertRule(
        partner=org.partner,
        site=factories.site(org),
        device_group=DeviceGroup.objects.create(org=org, name="g"),
        name="x",
        condition={"kind": "offline", "minutes": 5},
    )
    foreign = AlertRule(
        org=org,
        site=factories.site(other),
        device_group=DeviceGroup.objects.create(org=other, name="g"),
        name="y",
        condition={"kind": "offline", "minutes": 5},
    )

    with pytest.raises(ValidationError) as partner_caught:
        validate_rule(partner_rule)
    with pytest.raises(ValidationError) as foreign_caught:
        validate_rule(foreign)

    assert partner_caught.value.message_dict == {
        "site": ["Only an organization's rule can be narrowed to a site."],
        "device_group": ["Only an organization's rule can be narrowed to a device group."],
    }
    assert foreign_caught.value.message_dict == {
        "site": ["The site must belong to the rule's organization."],
        "device_group": ["The device group must belong to the rule's organization."],
    }


def test_a_filter_rule_naming_a_site_of_another_organization_is_refused(org):
    other_site = factories.site()
    rule = AlertRule(
        org=org,
        name="x",
        condition={
            "kind": "rule",
            "filterRules": {"field": "siteId", "operator": "equals", "value": str(other_site.pk)},
        },
    )

    with pytest.raises(ValidationError) as caught:
        validate_rule(rule)

    assert caught.value.message_dict == {
        "condition": [f"condition.filterRules.value: Not a site of this organization: {other_site.pk}."]
    }


def test_a_rule_belongs_to_exactly_one_owner(org):
    with pytest.raises(ValidationError) as caught:
        validate_rule(AlertRule(org=org, partner=org.partner, name="x", condition={"kind": "offline", "minutes": 5}))

    assert caught.value.message_dict == {"org": ["A rule belongs to exactly one of an organization or a partner."]}


def test_full_clean_runs_the_validator(org):
    with pytest.raises(ValidationError) as caught:
        AlertRule(org=org, name="x", condition={"kind": "offline"}).full_clean()

    assert caught.value.message_dict["condition"] == ["condition.minutes: required: a whole number from 1 to 10080"]
