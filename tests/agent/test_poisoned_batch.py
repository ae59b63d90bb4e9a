"""One bad heartbeat never fails the others (issue 10, item 2).

The group-commit writer writes many agents' heartbeats in one statement, so a value PostgreSQL refuses used to fail
every heartbeat of its batch with 503 (``POST /api/v1/agents/%00/heartbeat`` with any well-formed token, or a backlog
timestamp at ``+19:11``: 10.6 % of legitimate heartbeats failed at 20 such requests/s). Now validation refuses
what PostgreSQL would refuse before a job is queued, and a batch that still fails is written again job by job, so
only the job at fault fails. These tests run poisoned and valid heartbeats in the same batch: over HTTP, and with
jobs that bypass validation straight into the real writer.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from devices.agent_api import group_commit, schemas
from devices.agent_api.group_commit import GroupCommitter
from devices.agent_api.heartbeat import HeartbeatJob, process_heartbeats, read_heartbeat
from devices.models import Device, DeviceCommand, DeviceTelemetry
from devices.services.commands import queue_command
from devices.services.credentials import hash_agent_token
from tests import factories
from tests.agent.conftest import BASE, Agent, enroll, heartbeat_body, make_key

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN_TOKEN = "rmm_" + "0" * 64
BEYOND_POSTGRESQL = dt.timezone(dt.timedelta(hours=19, minutes=11))


def enrolled(count: int) -> list[Agent]:
    raw, _ = make_key(factories.site())
    agents = []
    for n in range(count):
        body = enroll(Client(), raw, hostname=f"ws-{n}").json()
        agents.append(Agent(Client(), body["agentId"], body["authToken"], body["deviceId"]))
    return agents


def all_at_once(calls: dict) -> dict:
    """Run the callables of ``calls`` (name → callable) in threads released together; name → result or error."""
    barrier = threading.Barrier(len(calls))
    results: dict = {}

    def run(name, call):
        try:
            barrier.wait(10)
            results[name] = call()
        except Exception as exc:
            results[name] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_poisoned_heartbeats_sent_with_valid_ones_fail_alone_and_the_valid_ones_are_stored(settings):
    settings.AGENT_GROUP_COMMIT_LINGER_MS = 300  # every heartbeat below waits for the same batch
    agents = enrolled(6)
    victim = agents.pop()  # sends a backlog sample with an offset PostgreSQL refuses
    victim_seen = victim.device.last_seen_at
    poisoned_backlog = [{"timestamp": "2026-12-01T00:00:00+19:11", "cpuPercent": 5.0}]
    calls = {agent.agent_id: agent.heartbeat for agent in agents}
    calls["nul-agent-id"] = lambda: Client().post(
        f"{BASE}/%00/heartbeat",
        data=heartbeat_body(),
        content_type="application/json",
        headers={"authorization": f"Bearer {UNKNOWN_TOKEN}"},
    )
    calls["bad-offset"] = lambda: victim.heartbeat(metricsBacklog=poisoned_backlog)

    answers = all_at_once(calls)

    statuses = {name: getattr(answer, "status_code", answer) for name, answer in answers.items()}
    assert statuses == {**{agent.agent_id: 200 for agent in agents}, "nul-agent-id": 401, "bad-offset": 400}
    assert answers["nul-agent-id"].json()["error"] == "invalid_token"
    assert set(answers["bad-offset"].json()["fields"]) == {"metricsBacklog[0].timestamp"}
    for agent in agents:
        assert DeviceTelemetry.objects.filter(device_id=agent.device_id).count() == 1
    assert not DeviceTelemetry.objects.filter(device_id=victim.device_id).exists()
    assert Device.objects.get(pk=victim.device_id).last_seen_at == victim_seen


def job_of(agent: Agent, **overrides) -> HeartbeatJob:
    return read_heartbeat(
        heartbeat_body(**overrides),
        agent_id=agent.agent_id,
        token_hash=hash_agent_token(agent.token),
        certificate=None,
        ip="10.0.0.7",
        now=timezone.now(),
    )


def test_jobs_postgresql_refuses_fail_alone_in_their_batch_and_the_others_are_written(settings):
    agents = enrolled(6)
    for agent in agents:
        queue_command(device=agent.device, type="reboot", payload=None)
    valid = {agent.agent_id: job_of(agent) for agent in agents[:4]}
    # Jobs validation would have refused, put together by hand to reach the writer: an agent id with a NUL, a
    # backlog timestamp at +19:11, a lone surrogate in a text column.
    nul_id = HeartbeatJob(
        agent_id="\x00",
        token_hash=hash_agent_token(UNKNOWN_TOKEN),
        certificate=None,
        received_at=timezone.now(),
        ip=None,
        agent_version="1.4.2",
    )
    bad_offset = job_of(agents[4])
    bad_offset.backlog = [
        schemas.BacklogSample.model_construct(timestamp=timezone.now().astimezone(BEYOND_POSTGRESQL), cpu_percent=5.0)
    ]
    surrogate = job_of(agents[5])
    surrogate.hostname = "ws-\ud800"
    poisoned = {"nul-id": nul_id, "bad-offset": bad_offset, "surrogate": surrogate}
    batches: list[int] = []

    def recording(jobs):
        batches.append(len(jobs))
        process_heartbeats(jobs)

    settings.AGENT_GROUP_COMMIT_LINGER_MS = 300
    writer = GroupCommitter(recording, name="test-writer", settled=lambda job: job.settled, timeout_ms=lambda: 5000)
    try:
        outcomes = all_at_once(
            {name: lambda job=job: writer.submit(job) for name, job in {**valid, **poisoned}.items()}
        )
    finally:
        writer.stop()

    assert batches[0] == len(valid) + len(poisoned)  # they were written together first
    assert {name: outcomes[name] for name in valid} == {name: None for name in valid}
    assert all(isinstance(outcomes[name], group_commit.JobRefused) for name in poisoned), outcomes
    for agent in agents[:4]:
        job = valid[agent.agent_id]
        assert job.verdict == "ok"
        command = DeviceCommand.objects.get(device_id=agent.device_id)
        assert command.status == DeviceCommand.Status.SENT
        assert [c["id"] for c in job.commands] == [str(command.pk)]
        assert DeviceTelemetry.objects.filter(device_id=agent.device_id).count() == 1
    for agent in agents[4:]:
        assert DeviceCommand.objects.get(device_id=agent.device_id).status == DeviceCommand.Status.PENDING
        assert not DeviceTelemetry.objects.filter(device_id=agent.device_id).exists()


def test_jobs_a_failed_call_had_already_committed_are_answered_and_never_written_again(settings):
    # process_heartbeats commits in up to three attempts; an error in a later attempt must not send the jobs of an
    # earlier one through the writer again (their commands would be claimed twice, their samples written twice).
    agents = enrolled(4)
    for agent in agents:
        queue_command(device=agent.device, type="reboot", payload=None)
    jobs = [job_of(agent) for agent in agents]
    calls: list[int] = []

    def fails_after_committing_some(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            process_heartbeats(batch[:2])  # committed, then something goes wrong with the rest
            raise RuntimeError("the connection hiccuped after the first attempt")
        process_heartbeats(batch)

    settings.AGENT_GROUP_COMMIT_LINGER_MS = 300
    writer = GroupCommitter(
        fails_after_committing_some, name="test-writer", settled=lambda job: job.settled, timeout_ms=lambda: 5000
    )
    try:
        outcomes = all_at_once({n: lambda job=job: writer.submit(job) for n, job in enumerate(jobs)})
    finally:
        writer.stop()

    assert outcomes == dict.fromkeys(range(len(jobs)))
    assert calls[0] == len(jobs) and calls[1:] == [1, 1]  # only the two unsettled jobs were written again
    for agent, job in zip(agents, jobs, strict=True):
        command = DeviceCommand.objects.get(device_id=agent.device_id)
        assert job.verdict == "ok" and [c["id"] for c in job.commands] == [str(command.pk)]
        assert command.status == DeviceCommand.Status.SENT
        assert DeviceTelemetry.objects.filter(device_id=agent.device_id).count() == 1
