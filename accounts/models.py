"""People, their roles and memberships, their API tokens, and the audit log of what they (and agents) did."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from rmm.ids import uuid7
from rmm.model_base import TimeStampedModel, UUIDModel, choices_check


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username):
        return self.get(email__iexact=username)

    def _create(self, email: str, password: str | None, **fields):
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **fields):
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields):
        fields["is_staff"] = True
        fields["is_superuser"] = True
        return self._create(email, password, **fields)


class UserStatus(models.TextChoices):
    ACTIVE = "active"
    INVITED = "invited"
    DISABLED = "disabled"


class User(AbstractBaseUser, PermissionsMixin):
    """A person who signs in: an operator of the installation, a partner's technician, a customer's admin.

    The email is the login name and is unique regardless of case. ``mfa_secret`` is never displayed after set-up.
    """

    Status = UserStatus

    id = models.UUIDField("ID", primary_key=True, default=uuid7, editable=False)
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=255, blank=True)
    mfa_enabled = models.BooleanField("MFA enabled", default=False)
    mfa_secret = models.CharField("MFA secret", max_length=64, blank=True, editable=False)
    # The 30-second TOTP time step of the last accepted code: a code is accepted once, never replayed.
    mfa_last_totp_step = models.BigIntegerField("last TOTP time step", null=True, blank=True, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    is_staff = models.BooleanField("staff status", default=False, help_text="May sign in to the admin.")
    date_joined = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        db_table = "users"
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="%(app_label)s_%(class)s_email_ci_unique"),
            choices_check("status", UserStatus),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_active(self) -> bool:  # type: ignore[override]  # derived from status; Django's auth only reads it
        return self.status != self.Status.DISABLED

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email


class Permission(UUIDModel):
    """One entry of the permission registry: an action on a resource (``devices:execute``); ``*`` is a wildcard."""

    resource = models.CharField(max_length=50)
    action = models.CharField(max_length=50)
    description = models.CharField(max_length=255, blank=True)

    class Meta:
        db_table = "permissions"
        ordering = ["resource", "action"]
        constraints = [
            models.UniqueConstraint(fields=["resource", "action"], name="%(app_label)s_%(class)s_resource_action"),
        ]

    def __str__(self) -> str:
        return f"{self.resource}:{self.action}"


class RoleScope(models.TextChoices):
    SYSTEM = "system"
    PARTNER = "partner"
    ORGANIZATION = "organization"


class Role(TimeStampedModel):
    """A named set of permissions granted through a membership; built-in roles have no partner."""

    Scope = RoleScope

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=20, choices=Scope.choices)
    partner = models.ForeignKey(
        "orgs.Partner",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="roles",
        help_text="Empty for a built-in role.",
    )
    is_system = models.BooleanField("built-in", default=False, help_text="Built-in roles cannot be edited.")
    force_mfa = models.BooleanField("requires MFA", default=False)
    description = models.TextField(blank=True)
    permissions: models.ManyToManyField[Permission, RolePermission] = models.ManyToManyField(
        Permission, through="RolePermission", related_name="roles"
    )

    class Meta:
        db_table = "roles"
        ordering = ["name"]
        constraints = [
            # unique (partner_id, name), with NULL partners (built-in roles) counted as equal: two constraints,
            # because NULLS NOT DISTINCT needs PostgreSQL 15 and we support 14.
            models.UniqueConstraint(
                fields=["partner", "name"],
                condition=models.Q(partner__isnull=False),
                name="%(app_label)s_%(class)s_name_per_partner",
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(partner__isnull=True),
                name="%(app_label)s_%(class)s_builtin_name",
            ),
            choices_check("scope", RoleScope),
        ]

    def __str__(self) -> str:
        return self.name


class RolePermission(UUIDModel):
    """A permission granted by a role."""

    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="role_permissions")
    permission = models.ForeignKey(Permission, on_delete=models.CASCADE, related_name="+")

    class Meta:
        db_table = "role_permissions"
        constraints = [
            models.UniqueConstraint(fields=["role", "permission"], name="%(app_label)s_%(class)s_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.permission}"


class PartnerUserOrgAccess(models.TextChoices):
    ALL = "all"
    SELECTED = "selected"
    NONE = "none"


class PartnerUser(TimeStampedModel):
    """A user's membership in a partner, reaching its organizations according to ``org_access``.

    ``selected`` with no organizations selected reaches nothing: an empty scope never means everything.
    """

    OrgAccess = PartnerUserOrgAccess

    partner = models.ForeignKey("orgs.Partner", on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="partner_memberships")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="partner_memberships")
    org_access = models.CharField(
        "organization access", max_length=20, choices=OrgAccess.choices, default=OrgAccess.NONE
    )
    selected_organizations = models.ManyToManyField(
        "orgs.Organization", blank=True, related_name="selected_by", db_table="partner_user_organizations"
    )

    class Meta:
        db_table = "partner_users"
        verbose_name = "partner membership"
        constraints = [
            models.UniqueConstraint(fields=["partner", "user"], name="%(app_label)s_%(class)s_unique"),
            choices_check("org_access", PartnerUserOrgAccess),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.partner} ({self.role})"


class OrganizationUser(TimeStampedModel):
    """A user's membership in one organization; with sites listed, only those sites are reached."""

    org = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="memberships", verbose_name="organization"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="org_memberships")
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="org_memberships")
    sites = models.ManyToManyField(
        "orgs.Site",
        blank=True,
        related_name="restricted_members",
        db_table="organization_user_sites",
        help_text="Empty means every site of the organization.",
    )

    class Meta:
        db_table = "organization_users"
        verbose_name = "organization membership"
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="%(app_label)s_%(class)s_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.org} ({self.role})"


class ApiToken(TimeStampedModel):
    """A personal token (``rmmu_…``) for scripts and the UI API; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_tokens"
        verbose_name = "API token"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"


class AuditAction(models.TextChoices):
    """Every action name the audit log may hold: ``<noun>.<verb>``, the same whichever door (API, admin, a
    management command, the scheduler, an agent) the action came through. ``accounts.audit.record`` takes only
    these. Rows written before this list existed may hold other names; the column keeps no constraint for them."""

    ALERT_ACKNOWLEDGE = "alert.acknowledge"
    ALERT_RESOLVE = "alert.resolve"
    ALERT_RULE_CREATE = "alert_rule.create"
    ALERT_RULE_UPDATE = "alert_rule.update"
    ALERT_RULE_DELETE = "alert_rule.delete"
    API_TOKEN_CREATE = "api_token.create"  # noqa: S105 (an action name, not a secret)
    API_TOKEN_REVOKE = "api_token.revoke"  # noqa: S105
    API_TOKEN_DELETE = "api_token.delete"  # noqa: S105 (the admin deletes the row; the API revokes it)
    COMMAND_QUEUE = "command.queue"
    COMMAND_CANCEL = "command.cancel"
    DEVICE_ENROLL = "device.enroll"
    DEVICE_UPDATE = "device.update"
    DEVICE_QUARANTINE = "device.quarantine"
    DEVICE_APPROVE = "device.approve"
    DEVICE_DECOMMISSION = "device.decommission"
    DEVICE_REQUEST_TOKEN_ROTATION = "device.request_token_rotation"  # noqa: S105
    DEVICE_ROTATE_TOKEN = "device.rotate_token"  # noqa: S105
    DEVICE_GROUP_CREATE = "device_group.create"
    DEVICE_GROUP_UPDATE = "device_group.update"
    DEVICE_GROUP_DELETE = "device_group.delete"
    DEVICE_GROUP_COMMANDS = "device_group.commands"
    DEVICE_GROUP_MEMBERS_ADD = "device_group.members_add"
    DEVICE_GROUP_MEMBERS_REMOVE = "device_group.members_remove"
    DEVICE_GROUP_MEMBERS_PIN = "device_group.members_pin"
    DEVICE_GROUP_MEMBERS_UNPIN = "device_group.members_unpin"
    ENROLLMENT_KEY_CREATE = "enrollment_key.create"
    ENROLLMENT_KEY_UPDATE = "enrollment_key.update"
    ENROLLMENT_KEY_REVOKE = "enrollment_key.revoke"
    ENROLLMENT_KEY_DELETE = "enrollment_key.delete"
    MAINTENANCE_WINDOW_CREATE = "maintenance_window.create"
    MAINTENANCE_WINDOW_UPDATE = "maintenance_window.update"
    MAINTENANCE_WINDOW_DELETE = "maintenance_window.delete"
    NOTIFICATION_CHANNEL_CREATE = "notification_channel.create"
    NOTIFICATION_CHANNEL_UPDATE = "notification_channel.update"
    NOTIFICATION_CHANNEL_DELETE = "notification_channel.delete"
    NOTIFICATION_CHANNEL_TEST = "notification_channel.test"
    ORGANIZATION_CREATE = "organization.create"
    ORGANIZATION_UPDATE = "organization.update"
    ORGANIZATION_DELETE = "organization.delete"
    ORGANIZATION_USER_CREATE = "organization_user.create"
    ORGANIZATION_USER_UPDATE = "organization_user.update"
    ORGANIZATION_USER_DELETE = "organization_user.delete"
    PARTNER_CREATE = "partner.create"
    PARTNER_UPDATE = "partner.update"
    PARTNER_DELETE = "partner.delete"
    PARTNER_USER_CREATE = "partner_user.create"
    PARTNER_USER_UPDATE = "partner_user.update"
    PARTNER_USER_DELETE = "partner_user.delete"
    PERMISSION_CREATE = "permission.create"
    PERMISSION_UPDATE = "permission.update"
    PERMISSION_DELETE = "permission.delete"
    ROLE_CREATE = "role.create"
    ROLE_UPDATE = "role.update"
    ROLE_DELETE = "role.delete"
    ROLE_PERMISSION_CREATE = "role_permission.create"
    ROLE_PERMISSION_UPDATE = "role_permission.update"
    ROLE_PERMISSION_DELETE = "role_permission.delete"
    SCRIPT_CREATE = "script.create"
    SCRIPT_UPDATE = "script.update"
    SCRIPT_ARCHIVE = "script.archive"
    SCRIPT_RUN = "script.run"  # a run queued: by a person (API, admin) or by a schedule (no actor)
    SCRIPT_RUN_CANCEL = "script_run.cancel"
    SCRIPT_SCHEDULE_CREATE = "script_schedule.create"
    SCRIPT_SCHEDULE_UPDATE = "script_schedule.update"
    SCRIPT_SCHEDULE_DELETE = "script_schedule.delete"
    SCRIPT_SCHEDULE_FAIL = "script_schedule.fail"  # a firing that could not run (archived script, deleted group…)
    SITE_CREATE = "site.create"
    SITE_UPDATE = "site.update"
    SITE_DELETE = "site.delete"
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_DELETE = "user.delete"
    USER_LOGIN = "user.login"
    USER_MFA_ENABLE = "user.mfa_enable"
    USER_MFA_DISABLE = "user.mfa_disable"
    USER_MFA_RECOVERY_CODES = "user.mfa_recovery_codes"


class AuditLog(UUIDModel):
    """One state-changing action by a person or an agent. Append-only: a trigger refuses UPDATE and DELETE.

    The actor and organization references carry no foreign-key constraint on purpose: the record of who did
    what must outlive the deletion of that user, device or organization.
    """

    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="person",
    )
    actor_device = models.ForeignKey(
        "devices.Device",
        verbose_name="device (agent)",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    org = models.ForeignKey(
        "orgs.Organization",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name="organization",
    )
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=50, blank=True)
    target_id = models.CharField("target ID", max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    created_at = models.DateTimeField("time", default=timezone.now, editable=False)

    class Meta:
        db_table = "audit_log"
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log entries"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="audit_log_org_created"),
            models.Index(fields=["actor_user", "-created_at"], name="audit_log_actor_created"),
            models.Index(fields=["target_type", "target_id"], name="audit_log_target"),
            models.Index(fields=["action", "-created_at"], name="audit_log_action_created"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"


class MfaRecoveryCode(UUIDModel):
    """A one-time code that stands in for a TOTP code when the authenticator is lost. Only its HMAC is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mfa_recovery_codes")
    code_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "mfa_recovery_codes"
        verbose_name = "MFA recovery code"
        constraints = [
            models.UniqueConstraint(fields=["user", "code_hash"], name="%(app_label)s_%(class)s_unique"),
        ]

    def __str__(self) -> str:
        # Names the user (a query unless it is loaded: the admin's list selects it with the row).
        return f"recovery code of {self.user} ({'used' if self.used_at else 'unused'})"


class ThrottleScope(models.TextChoices):
    """What a row of ``recent_failures`` counts, and so what its ``subject`` is (``accounts.throttle``)."""

    SIGN_IN_PAIR = "sign_in_pair", "sign-in failures of one email from one address"
    SIGN_IN_ADDRESS = "sign_in_address", "sign-in failures from one address"
    SIGN_IN_EMAIL = "sign_in_email", "sign-in failures of one email"
    SECOND_FACTOR = "second_factor", "wrong second-factor codes of one user"
    ENROLLMENT = "enrollment", "refused enrollments from one address"
    AGENT_TOKEN = "agent_token", "refused agent tokens from one address"
    API_TOKEN = "api_token", "refused API tokens from one address"


class RecentFailures(UUIDModel):
    """The times of the recent failures of one kind for one subject (an address, an email, a user), which a
    throttle counts: one row per (scope, subject), written by one atomic statement (``accounts.throttle``).

    Kept in the database rather than a cache so every worker and every server sees the same count. Times older than
    the window are dropped on each write; rows with nothing left are purged by ``manage.py run_periodic``.
    """

    Scope = ThrottleScope

    scope = models.CharField(max_length=20, choices=ThrottleScope.choices)
    subject = models.TextField()
    failed_at = ArrayField(models.DateTimeField(), default=list)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "recent_failures"
        verbose_name_plural = "recent failures"
        constraints = [
            models.UniqueConstraint(fields=["scope", "subject"], name="%(app_label)s_%(class)s_one_per_subject"),
            choices_check("scope", ThrottleScope),
        ]

    def __str__(self) -> str:
        return f"{self.get_scope_display()}: {self.subject}"
