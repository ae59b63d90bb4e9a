"""PUT /api/v1/agents/{agentId}/{kind}: each upload replaces the device's rows of that kind, or changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from devices.models import (
    DeviceConfigEntry,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)
from tests.agent.conftest import assert_error

pytestmark = pytest.mark.django_db

SOFTWARE = [
    {
        "name": "Mozilla Firefox",
        "version": "133.0",
        "publisher": "Mozilla",
        "installDate": "2024-11-02",
        "installLocation": "C:\\Program Files\\Mozilla Firefox",
    },
    {"name": "7-Zip", "version": "24.08", "publisher": "Igor Pavlov", "installDate": "20240315"},
    {"name": "Git"},
]
DISKS = [
    {
        "mountPoint": "C:",
        "device": "\\\\.\\PHYSICALDRIVE0",
        "fsType": "NTFS",
        "totalGb": 476.3,
        "usedGb": 301.2,
        "freeGb": 175.1,
        "usedPercent": 63.2,
        "health": "healthy",
    },
    {"mountPoint": "D:", "totalGb": 931.5},
]
ADAPTERS = [
    {
        "interfaceName": "Ethernet",
        "macAddress": "00:1a:2b:3c:4d:5e",
        "ipAddress": "192.168.1.20",
        "isPrimary": True,
        "publicIp": "203.0.113.7",
    },
    {"interfaceName": "Ethernet", "macAddress": "00:1a:2b:3c:4d:5e", "ipAddress": "2001:db8::20", "ipType": "ipv6"},
]
CONNECTIONS = [
    {
        "protocol": "tcp",
        "localAddr": "192.168.1.20",
        "localPort": 51515,
        "remoteAddr": "140.82.112.3",
        "remotePort": 443,
        "state": "ESTABLISHED",
        "pid": 4242,
        "processName": "chrome.exe",
    },
    {"protocol": "udp6", "localAddr": "::", "localPort": 5353},
]
REGISTRY = [
    {
        "registryPath": "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU",
        "valueName": "NoAutoUpdate",
        "valueData": 0,
        "valueType": "REG_DWORD",
        "collectedAt": "2026-11-25T09:00:00Z",
    },
    {"registryPath": "HKLM\\SOFTWARE\\Example", "valueName": "", "valueData": "default value", "valueType": "REG_SZ"},
]
CONFIG = [
    {"filePath": "/etc/ssh/sshd_config", "configKey": "PermitRootLogin", "configValue": "no"},
    {"filePath": "/etc/ssh/sshd_config", "configKey": "PasswordAuthentication", "configValue": "yes"},
]

KINDS = [
    ("software", "software", SOFTWARE, DeviceSoftware),
    ("disks", "disks", DISKS, DeviceDisk),
    ("network", "adapters", ADAPTERS, DeviceNetworkInterface),
    ("connections", "connections", CONNECTIONS, DeviceNetworkConnection),
    ("registry-state", "entries", REGISTRY, DeviceRegistryEntry),
    ("config-state", "entries", CONFIG, DeviceConfigEntry),
]


@pytest.mark.parametrize(("kind", "key", "items", "model"), KINDS)
def test_an_upload_replaces_the_devices_rows_of_that_kind(agent, make_agent, kind, key, items, model):
    other = make_agent()
    assert other.put(kind, {key: items}).status_code == 204

    assert agent.put(kind, {key: items}).status_code == 204
    assert model.objects.filter(device_id=agent.device_id).count() == len(items)

    response = agent.put(kind, {key: items[:1]})

    assert response.status_code == 204 and response.content == b""
    rows = model.objects.filter(device_id=agent.device_id)
    assert rows.count() == 1
    assert {row.org_id for row in rows} == {agent.device.org_id}
    assert model.objects.filter(device_id=other.device_id).count() == len(items)  # another device's are kept
    assert agent.put(kind, {key: []}).status_code == 204
    assert not model.objects.filter(device_id=agent.device_id).exists()


def test_software_rows_keep_every_field(agent):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    rows = {row.name: row for row in DeviceSoftware.objects.filter(device_id=agent.device_id)}
    assert rows["Mozilla Firefox"].install_date == dt.date(2024, 11, 2)
    assert rows["Mozilla Firefox"].install_location == "C:\\Program Files\\Mozilla Firefox"
    assert rows["7-Zip"].install_date == dt.date(2024, 3, 15)  # the registry's YYYYMMDD
    assert rows["Git"].version == "" and rows["Git"].install_date is None


def test_other_kinds_keep_their_fields(agent):
    for kind, key, items, _ in KINDS[1:]:
        assert agent.put(kind, {key: items}).status_code == 204
    disk = DeviceDisk.objects.get(device_id=agent.device_id, mount_point="C:")
    assert (disk.device_name, disk.fs_type, disk.used_percent, disk.health) == (
        "\\\\.\\PHYSICALDRIVE0",
        "NTFS",
        63.2,
        "healthy",
    )
    assert DeviceDisk.objects.get(device_id=agent.device_id, mount_point="D:").health == "unknown"
    v4, v6 = DeviceNetworkInterface.objects.filter(device_id=agent.device_id).order_by("ip_type")
    assert (v4.ip_type, v4.public_ip, v4.is_primary, v6.ip_type) == ("ipv4", "203.0.113.7", True, "ipv6")
    tcp = DeviceNetworkConnection.objects.get(device_id=agent.device_id, protocol="tcp")
    assert (tcp.remote_port, tcp.pid, tcp.process_name) == (443, 4242, "chrome.exe")
    dword = DeviceRegistryEntry.objects.get(device_id=agent.device_id, value_name="NoAutoUpdate")
    assert dword.value_data == "0" and dword.collected_at == dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)
    assert DeviceRegistryEntry.objects.get(device_id=agent.device_id, value_name="").collected_at is not None
    assert DeviceConfigEntry.objects.get(device_id=agent.device_id, config_key="PermitRootLogin").config_value == "no"


def test_hardware_is_one_row_updated_in_place(agent):
    assert agent.put("hardware", {"cpuModel": "Xeon", "cpuCores": 8, "ramTotalMb": 32768}).status_code == 204
    assert agent.put("hardware", {"cpuModel": "EPYC", "cpuCores": 16, "serialNumber": "S1"}).status_code == 204
    hardware = DeviceHardware.objects.get(device_id=agent.device_id)
    assert (hardware.cpu_model, hardware.cpu_cores, hardware.serial_number) == ("EPYC", 16, "S1")
    assert hardware.ram_total_mb is None and hardware.org_id == agent.device.org_id


@pytest.mark.parametrize(
    ("kind", "key", "limit"),
    [
        ("software", "software", 10_000),
        ("disks", "disks", 100),
        ("network", "adapters", 100),
        ("connections", "connections", 10_000),
        ("registry-state", "entries", 5_000),
        ("config-state", "entries", 5_000),
    ],
)
def test_an_upload_over_its_limit_gets_413_and_replaces_nothing(agent, kind, key, limit):
    _, items, model = {name: rest for name, *rest in KINDS}[kind]
    assert agent.put(kind, {key: items}).status_code == 204

    assert_error(agent.put(kind, {key: [items[0]] * (limit + 1)}), 413, "too_many_items")

    assert model.objects.filter(device_id=agent.device_id).count() == len(items)


def test_ten_thousand_software_items_are_accepted(agent):
    items = [{"name": f"Package {n}", "version": "1.0"} for n in range(10_000)]
    assert agent.put("software", {"software": items}).status_code == 204
    assert DeviceSoftware.objects.filter(device_id=agent.device_id).count() == 10_000


def test_invalid_items_get_400_naming_each_and_replace_nothing(agent):
    assert agent.put("software", {"software": SOFTWARE}).status_code == 204
    bad = [*SOFTWARE, {"version": "1"}, {"name": "x" * 513}, {"name": "ok", "installDate": "last tuesday"}, "Git"]
    body = assert_error(agent.put("software", {"software": bad}), 400, "validation_error")
    assert set(body["fields"]) == {"software[3].name", "software[4].name", "software[5].installDate", "software[6]"}
    assert DeviceSoftware.objects.filter(device_id=agent.device_id).count() == 3


def test_connections_validate_protocol_and_ports(agent):
    bad = [{"protocol": "sctp", "localAddr": "::", "localPort": 70000, "remotePort": -1, "pid": "12"}]
    body = assert_error(agent.put("connections", {"connections": bad}), 400, "validation_error")
    assert set(body["fields"]) == {
        "connections[0].protocol",
        "connections[0].localPort",
        "connections[0].remotePort",
        "connections[0].pid",
    }


def test_a_repeated_registry_value_gets_400(agent):
    entries = [REGISTRY[0], {**REGISTRY[0], "valueData": 1}]
    body = assert_error(agent.put("registry-state", {"entries": entries}), 400, "validation_error")
    assert list(body["fields"]) == ["entries[1]"]
    assert not DeviceRegistryEntry.objects.exists()


def test_a_missing_list_gets_400(agent):
    body = assert_error(agent.put("disks", {"volumes": DISKS}), 400, "validation_error")
    assert body["fields"] == {"disks": ["This field is required."]}


def test_an_unknown_kind_gets_404_in_the_error_shape(agent):
    assert_error(agent.put("printers", {"printers": []}), 404, "not_found")


def test_inventory_answers_put_only(agent):
    response = agent.post("software", {"software": []})
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "PUT"
