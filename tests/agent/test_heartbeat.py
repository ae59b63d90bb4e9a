"""POST /api/v1/agents/{agentId}/heartbeat: last seen, status rules, facts, telemetry, backlog and claims."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from devices.models import Device, DeviceCommand, DeviceTelemetry
from devices.services.commands import queue_command
from tests import factories
from tests.agent.conftest import assert_error, iso

pytestmark = pytest.mark.django_db


def telemetry(agent):
    return list(DeviceTelemetry.objects.filter(device_id=agent.device_id).order_by("ts"))


def test_a_heartbeat_records_last_seen_and_one_telemetry_sample_at_server_time(agent):
    Device.objects.filter(pk=agent.device_id).update(last_seen_at=None, last_seen_ip="")
    before = timezone.now()

    response = agent.heartbeat()

    assert response.status_code == 200
    assert response.json() == {"commands": [], "configUpdate": None, "rotateToken": False}
    device = agent.device
    assert before <= device.last_seen_at <= timezone.now()
    assert device.last_seen_ip == "127.0.0.1"
    [sample] = telemetry(agent)
    assert before <= sample.ts <= timezone.now()
    assert sample.org_id == device.org_id
    assert (sample.cpu_percent, sample.ram_percent, sample.ram_used_mb) == (12.5, 41.0, 6650)
    assert (sample.disk_percent, sample.disk_used_gb) == (63.2, 301.7)
    assert (sample.network_in_bytes, sample.network_out_bytes, sample.process_count) == (123456, 65432, 212)


def test_a_heartbeat_without_metrics_stores_no_sample(agent):
    assert agent.post("heartbeat", {"agentVersion": "1.4.2"}).status_code == 200
    assert telemetry(agent) == []


def test_the_backlog_is_stored_with_its_own_timestamps(agent):
    now = timezone.now()
    backlog = [
        {"timestamp": iso(now - dt.timedelta(minutes=m)), "cpuPercent": float(m), "processCount": 100 + m}
        for m in (3, 2, 1)
    ]
    assert agent.heartbeat(metricsBacklog=backlog).status_code == 200
    samples = telemetry(agent)
    assert len(samples) == 4
    assert [s.cpu_percent for s in samples[:3]] == [3.0, 2.0, 1.0]
    assert samples[0].ram_percent is None and samples[0].process_count == 103


def test_a_backlog_sent_twice_is_stored_once(agent):
    backlog = [{"timestamp": iso(timezone.now() - dt.timedelta(minutes=5)), "cpuPercent": 1.0}]
    assert agent.post("heartbeat", {"agentVersion": "1", "metricsBacklog": backlog}).status_code == 200
    assert agent.post("heartbeat", {"agentVersion": "1", "metricsBacklog": backlog}).status_code == 200
    assert len(telemetry(agent)) == 1


def test_a_backlog_sample_in_the_future_or_past_retention_gets_400_and_nothing_is_stored(agent, settings):
    now = timezone.now()
    Device.objects.filter(pk=agent.device_id).update(last_seen_at=None)
    backlog = [
        {"timestamp": iso(now - dt.timedelta(minutes=1)), "cpuPercent": 1.0},
        {"timestamp": iso(now + dt.timedelta(minutes=10)), "cpuPercent": 1.0},
        {"timestamp": iso(now - dt.timedelta(days=settings.TELEMETRY_RETENTION_DAYS, hours=1)), "cpuPercent": 1.0},
        {"timestamp": "2026-11-25 10:00:00", "cpuPercent": 1.0},
        {"cpuPercent": 1.0},
    ]
    body = assert_error(agent.heartbeat(metricsBacklog=backlog), 400, "validation_error")
    assert set(body["fields"]) == {f"metricsBacklog[{i}].timestamp" for i in (1, 2, 3, 4)}
    assert telemetry(agent) == []
    assert agent.device.last_seen_at is None


def test_a_backlog_of_more_than_1000_samples_gets_413(agent):
    sample = {"timestamp": iso(timezone.now() - dt.timedelta(minutes=1)), "cpuPercent": 1.0}
    assert_error(agent.heartbeat(metricsBacklog=[sample] * 1001), 413, "too_many_items")
    assert telemetry(agent) == []


def test_a_backlog_of_exactly_1000_samples_is_stored(agent):
    now = timezone.now()
    backlog = [{"timestamp": iso(now - dt.timedelta(seconds=30 * (i + 1))), "cpuPercent": 5.0} for i in range(1000)]
    assert agent.heartbeat(metricsBacklog=backlog).status_code == 200
    assert len(telemetry(agent)) == 1001


def test_bad_metrics_get_400_naming_the_field(agent):
    body = assert_error(
        agent.heartbeat(metrics={"cpuPercent": "high", "ramPercent": 140, "processCount": 1.5, "diskUsedGb": True}),
        400,
        "validation_error",
    )
    assert set(body["fields"]) == {
        "metrics.cpuPercent",
        "metrics.ramPercent",
        "metrics.processCount",
        "metrics.diskUsedGb",
    }
    assert telemetry(agent) == []


def test_agent_version_is_required(agent):
    body = assert_error(agent.post("heartbeat", {"status": "ok"}), 400, "validation_error")
    assert body["fields"] == {"agentVersion": ["This field is required."]}


def test_changed_hostname_os_and_agent_version_are_written(agent):
    response = agent.heartbeat(hostname="ws-renamed", osVersion="12", osBuild="26100", agentVersion="1.5.0")
    assert response.status_code == 200
    device = agent.device
    assert (device.hostname, device.os_version, device.os_build, device.agent_version) == (
        "ws-renamed",
        "12",
        "26100",
        "1.5.0",
    )


def test_facts_the_agent_leaves_out_are_kept(agent):
    assert agent.post("heartbeat", {"agentVersion": "1.4.2"}).status_code == 200
    device = agent.device
    assert (device.hostname, device.os_version, device.os_build) == ("ws-0042", "11", "22631")


def test_an_offline_device_comes_back_online(agent):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.OFFLINE)
    assert agent.heartbeat().status_code == 200
    assert agent.device.status == Device.Status.ONLINE


def test_a_device_in_maintenance_stays_in_maintenance(agent):
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.MAINTENANCE)
    assert agent.heartbeat().status_code == 200
    device = agent.device
    assert device.status == Device.Status.MAINTENANCE
    assert len(telemetry(agent)) == 1


def test_the_heartbeat_claims_up_to_ten_pending_commands_oldest_first(agent):
    device = agent.device
    queued = [queue_command(device=device, type="refresh_inventory", payload={}) for _ in range(12)]
    base = timezone.now() - dt.timedelta(minutes=30)
    for n, command in enumerate(queued):  # distinct creation times, oldest first
        DeviceCommand.objects.filter(pk=command.pk).update(created_at=base + dt.timedelta(seconds=n))

    first = agent.heartbeat().json()["commands"]
    second = agent.heartbeat().json()["commands"]
    third = agent.heartbeat().json()["commands"]

    assert [c["id"] for c in first] == [str(c.pk) for c in queued[:10]]
    assert [c["id"] for c in second] == [str(c.pk) for c in queued[10:]]
    assert third == []
    assert first[0] == {"id": str(queued[0].pk), "type": "refresh_inventory", "payload": {}}
    sent = DeviceCommand.objects.filter(device=device, status=DeviceCommand.Status.SENT)
    assert sent.count() == 12 and not sent.filter(sent_at__isnull=True).exists()


def test_the_heartbeat_hands_out_the_payload(agent):
    payload = {"language": "bash", "content": "uptime", "timeoutSeconds": 30}
    command = queue_command(device=agent.device, type="script", payload=payload)
    assert agent.heartbeat().json()["commands"] == [{"id": str(command.pk), "type": "script", "payload": payload}]


def test_expired_and_other_devices_commands_are_not_claimed(agent):
    device = agent.device
    expired = queue_command(device=device, type="reboot", payload={})
    DeviceCommand.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    queue_command(device=factories.device(device.site), type="reboot", payload={})
    cancelled = queue_command(device=device, type="reboot", payload={})
    DeviceCommand.objects.filter(pk=cancelled.pk).update(status=DeviceCommand.Status.CANCELLED)

    assert agent.heartbeat().json()["commands"] == []
    assert DeviceCommand.objects.filter(status=DeviceCommand.Status.PENDING).count() == 2


def test_a_quarantined_device_gets_no_commands(agent):
    command = queue_command(device=agent.device, type="reboot", payload={})
    Device.objects.filter(pk=agent.device_id).update(status=Device.Status.QUARANTINED)
    assert_error(agent.heartbeat(), 403, "device_quarantined")
    command.refresh_from_db()
    assert command.status == DeviceCommand.Status.PENDING


def test_a_heartbeat_with_a_trailing_slash_is_answered_without_redirect(agent):
    response = agent.client.post(
        f"/api/v1/agents/{agent.agent_id}/heartbeat/",
        data='{"agentVersion": "1.4.2"}',
        content_type="application/json",
        headers=agent.auth(),
    )
    assert response.status_code == 200
