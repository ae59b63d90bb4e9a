"""IPv6 addresses with a zone id (``fe80::1%eth0``; Windows writes ``fe80::1%12``) are stored without it.

Operating systems list link-local addresses with the interface they are reached through, and agents other than ours
send them as listed. The zone means nothing off the machine; with a long interface name it ran past the columns'
45 characters, and one such address refused the whole upload (400) — every interface or connection of the device.
"""

from __future__ import annotations

import pytest
from django.test import Client

from devices.models import DeviceNetworkConnection, DeviceNetworkInterface
from tests.agent.conftest import assert_error, enroll

pytestmark = pytest.mark.django_db

LONG_ZONE = "fe80::1c2d:3e4f:5a6b:7c8d%enx0123456789abcdef0"  # past the columns' 45 characters with its zone


def test_a_network_upload_with_zone_ids_stores_the_addresses_without_them(agent):
    adapters = [
        {"interfaceName": "enx0123456789abcdef", "macAddress": "01:23:45:67:89:ab", "ipAddress": LONG_ZONE},
        {"interfaceName": "Ethernet", "macAddress": "00:1a:2b:3c:4d:5e", "ipAddress": "fe80::20%12"},
        {"interfaceName": "Ethernet", "macAddress": "00:1a:2b:3c:4d:5e", "ipAddress": "192.168.1.20"},
    ]
    assert len(LONG_ZONE) > 45
    response = agent.put("network", {"adapters": adapters})
    assert response.status_code == 204, response.content
    stored = DeviceNetworkInterface.objects.filter(device_id=agent.device_id)
    assert sorted(stored.values_list("ip_address", "ip_type")) == [
        ("192.168.1.20", "ipv4"),
        ("fe80::1c2d:3e4f:5a6b:7c8d", "ipv6"),
        ("fe80::20", "ipv6"),
    ]


def test_connections_with_zone_ids_are_stored_without_them(agent):
    connections = [
        {"protocol": "tcp", "localAddr": LONG_ZONE, "localPort": 22, "remoteAddr": "fe80::9%eth0", "remotePort": 50000},
        {"protocol": "udp", "localAddr": "*", "localPort": 5353},
    ]
    response = agent.put("connections", {"connections": connections})
    assert response.status_code == 204, response.content
    stored = DeviceNetworkConnection.objects.filter(device_id=agent.device_id).order_by("local_port")
    addresses = list(stored.values_list("local_addr", "remote_addr"))
    assert addresses == [("fe80::1c2d:3e4f:5a6b:7c8d", "fe80::9"), ("*", "")]


def test_enrollment_interfaces_with_zone_ids_are_stored_without_them(key):
    raw, _ = key
    network = [{"name": "eth0", "mac": "00:1a:2b:3c:4d:5e", "ip": "fe80::1%eth0", "isPrimary": True}]
    response = enroll(Client(), raw, networkInfo=network)
    assert response.status_code == 201, response.content
    device_id = response.json()["deviceId"]
    assert list(DeviceNetworkInterface.objects.filter(device_id=device_id).values_list("ip_address", flat=True)) == [
        "fe80::1"
    ]


def test_a_percent_sign_is_no_licence_for_anything_else(agent):
    bad = [{"interfaceName": "eth0", "ipAddress": "not-an-address%eth0"}, {"interfaceName": "eth1", "ipAddress": "%"}]
    body = assert_error(agent.put("network", {"adapters": bad}), 400, "validation_error")
    assert set(body["fields"]) == {"adapters[0].ipAddress", "adapters[1].ipAddress"}
