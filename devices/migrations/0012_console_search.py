"""Two indexes for the console's device search (issue 16).

By LAN address: ``device_network_interfaces.ip_address``
alone, with ``varchar_pattern_ops`` so that it answers both an exact address and a subnet prefix (``10.0.1.``; the
database's collation is not C, so a plain btree cannot serve LIKE). The ``(org_id, ip_address)`` index serves only a
search scoped to organizations; an operator's search, and the UNION branch that finds the interfaces before the
list is scoped, scanned the whole table. Measured with 200,000 interfaces (2 per device, 100,000 devices): an exact
address 24 ms → 0.05 ms, a /24 prefix 9.8 ms → 0.06 ms (EXPLAIN ANALYZE).

By serial number: ``device_hardware.serial_number`` alone. The ``(org_id, serial_number)`` index does not serve an
operator's search (no organization), which scanned every hardware row on every search: 11-20 ms at 100,000 devices.

Built CONCURRENTLY, so inventory uploads go on while they build."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("devices", "0011_command_script_run")]

    operations = [
        AddIndexConcurrently(
            model_name="devicenetworkinterface",
            index=models.Index(fields=["ip_address"], name="device_netif_ip", opclasses=["varchar_pattern_ops"]),
        ),
        AddIndexConcurrently(
            model_name="devicehardware",
            index=models.Index(fields=["serial_number"], name="device_hardware_serial"),
        ),
    ]
