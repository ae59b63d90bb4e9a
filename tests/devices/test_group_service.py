"""The groups service's own guarantees: evaluation under a statement timeout that leaves the caller's transaction
and settings as they were, and one statement per group refresh."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import DeviceGroup, DeviceGroupMembership
from devices.services import groups
from rmm.errors import domain_error_status


def _timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_statement_over_the_timeout_raises_rule_timed_out_and_the_transaction_goes_on():
    before = _timeout()
    with pytest.raises(groups.RuleTimedOut) as raised, groups.statement_timeout(10), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.5)")
    assert domain_error_status(raised.value) == 400 and raised.value.code == "rule_timeout"
    assert _timeout() == before
    with connection.cursor() as cursor:  # the savepoint was rolled back: the transaction still works
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_the_callers_timeout_is_restored_after_a_fast_statement():
    before = _timeout()
    with groups.statement_timeout(5000), connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "5s"
    assert _timeout() == before


def test_refreshing_a_group_is_one_statement_whatever_it_changes(world):
    group = DeviceGroup.objects.create(
        org=world.org_a,
        name="Windows",
        type="dynamic",
        filter_rules={"field": "osType", "operator": "equals", "value": "windows"},
        fields_used=["osType"],
    )
    with CaptureQueriesContext(connection) as queries:
        changes = groups.refresh_group(group)
    assert (changes.added, changes.removed) == (2, 0)
    rule_statements = [q for q in queries.captured_queries if "device_group_memberships" in q["sql"]]
    assert len(rule_statements) == 1
    assert DeviceGroupMembership.objects.filter(group=group).count() == 2


def test_a_refresh_of_a_static_group_changes_nothing(world):
    group = world.groups["All of A"]
    groups.add_members(group=group, devices=list(world.devices_in(world.site_a1)), actor=None)
    assert groups.refresh_group(group) == groups.MembershipChanges()
    assert DeviceGroupMembership.objects.filter(group=group).count() == 2


def test_a_second_drainer_backs_off_while_one_holds_the_queue(world):
    """Two refresh_groups processes must not evaluate the same devices twice: the second sees the lock and leaves."""
    import psycopg
    from django.conf import settings

    params = settings.DATABASES["default"]
    conninfo = psycopg.conninfo.make_conninfo(
        dbname=connection.settings_dict["NAME"],
        host=params.get("HOST") or None,
        port=params.get("PORT") or None,
        user=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
    )
    with psycopg.connect(conninfo, autocommit=False) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [groups._DRAIN_LOCK])
        report = groups.process_refresh_queue()
    assert report.busy
