from devices.models.commands import DeviceCommand
from devices.models.device import Device
from devices.models.groups import DeviceGroup, DeviceGroupMembership, DeviceGroupMembershipLog
from devices.models.inventory import (
    DeviceConfigEntry,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)
from devices.models.telemetry import DeviceTelemetry

__all__ = [
    "Device",
    "DeviceCommand",
    "DeviceConfigEntry",
    "DeviceDisk",
    "DeviceGroup",
    "DeviceGroupMembership",
    "DeviceGroupMembershipLog",
    "DeviceHardware",
    "DeviceNetworkConnection",
    "DeviceNetworkInterface",
    "DeviceRegistryEntry",
    "DeviceSoftware",
    "DeviceTelemetry",
]
