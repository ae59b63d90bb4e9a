"""Group commit: concurrent heartbeats are written together, each answered only after its batch is committed."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from devices.agent.group_commit import GroupCommitter, WriterUnavailable
from devices.models import Device, DeviceTelemetry
from tests import factories
from tests.agent.conftest import Agent, enroll, make_key


def test_jobs_submitted_while_a_batch_is_written_form_the_next_batch():
    batches: list[list[int]] = []
    first_batch_started = threading.Event()

    def write(jobs):
        batches.append(list(jobs))
        first_batch_started.set()
        time.sleep(0.05)  # while this "commits", the other jobs queue up

    writer = GroupCommitter(write, name="test-writer")
    threads = [threading.Thread(target=writer.submit, args=(0,))]
    threads[0].start()
    first_batch_started.wait(5)
    threads += [threading.Thread(target=writer.submit, args=(n,)) for n in range(1, 9)]
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(5)
    writer.stop()

    assert batches[0] == [0]
    assert sorted(job for batch in batches[1:] for job in batch) == list(range(1, 9))
    assert len(batches) <= 3  # the eight waiting jobs went in one or two batches, not eight


def test_a_failed_batch_fails_each_of_its_requests():
    def write(jobs):
        raise RuntimeError("database is down")

    writer = GroupCommitter(write, name="test-writer")
    with pytest.raises(WriterUnavailable, match="database is down"):
        writer.submit("job")
    writer.stop()


def test_a_writer_that_does_not_answer_in_time_fails_the_request():
    release = threading.Event()
    writer = GroupCommitter(lambda jobs: release.wait(5), name="test-writer")
    with pytest.raises(WriterUnavailable, match="in time"):
        writer.submit("job", timeout=0.05)
    release.set()
    writer.stop()


@pytest.mark.django_db(transaction=True)
def test_concurrent_heartbeats_are_all_committed_before_they_are_answered():
    raw, _ = make_key(factories.site())
    agents = []
    for n in range(12):
        body = enroll(Client(), raw, hostname=f"ws-{n}").json()
        agents.append(Agent(Client(), body["agentId"], body["authToken"], body["deviceId"]))
    Device.objects.update(status=Device.Status.OFFLINE)
    barrier = threading.Barrier(len(agents))
    answers: dict[str, int] = {}

    def check_in(agent: Agent) -> None:
        try:
            barrier.wait(10)
            response = agent.heartbeat(hostname=f"renamed-{agent.agent_id[:6]}")
            # Answered only after the commit: another connection already sees the row.
            answers[agent.device_id] = response.status_code
            assert DeviceTelemetry.objects.filter(device_id=agent.device_id).count() == 1
        finally:
            connection.close()

    threads = [threading.Thread(target=check_in, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert answers == {agent.device_id: 200 for agent in agents}
    assert DeviceTelemetry.objects.count() == len(agents)
    assert set(Device.objects.values_list("status", flat=True)) == {"online"}
    assert Device.objects.filter(hostname__startswith="renamed-").count() == len(agents)
