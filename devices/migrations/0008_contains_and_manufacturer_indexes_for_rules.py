"""Indexes for two common rule conditions, from the index study in bench/RESULTS.md (100,000 devices, 15 million
software rows): ``software.installed contains`` (a trigram GIN led by org_id, which needs btree_gin: a broad
4-condition rule with a contains went from 222 to 36 ms; 493 MB, a 150-program upload 3.4 → 4.0 ms median) and
``hardware.manufacturer equals`` (0.7 MB). Built CONCURRENTLY, so uploads go on while they build."""

import django.db.models.functions.text
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently, BtreeGinExtension
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("devices", "0007_software_name_index_for_rules")]

    operations = [
        BtreeGinExtension(),
        AddIndexConcurrently(
            model_name="devicesoftware",
            index=GinIndex(
                models.F("org"),
                OpClass(django.db.models.functions.text.Upper("name"), name="gin_trgm_ops"),
                name="device_software_org_name_trgm",
            ),
        ),
        AddIndexConcurrently(
            model_name="devicehardware",
            index=models.Index(
                models.F("org"),
                django.db.models.functions.text.Upper("manufacturer"),
                name="device_hardware_org_maker",
            ),
        ),
    ]
