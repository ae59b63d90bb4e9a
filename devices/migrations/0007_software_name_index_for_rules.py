"""Software names indexed as rules compare them, case-insensitively: (org_id, UPPER(name)) replaces (org_id, name),
which no query used. Built CONCURRENTLY: on an installation with millions of software rows a plain CREATE INDEX
would block inventory uploads for minutes."""

import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("devices", "0006_group_membership_log_and_refresh_queue"),
        ("orgs", "0002_enrollment_key_site_in_org"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="devicesoftware",
            index=models.Index(
                models.F("org"), django.db.models.functions.text.Upper("name"), name="device_software_org_upper_name"
            ),
        ),
        RemoveIndexConcurrently(model_name="devicesoftware", name="device_software_org_name"),
    ]
