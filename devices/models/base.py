from __future__ import annotations

from django.db import models

from rmm.model_base import UUIDModel


class DeviceOwned(UUIDModel):
    """A row that belongs to one device, with the device's organization copied beside it.

    ``org_id`` lets scoping and indexes work without a join; a composite foreign key
    (device_id, org_id) → devices(id, org_id) ON DELETE CASCADE keeps it equal to the device's.
    The single-column foreign keys therefore carry no database constraint of their own.
    """

    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, db_constraint=False)
    org = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="organization",
    )

    class Meta:
        abstract = True
