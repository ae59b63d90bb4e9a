"""Indexes for the technician API's device list at fleet scale: the -lastSeenAt order, and trigram GIN indexes for
the substring search (pg_trgm). Measured at 100,000 devices: bench/RESULTS.md, "Technician API at 100,000
devices"."""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models
from django.db.models import F
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    dependencies = [("devices", "0004_telemetry_rollups")]

    operations = [
        TrigramExtension(),
        migrations.AddIndex(
            model_name="device",
            index=models.Index(F("last_seen_at").desc(nulls_last=True), F("id").desc(), name="devices_last_seen_id"),
        ),
        migrations.AddIndex(
            model_name="device",
            index=GinIndex(OpClass(Upper("hostname"), name="gin_trgm_ops"), name="devices_hostname_trgm"),
        ),
        migrations.AddIndex(
            model_name="device",
            index=GinIndex(OpClass(Upper("display_name"), name="gin_trgm_ops"), name="devices_display_name_trgm"),
        ),
    ]
