from __future__ import annotations

from rest_framework import serializers

from orgs.models import EnrollmentKey, Organization, Partner, Site
from rmm.api import CamelCaseModelSerializer, ScopedRelatedField


class PartnerSerializer(CamelCaseModelSerializer):
    class Meta:
        model = Partner
        fields = [
            "id",
            "name",
            "slug",
            "type",
            "status",
            "max_organizations",
            "max_devices",
            "timezone",
            "settings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]


class OrganizationSerializer(CamelCaseModelSerializer):
    partner_id = ScopedRelatedField(
        perm="partners:read",
        source="partner",
        queryset=Partner.objects.all(),
        required=False,
        help_text="Required when you belong to more than one partner.",
    )

    class Meta:
        model = Organization
        fields = [
            "id",
            "partner_id",
            "name",
            "slug",
            "type",
            "status",
            "max_devices",
            "settings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        # Uniqueness is checked in validate() against the right field; DRF's own validator would make
        # partnerId required and answer with a vague non-field error.
        validators: list[object] = []

    def validate(self, attrs):
        if self.instance is not None and "partner" in attrs and attrs["partner"] != self.instance.partner:
            raise serializers.ValidationError({"partnerId": ["An organization cannot move to another partner."]})
        partner = attrs.get("partner") or getattr(self.instance, "partner", None)
        slug = attrs.get("slug")
        if partner is not None and slug is not None:
            clash = Organization.objects.filter(partner=partner, slug=slug)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError(
                    {"slug": ["This partner already has an organization with that slug."]}
                )
        return attrs


class SiteSerializer(CamelCaseModelSerializer):
    org_id = ScopedRelatedField(perm="organizations:read", source="org", queryset=Organization.objects.all())

    class Meta:
        model = Site
        fields = ["id", "org_id", "name", "timezone", "address", "contact", "settings", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list[object] = []  # (org, name) uniqueness is checked in validate(), naming the field

    def validate(self, attrs):
        if self.instance is not None and "org" in attrs and attrs["org"] != self.instance.org:
            raise serializers.ValidationError({"orgId": ["A site cannot move to another organization."]})
        org = attrs.get("org") or getattr(self.instance, "org", None)
        name = attrs.get("name")
        if org is not None and name is not None:
            clash = Site.objects.filter(org=org, name=name)
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise serializers.ValidationError({"name": ["This organization already has a site of that name."]})
        return attrs


class EnrollmentKeySerializer(CamelCaseModelSerializer):
    """An enrollment key as listed: never the key itself, only its prefix."""

    org_id = serializers.UUIDField(read_only=True)
    site_id = ScopedRelatedField(perm="devices:write", source="site", queryset=Site.objects.all())
    expires_in_hours = serializers.IntegerField(min_value=1, max_value=24 * 365, required=False, write_only=True)

    class Meta:
        model = EnrollmentKey
        fields = [
            "id", "org_id", "site_id", "name", "key_prefix", "usage_count", "max_usage", "expires_at", "revoked_at",
            "created_at", "expires_in_hours",
        ]  # fmt: skip
        read_only_fields = ["id", "key_prefix", "usage_count", "expires_at", "revoked_at", "created_at"]


class EnrollmentKeyCreatedSerializer(EnrollmentKeySerializer):
    """A key as POST enrollment-keys answers it: with the raw key, shown this once."""

    key = serializers.CharField(read_only=True, help_text="Give it to the agent; only its HMAC is stored.")

    class Meta(EnrollmentKeySerializer.Meta):
        fields = [*EnrollmentKeySerializer.Meta.fields, "key"]
