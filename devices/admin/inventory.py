"""Fleet-wide lists of the rows agents report (hardware, interfaces, disks, software, registry, config, connections)."""

from __future__ import annotations

from django.contrib import admin

from devices.admin.common import (
    DeviceRowAdmin,
)
from devices.models import (
    DeviceConfigEntry,
    DeviceDisk,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)


@admin.register(DeviceHardware)
class DeviceHardwareAdmin(DeviceRowAdmin):
    """The hardware summary of each device (one row per device)."""

    list_display = ("device", "manufacturer", "model", "serial_number", "cpu_model", "cpu_cores", "ram_total_mb")
    search_fields = ("=serial_number", "device__hostname", "model")
    fields = (
        "device",
        "org",
        "manufacturer",
        "model",
        "serial_number",
        "cpu_model",
        "cpu_cores",
        "cpu_threads",
        "ram_total_mb",
        "disk_total_gb",
        "gpu_model",
        "bios_version",
        "updated_at",
    )


@admin.register(DeviceNetworkInterface)
class DeviceNetworkInterfaceAdmin(DeviceRowAdmin):
    """Addresses of every device's network adapters."""

    list_display = ("device", "interface_name", "ip_address", "ip_type", "mac_address", "is_primary", "public_ip")
    list_filter = ("ip_type", "is_primary", *DeviceRowAdmin.list_filter)
    search_fields = ("=ip_address", "=mac_address", "=public_ip", "device__hostname")
    # Leading with device_id lets PostgreSQL walk the device_id index and sort only within each device.
    ordering = ("device_id", "interface_name")
    fields = ("device", "org", "interface_name", "ip_address", "ip_type", "mac_address", "is_primary", "public_ip")


@admin.register(DeviceDisk)
class DeviceDiskAdmin(DeviceRowAdmin):
    """Mounted volumes of every device, with their fill level and health."""

    list_display = ("device", "mount_point", "fs_type", "total_gb", "used_percent", "health")
    list_filter = ("health", *DeviceRowAdmin.list_filter)
    search_fields = ("mount_point", "device__hostname")
    ordering = ("device_id", "mount_point")
    fields = (
        "device",
        "org",
        "mount_point",
        "device_name",
        "fs_type",
        "total_gb",
        "used_gb",
        "free_gb",
        "used_percent",
        "health",
        "updated_at",
    )


@admin.register(DeviceSoftware)
class DeviceSoftwareAdmin(DeviceRowAdmin):
    """Installed programs of every device: "which devices have X" is a search by name."""

    list_display = ("name", "version", "publisher", "device", "install_date")
    search_fields = ("name", "publisher", "device__hostname")
    ordering = ("device_id", "name")
    fields = ("device", "org", "name", "version", "publisher", "install_date", "install_location", "updated_at")


@admin.register(DeviceRegistryEntry)
class DeviceRegistryEntryAdmin(DeviceRowAdmin):
    """Windows registry values agents were asked to collect."""

    list_display = ("device", "registry_path", "value_name", "value_type", "value_data", "collected_at")
    search_fields = ("registry_path", "value_name", "device__hostname")
    # The unique index (device_id, registry_path, value_name) serves this order.
    ordering = ("device_id", "registry_path", "value_name")
    fields = ("device", "org", "registry_path", "value_name", "value_type", "value_data", "collected_at")


@admin.register(DeviceConfigEntry)
class DeviceConfigEntryAdmin(DeviceRowAdmin):
    """Configuration-file keys agents were asked to collect."""

    list_display = ("device", "file_path", "config_key", "config_value", "collected_at")
    search_fields = ("file_path", "config_key", "device__hostname")
    ordering = ("device_id", "file_path", "config_key")
    fields = ("device", "org", "file_path", "config_key", "config_value", "collected_at")


@admin.register(DeviceNetworkConnection)
class DeviceNetworkConnectionAdmin(DeviceRowAdmin):
    """Open sockets seen on every device."""

    list_display = (
        "device",
        "protocol",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "state",
        "process_name",
    )
    list_filter = ("protocol", *DeviceRowAdmin.list_filter)
    search_fields = ("=remote_addr", "=local_port", "process_name", "device__hostname")
    ordering = ("device_id", "protocol", "local_port")
    fields = (
        "device",
        "org",
        "protocol",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "state",
        "pid",
        "process_name",
        "updated_at",
    )
