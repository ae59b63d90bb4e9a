from __future__ import annotations

from rest_framework import serializers
from rest_framework.relations import MANY_RELATION_KWARGS

from accounts.models import ApiToken, AuditLog, OrganizationUser, PartnerUser, Permission, Role, User
from orgs.models import Organization, Partner, Site
from rmm import authz
from rmm.api import CamelCaseFieldsMixin, CamelCaseModelSerializer, CamelCaseSerializer, ScopedRelatedField
from rmm.errors import ErrorSerializer


class LoginSerializer(CamelCaseSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)
    totp = serializers.CharField(max_length=32, required=False, allow_blank=True)


class TotpSerializer(CamelCaseSerializer):
    totp = serializers.CharField(max_length=32)


class CurrentUserSerializer(CamelCaseModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name", "status", "mfa_enabled", "is_superuser"]


class LoginAnswerSerializer(CamelCaseSerializer):
    """What POST auth/login answers."""

    token = serializers.CharField(help_text="A personal API token (`rmmu_…`): send it as `Authorization: Bearer`.")
    expires_at = serializers.DateTimeField(allow_null=True)
    user = CurrentUserSerializer()


class MfaEnrollmentRequiredSerializer(CamelCaseFieldsMixin, ErrorSerializer):
    """The 428 of a login whose role forces MFA before the user has enrolled."""

    setup_token = serializers.CharField(
        help_text="`rmms_…`, valid for minutes: send it as `Authorization: Bearer` to auth/mfa/setup and enable."
    )


class MfaSetupAnswerSerializer(CamelCaseSerializer):
    secret = serializers.CharField(help_text="The TOTP secret, base32.")
    otpauth_uri = serializers.CharField(help_text="An otpauth:// URI, for a QR code.")


class MfaStatusSerializer(CamelCaseSerializer):
    mfa_enabled = serializers.BooleanField()


class RecoveryCodesSerializer(CamelCaseSerializer):
    recovery_codes = serializers.ListField(
        child=serializers.CharField(), help_text="One-time codes that stand in for the authenticator; shown only now."
    )


class MfaEnabledSerializer(MfaStatusSerializer, RecoveryCodesSerializer):
    pass


class ApiTokenSerializer(CamelCaseModelSerializer):
    expires_in_days = serializers.IntegerField(min_value=1, max_value=3650, required=False, write_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "key_prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "expires_in_days",
        ]
        read_only_fields = ["key_prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """A token as POST api-tokens answers it: with the raw token, shown this once."""

    token = serializers.CharField(read_only=True, help_text="`rmmu_…`; only its hash is stored.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class PermissionSerializer(CamelCaseModelSerializer):
    class Meta:
        model = Permission
        fields = ["id", "resource", "action", "description"]


class PermissionNamesField(serializers.ListField):
    """A role's permissions, written and read as names like ``devices:read`` (validated by the serializer)."""

    child = serializers.CharField(max_length=101)

    def to_representation(self, data):
        return sorted(f"{p.resource}:{p.action}" for p in data.all())


class RoleSerializer(CamelCaseModelSerializer):
    partner_id = ScopedRelatedField(
        perm="users:read",
        source="partner",
        queryset=Partner.objects.all(),
        allow_null=True,
        help_text="Null for a built-in role; a custom role names its partner.",
    )
    permissions = PermissionNamesField(allow_empty=True, help_text='Like ["devices:read", "sites:*"].')

    class Meta:
        model = Role
        fields = [
            "id",
            "name",
            "scope",
            "partner_id",
            "is_system",
            "force_mfa",
            "description",
            "permissions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "is_system", "created_at", "updated_at"]
        validators = []  # (partner, name) uniqueness is checked in validate(), naming the field

    def validate_partner_id(self, partner):
        if partner is None:
            raise serializers.ValidationError("A custom role belongs to a partner.")
        return partner

    def validate_scope(self, value):
        if value not in (Role.Scope.PARTNER, Role.Scope.ORGANIZATION):
            raise serializers.ValidationError("A custom role is of scope 'partner' or 'organization'.")
        if self.instance is not None and value != self.instance.scope:
            raise serializers.ValidationError("A role's scope cannot change; its memberships depend on it.")
        return value

    def validate_permissions(self, value):
        registry = {str(permission): permission for permission in Permission.objects.all()}
        unknown = sorted(set(value) - set(registry))
        if unknown:
            raise serializers.ValidationError(f"Not in the permission registry: {', '.join(unknown)}.")
        return [registry[name] for name in sorted(set(value))]

    def validate(self, attrs):
        partner = attrs.get("partner") or getattr(self.instance, "partner", None)
        name = attrs.get("name")
        if partner is not None and name is not None:
            clash = Role.objects.filter(partner=partner, name=name).exclude(pk=getattr(self.instance, "pk", None))
            if clash.exists() or Role.objects.filter(partner__isnull=True, name=name).exists():
                raise serializers.ValidationError({"name": ["A role of that name exists already."]})
        if self.instance is not None and "partner" in attrs and attrs["partner"] != self.instance.partner:
            raise serializers.ValidationError({"partnerId": ["A role cannot move to another partner."]})
        return attrs


class _InReachManyField(serializers.ManyRelatedField):
    """Reads back only the related objects inside the requester's reach (``authz.in_reach``)."""

    def to_representation(self, iterable):
        user = self.context["request"].user
        return [self.child_relation.to_representation(obj) for obj in iterable if authz.in_reach(user, obj)]


class InReachRelatedField(ScopedRelatedField):
    """A ``ScopedRelatedField`` list that is also *read* through the requester's reach: ids of objects outside it
    are left out of the answer, so a list does not tell one tenant what another one holds."""

    @classmethod
    def many_init(cls, *args, **kwargs):
        many = {key: value for key, value in kwargs.items() if key in MANY_RELATION_KWARGS}
        return _InReachManyField(child_relation=cls(*args, **kwargs), **many)


class PartnerUserSerializer(CamelCaseModelSerializer):
    """A partner membership. ``organizationIds`` lists only the selected organizations inside the reader's reach:
    a membership is a partner-level row (read with partner-level ``users:read``), but which organizations it
    selects is organization-level knowledge. Whoever does not reach them all cannot change that membership anyway
    (its reach exceeds theirs), so the shortened list is never written back."""

    partner_id = ScopedRelatedField(perm="users:read", source="partner", queryset=Partner.objects.all())
    user_id = ScopedRelatedField(perm="users:read", source="user", queryset=User.objects.all())
    role_id = ScopedRelatedField(perm="users:read", source="role", queryset=Role.objects.all())
    organization_ids = InReachRelatedField(
        perm="organizations:read",
        source="selected_organizations",
        queryset=Organization.objects.all(),
        many=True,
        required=False,
        help_text="With orgAccess 'selected': the organizations reached. Read back: only those inside your reach.",
    )

    class Meta:
        model = PartnerUser
        fields = [
            "id",
            "partner_id",
            "user_id",
            "role_id",
            "org_access",
            "organization_ids",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []


class OrganizationUserSerializer(CamelCaseModelSerializer):
    org_id = ScopedRelatedField(perm="users:read", source="org", queryset=Organization.objects.all())
    user_id = ScopedRelatedField(perm="users:read", source="user", queryset=User.objects.all())
    role_id = ScopedRelatedField(perm="users:read", source="role", queryset=Role.objects.all())
    site_ids = ScopedRelatedField(
        perm="sites:read", source="sites", queryset=Site.objects.all(), many=True, required=False
    )

    class Meta:
        model = OrganizationUser
        fields = ["id", "org_id", "user_id", "role_id", "site_ids", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []


class UserSerializer(CamelCaseModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name", "status", "mfa_enabled", "last_login", "date_joined"]
        read_only_fields = ["id", "email", "mfa_enabled", "last_login", "date_joined"]


class InviteSerializer(CamelCaseSerializer):
    """A new user and their first membership, created together so the user is inside the inviter's reach."""

    email = serializers.EmailField()
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    password = serializers.CharField(
        max_length=1024,
        required=False,
        write_only=True,
        trim_whitespace=False,
        help_text="Optional: without one the user is 'invited' and cannot sign in until a password is set.",
    )
    role_id = ScopedRelatedField(perm="users:read", queryset=Role.objects.all())
    partner_id = ScopedRelatedField(perm="users:read", queryset=Partner.objects.all(), required=False)
    org_access = serializers.ChoiceField(choices=PartnerUser.OrgAccess.choices, required=False)
    organization_ids = ScopedRelatedField(
        perm="organizations:read", queryset=Organization.objects.all(), many=True, required=False
    )
    org_id = ScopedRelatedField(perm="users:read", queryset=Organization.objects.all(), required=False)
    site_ids = ScopedRelatedField(perm="sites:read", queryset=Site.objects.all(), many=True, required=False)

    def validate_email(self, value):
        if User.objects.filter(email__iexact=value).exists():
            raise serializers.ValidationError("A user with this email exists already; add a membership instead.")
        return value.lower()

    def validate(self, attrs):
        if bool(attrs.get("partner_id")) == bool(attrs.get("org_id")):
            raise serializers.ValidationError({"nonFieldErrors": ["Give either partnerId or orgId."]})
        return attrs


class AuditLogSerializer(CamelCaseModelSerializer):
    actor_user_id = serializers.UUIDField(read_only=True, allow_null=True)
    actor_device_id = serializers.UUIDField(read_only=True, allow_null=True)
    org_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = AuditLog
        fields = [
            "id", "created_at", "actor_user_id", "actor_device_id", "org_id", "action", "target_type", "target_id",
            "details", "ip",
        ]  # fmt: skip
