from __future__ import annotations

from rest_framework import serializers

from accounts.models import ApiToken, User
from rmm.api import CamelCaseModelSerializer, CamelCaseSerializer


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
