"""Group commit: concurrent heartbeats are written together, each answered only after its batch is committed."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client

from devices.agent_api.group_commit import GroupCommitter, WriterUnavailable
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


def test_a_job_the_writer_has_not_taken_in_time_is_withdrawn_and_never_written():
    release = threading.Event()
    written: list = []

    def write(jobs):
        written.extend(jobs)
        release.wait(5)  # busy with the first batch while the second job waits in the queue

    writer = GroupCommitter(write, name="test-writer")
    first = threading.Thread(target=writer.submit, args=("first",))
    first.start()
    while not written:
        time.sleep(0.01)
    with pytest.raises(WriterUnavailable, match="nothing was stored"):
        writer.submit("second", timeout=0.05)
    release.set()
    first.join(5)
    writer.stop()
    assert written == ["first"]


def test_a_job_the_writer_has_taken_is_answered_with_its_outcome_however_long_it_takes():
    # Issue 10, item 5: answering 503 while the batch went on to commit contradicted what was stored.
    finished: list = []

    def write(jobs):
        time.sleep(0.3)  # e.g. waiting for a row lock, within the writer's own timeouts
        finished.extend(jobs)

    writer = GroupCommitter(write, name="test-writer")
    writer.submit("job", timeout=0.05)  # taken at once, so waited for past the queue wait: no exception
    writer.stop()
    assert finished == ["job"]


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
