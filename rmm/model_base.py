"""Building blocks shared by every app's models."""

from __future__ import annotations

import functools
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models

from rmm.ids import uuid7


class UUIDModel(models.Model):
    """A row whose primary key is a time-ordered UUID generated in Python."""

    id = models.UUIDField("ID", primary_key=True, default=uuid7, editable=False)

    class Meta:
        abstract = True


class TimeStampedModel(UUIDModel):
    """A mutable row: UUID primary key plus ``created_at`` / ``updated_at``."""

    created_at = models.DateTimeField(auto_now_add=True, db_index=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def choices_check(field: str, choices: type[models.TextChoices], *, nullable: bool = False):
    """A CHECK constraint so the database itself refuses a value outside a ``TextChoices`` enum."""
    condition = models.Q(**{f"{field}__in": choices.values})
    if nullable:
        condition |= models.Q(**{f"{field}__isnull": True})
    return models.CheckConstraint(condition=condition, name=f"%(app_label)s_%(class)s_{field}_valid")


@functools.cache
def _iana_time_zones() -> frozenset[str]:
    # Reading the database walks hundreds of files: once per process is enough (it changes with a package upgrade,
    # which restarts the server anyway).
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    """A time-zone field holds a name of the IANA database (``Europe/Berlin``, ``UTC``), nothing else.

    The validator of every time-zone field of the models: ModelSerializers and admin forms both run a model field's
    validators, so the API and the admin refuse the same values with the same message.
    """
    if value not in _iana_time_zones():
        raise ValidationError(
            "%(value)s is not a time zone of the IANA database; use a name such as Europe/Berlin, "
            "America/New_York or UTC.",
            code="invalid_time_zone",
            params={"value": repr(value)},
        )


def time_zone_field(**kwargs) -> models.CharField:
    """A column holding an IANA time-zone name (see :func:`validate_time_zone`)."""
    return models.CharField(max_length=64, default="UTC", validators=[validate_time_zone], **kwargs)
