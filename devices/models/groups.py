"""Device groups: hand-picked (static) or defined by a filter rule (dynamic), with materialised membership."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from rmm.model_base import TimeStampedModel, UUIDModel, choices_check


class DeviceGroupType(models.TextChoices):
    STATIC = "static"
    DYNAMIC = "dynamic"


class DeviceGroup(TimeStampedModel):
    """A named set of devices of one organization (optionally one site) to view and target together."""

    Type = DeviceGroupType

    org = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="device_groups", verbose_name="organization"
    )
    site = models.ForeignKey(
        "orgs.Site",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="device_groups",
        help_text="Empty means the whole organization.",
    )
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.STATIC)
    filter_rules = models.JSONField(null=True, blank=True, help_text="Dynamic groups only; see filter-rules.md.")
    fields_used = ArrayField(models.TextField(), default=list, blank=True, editable=False)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")

    class Meta:
        db_table = "device_groups"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="%(app_label)s_%(class)s_name_per_org"),
            models.UniqueConstraint(fields=["id", "org"], name="%(app_label)s_%(class)s_id_org"),
            choices_check("type", DeviceGroupType),
            models.CheckConstraint(
                condition=models.Q(type="dynamic", filter_rules__isnull=False)
                | models.Q(type="static", filter_rules__isnull=True),
                name="%(app_label)s_%(class)s_rules_iff_dynamic",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DeviceGroupMembershipAddedBy(models.TextChoices):
    MANUAL = "manual"
    DYNAMIC_RULE = "dynamic_rule", "Dynamic rule"


class DeviceGroupMembership(UUIDModel):
    """A device's membership in a group. Device and group are of the same organization: composite foreign
    keys (device_id, org_id) and (group_id, org_id) make the database refuse anything else."""

    AddedBy = DeviceGroupMembershipAddedBy

    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, db_constraint=False, related_name="group_memberships"
    )
    group = models.ForeignKey(
        DeviceGroup, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="memberships"
    )
    org = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="organization",
    )
    is_pinned = models.BooleanField("pinned", default=False)
    added_by = models.CharField(max_length=20, choices=AddedBy.choices, default=AddedBy.MANUAL)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "device_group_memberships"
        constraints = [
            models.UniqueConstraint(fields=["device", "group"], name="%(app_label)s_%(class)s_unique"),
            choices_check("added_by", DeviceGroupMembershipAddedBy),
        ]
        indexes = [models.Index(fields=["group", "device"], name="device_group_memb_group_device")]

    def __str__(self) -> str:
        # Names both ends (a query each unless loaded with the row, as the admin's lists and inlines do).
        return f"{self.device} in {self.group}"


class DeviceGroupMembershipChange(models.TextChoices):
    ADDED = "added"
    REMOVED = "removed"
    PINNED = "pinned"
    UNPINNED = "unpinned"


class DeviceGroupMembershipReason(models.TextChoices):
    RULE = "rule", "the group's rule"
    MANUAL = "manual", "a person"


class DeviceGroupMembershipLog(UUIDModel):
    """One change of a group's membership: which device, added/removed/pinned/unpinned, why, when and by whom.

    Append-only history for "why is this device (not) in this group?". Rows of a dynamic group's evaluation have
    reason ``rule`` and no actor; a person's add, remove, pin or unpin has reason ``manual`` and the actor.
    """

    Change = DeviceGroupMembershipChange
    Reason = DeviceGroupMembershipReason

    group = models.ForeignKey(
        DeviceGroup, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="membership_log"
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+"
    )
    org = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="organization",
    )
    change = models.CharField(max_length=10, choices=Change.choices)
    reason = models.CharField(max_length=10, choices=Reason.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="person",
    )
    at = models.DateTimeField("time", default=timezone.now)

    class Meta:
        db_table = "device_group_membership_log"
        verbose_name = "group membership change"
        ordering = ["-at"]
        constraints = [
            choices_check("change", DeviceGroupMembershipChange),
            choices_check("reason", DeviceGroupMembershipReason),
        ]
        indexes = [
            models.Index(fields=["group", "-at"], name="device_group_log_group_at"),
            models.Index(fields=["device", "-at"], name="device_group_log_device_at"),
        ]

    def __str__(self) -> str:
        # "host-01 added to Windows servers" (a query for each end unless loaded with the row).
        prepositions: dict[str, str] = {self.Change.ADDED: "to", self.Change.REMOVED: "from"}
        preposition = prepositions.get(self.change, "in")
        return f"{self.device} {self.change} {preposition} {self.group}"
