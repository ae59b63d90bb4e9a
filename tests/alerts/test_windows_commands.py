"""A maintenance window with ``suppress_commands``: the agent's claim (heartbeat and GET .../commands) hands out
nothing to the devices it covers, their commands stay pending, and they are handed out once the window is over."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from alerts.models import MaintenanceWindow
from devices.agent_api import sql
from devices.agent_api.heartbeat import HeartbeatJob, process_heartbeats
from devices.models import DeviceCommand, DeviceGroup, DeviceGroupMembership
from devices.services import credentials
from devices.services.commands import queue_command
from orgs.models import Site
from tests import factories
from tests.agent.conftest import Agent, enroll, make_key

pytestmark = pytest.mark.django_db

HOUR = dt.timedelta(hours=1)


@pytest.fixture
def site(db) -> Site:
    return factories.site()


@pytest.fixture
def make_agent(client: Client, site: Site):
    def make(site_: Site | None = None) -> Agent:
        raw, _ = make_key(site_ or site)
        response = enroll(client, raw)
        assert response.status_code == 201, response.content
        body = response.json()
        return Agent(client=client, agent_id=body["agentId"], token=body["authToken"], device_id=body["deviceId"])

    return make


@pytest.fixture
def agent(make_agent) -> Agent:
    return make_agent()


@pytest.fixture(autouse=True)
def _stop_the_heartbeat_writer():
    yield
    from devices.agent_api.heartbeat import heartbeat_writer

    heartbeat_writer.stop()


def open_window(of: Site, **fields) -> MaintenanceWindow:
    """A window over the organization of ``of`` (narrow it with ``site=`` or ``device_group=``) from an hour ago to
    an hour from now, suppressing commands."""
    now = timezone.now()
    fields = {"starts_at": now - HOUR, "ends_at": now + HOUR, "suppress_commands": True, **fields}
    window = MaintenanceWindow(org=of.org, name="patching", **fields)
    window.full_clean()
    window.save()
    return window


def close(window: MaintenanceWindow) -> None:
    now = timezone.now()
    MaintenanceWindow.objects.filter(pk=window.pk).update(starts_at=now - 2 * HOUR, ends_at=now - HOUR)


def queue(agent: Agent) -> DeviceCommand:
    return queue_command(device=agent.device, type="reboot", payload={})


def heartbeat_commands(agent: Agent) -> list[str]:
    response = agent.heartbeat()
    assert response.status_code == 200, response.content
    return [command["id"] for command in response.json()["commands"]]


def get_commands(agent: Agent) -> list[str]:
    response = agent.get("commands")
    assert response.status_code == 200, response.content
    return [command["id"] for command in response.json()["commands"]]


def status_of(command: DeviceCommand) -> str:
    return DeviceCommand.objects.get(pk=command.pk).status


def test_a_heartbeat_inside_a_window_that_suppresses_commands_gets_none_and_they_stay_pending(agent, site):
    window = open_window(site)
    command = queue(agent)
    assert heartbeat_commands(agent) == []
    assert status_of(command) == DeviceCommand.Status.PENDING
    close(window)
    assert heartbeat_commands(agent) == [str(command.pk)]
    assert status_of(command) == DeviceCommand.Status.SENT


def test_get_commands_inside_a_window_that_suppresses_commands_gets_none_and_they_stay_pending(agent, site):
    window = open_window(site)
    command = queue(agent)
    assert get_commands(agent) == []
    assert status_of(command) == DeviceCommand.Status.PENDING
    close(window)
    assert get_commands(agent) == [str(command.pk)]
    assert status_of(command) == DeviceCommand.Status.SENT


def test_a_window_that_suppresses_only_alerts_holds_no_command(agent, site):
    open_window(site, suppress_commands=False)
    command = queue(agent)
    assert heartbeat_commands(agent) == [str(command.pk)]


def test_a_recurring_window_holds_commands_only_while_it_occurs(agent, site):
    now = timezone.now()
    # Daily, first occurrence two days ago at this hour; so an occurrence is running now.
    window = open_window(site, starts_at=now - 2 * 24 * HOUR - HOUR, ends_at=now - 2 * 24 * HOUR + HOUR)
    window.recurrence = MaintenanceWindow.Recurrence.DAILY
    window.save()
    command = queue(agent)
    assert heartbeat_commands(agent) == []
    # Move the daily hours three hours later: not occurring now.
    MaintenanceWindow.objects.filter(pk=window.pk).update(
        starts_at=window.starts_at + 3 * HOUR, ends_at=window.ends_at + 3 * HOUR
    )
    assert heartbeat_commands(agent) == [str(command.pk)]


def test_only_the_covered_site_is_held_in_a_batch_with_other_devices(make_agent, site):
    other_site = factories.site(site.org)
    held, free = make_agent(site), make_agent(other_site)
    open_window(site, site=site)
    held_command, free_command = queue(held), queue(free)
    # Both devices in one batch, as the group-commit writer would write them.
    now = timezone.now()
    jobs = [
        HeartbeatJob(
            agent_id=agent.agent_id,
            token_hash=credentials.hash_agent_token(agent.token),
            certificate=None,
            received_at=now,
            ip=None,
            agent_version="1.4.2",
        )
        for agent in (held, free)
    ]
    process_heartbeats(jobs, now=now)
    assert [job.verdict for job in jobs] == ["ok", "ok"]
    assert [[c["id"] for c in job.commands] for job in jobs] == [[], [str(free_command.pk)]]
    assert status_of(held_command) == DeviceCommand.Status.PENDING
    assert status_of(free_command) == DeviceCommand.Status.SENT


def test_a_group_window_holds_the_commands_of_its_members_only(make_agent, site):
    member, other = make_agent(site), make_agent(site)
    group = DeviceGroup.objects.create(org=site.org, name="servers")
    DeviceGroupMembership.objects.create(device=member.device, group=group, org=site.org)
    open_window(site, device_group=group)
    member_command, other_command = queue(member), queue(other)
    assert get_commands(member) == []
    assert get_commands(other) == [str(other_command.pk)]
    assert status_of(member_command) == DeviceCommand.Status.PENDING


def test_a_window_of_another_organization_holds_nothing_here(agent):
    open_window(factories.site())
    command = queue(agent)
    assert heartbeat_commands(agent) == [str(command.pk)]


def test_the_identity_lookup_says_whether_the_organization_has_a_window_that_may_hold_commands(agent, site):
    def flag() -> bool:
        row = sql.fetch_identity(sql.raw_cursor(), agent.agent_id)
        assert row is not None
        return row[-1]

    assert flag() is False
    window = open_window(site, suppress_commands=False)
    assert flag() is False
    MaintenanceWindow.objects.filter(pk=window.pk).update(suppress_commands=True)
    assert flag() is True
    close(window)  # a one-off window that is over holds nothing any more
    assert flag() is False
    MaintenanceWindow.objects.filter(pk=window.pk).update(recurrence="daily")  # a recurring one may again
    assert flag() is True


@pytest.mark.django_db(transaction=True)
def test_the_group_commit_writer_holds_commands_too(agent, site):
    window = open_window(site)
    command = queue(agent)
    assert heartbeat_commands(agent) == []
    assert status_of(command) == DeviceCommand.Status.PENDING
    close(window)
    assert heartbeat_commands(agent) == [str(command.pk)]
