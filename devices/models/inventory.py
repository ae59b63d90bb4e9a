"""What an agent reports about its machine. Each upload replaces the device's rows of that kind in one
transaction, so these rows are never edited in place (hardware, one row per device, is the exception)."""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F
from django.db.models.functions import Upper
from django.utils import timezone

from devices.models.base import DeviceOwned
from rmm.model_base import choices_check


class DeviceHardware(DeviceOwned):
    """The device's hardware summary: one row per device."""

    device = models.OneToOneField(
        "devices.Device", on_delete=models.CASCADE, db_constraint=False, related_name="hardware"
    )
    cpu_model = models.CharField("CPU model", max_length=255, blank=True)
    cpu_cores = models.PositiveIntegerField("CPU cores", null=True, blank=True)
    cpu_threads = models.PositiveIntegerField("CPU threads", null=True, blank=True)
    ram_total_mb = models.PositiveBigIntegerField("RAM (MB)", null=True, blank=True)
    disk_total_gb = models.FloatField("disk total (GB)", null=True, blank=True)
    gpu_model = models.CharField("GPU model", max_length=255, blank=True)
    serial_number = models.CharField(max_length=255, blank=True)
    manufacturer = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255, blank=True)
    bios_version = models.CharField("BIOS version", max_length=255, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_hardware"
        verbose_name_plural = "device hardware"
        indexes = [
            models.Index(fields=["org", "serial_number"], name="device_hardware_org_serial"),
            # The console's search by serial number across organizations (an operator's; migration 0012).
            models.Index(fields=["serial_number"], name="device_hardware_serial"),
            # hardware.manufacturer equals/in, as rules compare it (case-insensitively, within one organization).
            models.Index(F("org"), Upper("manufacturer"), name="device_hardware_org_maker"),
        ]

    def __str__(self) -> str:
        return " ".join(filter(None, [self.manufacturer, self.model])) or "hardware"


class DeviceNetworkInterfaceIpType(models.TextChoices):
    IPV4 = "ipv4", "IPv4"
    IPV6 = "ipv6", "IPv6"


class DeviceNetworkInterface(DeviceOwned):
    """One address of one network adapter."""

    IpType = DeviceNetworkInterfaceIpType

    interface_name = models.CharField("interface", max_length=255)
    mac_address = models.CharField("MAC address", max_length=17, blank=True)
    ip_address = models.CharField("IP address", max_length=45, blank=True)
    ip_type = models.CharField("IP type", max_length=4, choices=IpType.choices, default=IpType.IPV4)
    is_primary = models.BooleanField("primary", default=False)
    public_ip = models.CharField("public IP", max_length=45, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_network_interfaces"
        constraints = [choices_check("ip_type", DeviceNetworkInterfaceIpType)]
        indexes = [
            models.Index(fields=["org", "ip_address"], name="device_netif_org_ip"),
            # The console's search by LAN address, exact or a prefix (migration 0012).
            models.Index(fields=["ip_address"], name="device_netif_ip", opclasses=["varchar_pattern_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.interface_name} {self.ip_address}".strip()


class DeviceDiskHealth(models.TextChoices):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


class DeviceDisk(DeviceOwned):
    """One mounted volume."""

    Health = DeviceDiskHealth

    mount_point = models.CharField(max_length=1024)
    device_name = models.CharField(max_length=1024, blank=True, db_column="device", verbose_name="device")
    fs_type = models.CharField("file system", max_length=50, blank=True)
    total_gb = models.FloatField("total (GB)", null=True, blank=True)
    used_gb = models.FloatField("used (GB)", null=True, blank=True)
    free_gb = models.FloatField("free (GB)", null=True, blank=True)
    used_percent = models.FloatField("used (%)", null=True, blank=True)
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.UNKNOWN)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_disks"
        constraints = [choices_check("health", DeviceDiskHealth)]

    def __str__(self) -> str:
        return self.mount_point


class DeviceSoftware(DeviceOwned):
    """One installed program."""

    name = models.CharField(max_length=512)
    version = models.CharField(max_length=255, blank=True)
    publisher = models.CharField(max_length=512, blank=True)
    install_date = models.DateField(null=True, blank=True)
    install_location = models.TextField(blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_software"
        verbose_name_plural = "device software"
        indexes = [
            # "Which devices of this organization have X installed?", as rules ask it: case-insensitively
            # (software.installed equals/in compare UPPER(name); bench/RESULTS.md, dynamic groups).
            models.Index(F("org"), Upper("name"), name="device_software_org_upper_name"),
            # software.installed contains: trigram lookups within the organization (btree_gin puts org_id in a GIN).
            GinIndex(F("org"), OpClass(Upper("name"), name="gin_trgm_ops"), name="device_software_org_name_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}".strip()


class DeviceRegistryEntry(DeviceOwned):
    """One Windows registry value the agent was asked to collect."""

    registry_path = models.CharField(max_length=1024)
    value_name = models.CharField(max_length=512)
    value_data = models.TextField(blank=True)
    value_type = models.CharField(max_length=50, blank=True)
    collected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_registry_entries"
        verbose_name_plural = "device registry entries"
        constraints = [
            models.UniqueConstraint(
                fields=["device", "registry_path", "value_name"], name="%(app_label)s_%(class)s_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.registry_path}\\{self.value_name}"


class DeviceConfigEntry(DeviceOwned):
    """One key of a configuration file the agent was asked to collect."""

    file_path = models.CharField(max_length=1024)
    config_key = models.CharField(max_length=512)
    config_value = models.TextField(blank=True)
    collected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_config_entries"
        verbose_name_plural = "device config entries"
        constraints = [
            models.UniqueConstraint(
                fields=["device", "file_path", "config_key"], name="%(app_label)s_%(class)s_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.file_path}: {self.config_key}"


class DeviceNetworkConnectionProtocol(models.TextChoices):
    TCP = "tcp", "TCP"
    TCP6 = "tcp6", "TCP (IPv6)"
    UDP = "udp", "UDP"
    UDP6 = "udp6", "UDP (IPv6)"


class DeviceNetworkConnection(DeviceOwned):
    """One open socket seen on the device."""

    Protocol = DeviceNetworkConnectionProtocol

    protocol = models.CharField(max_length=4, choices=Protocol.choices)
    local_addr = models.CharField("local address", max_length=45)
    local_port = models.PositiveIntegerField()
    remote_addr = models.CharField("remote address", max_length=45, blank=True)
    remote_port = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=20, blank=True)
    pid = models.PositiveIntegerField("PID", null=True, blank=True)
    process_name = models.CharField(max_length=255, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_network_connections"
        constraints = [choices_check("protocol", DeviceNetworkConnectionProtocol)]

    def __str__(self) -> str:
        return f"{self.protocol} {self.local_addr}:{self.local_port} → {self.remote_addr}:{self.remote_port}"
