"""Building blocks shared by every app's models."""

from __future__ import annotations

from django.db import models

from rmm.ids import uuid7


class UUIDModel(models.Model):
    """A row whose primary key is a time-ordered UUID generated in Python."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)

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
