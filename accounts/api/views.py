"""Signing in and managing one's own credentials: login, logout, MFA, personal API tokens."""

from __future__ import annotations

import datetime as dt

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import auth, services
from accounts.api.serializers import (
    ApiTokenCreatedSerializer,
    ApiTokenSerializer,
    CurrentUserSerializer,
    LoginAnswerSerializer,
    LoginSerializer,
    MfaEnabledSerializer,
    MfaEnrollmentRequiredSerializer,
    MfaSetupAnswerSerializer,
    MfaStatusSerializer,
    RecoveryCodesSerializer,
    TotpSerializer,
)
from accounts.models import ApiToken
from rmm.net import client_ip
from rmm.openapi import error_answer

_WRONG_TOTP = error_answer("`invalid_totp`: the code is wrong or was already used.")
_TOO_MANY_CODES = error_answer(
    "`too_many_attempts`: too many wrong codes for this user (login, enable, disable and recovery codes count "
    "together); `Retry-After` gives the seconds to wait."
)


class LoginView(APIView):
    """POST {email, password, totp?} → {token, expiresAt, user}."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=LoginSerializer,
        responses={
            200: LoginAnswerSerializer,
            401: error_answer("`invalid_credentials` (also for an unknown email), `mfa_required` or `invalid_totp`."),
            403: error_answer("`account_disabled`."),
            428: error_answer(
                "`mfa_enrollment_required`: a role forces MFA; enroll with `setupToken`, then sign in again.",
                MfaEnrollmentRequiredSerializer,
            ),
            429: error_answer(
                "`too_many_attempts`: too many failed sign-ins for this email from this address, or from this "
                "address, or too many wrong codes for this user; `Retry-After` gives the seconds to wait."
            ),
        },
    )
    def post(self, request):
        body = LoginSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = services.login(  # its refusals are domain errors, answered by rmm.errors.exception_handler
            email=body.validated_data["email"],
            password=body.validated_data["password"],
            totp=body.validated_data.get("totp") or None,
            ip=client_ip(request),
        )
        return Response(
            {
                "token": result.token,
                "expiresAt": result.token_row.expires_at,
                "user": CurrentUserSerializer(result.user).data,
            }
        )


class LogoutView(APIView):
    """POST → revokes the API token the request was made with."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        if isinstance(request.auth, ApiToken):
            services.revoke_api_token(token=request.auth, actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """GET → the signed-in user."""

    @extend_schema(responses=CurrentUserSerializer)
    def get(self, request):
        return Response(CurrentUserSerializer(request.user).data)


class _MfaView(APIView):
    # The set-up token of a force_mfa user who has not enrolled yet is accepted here, and only here.
    authentication_classes = [auth.MfaSetupTokenAuthentication, auth.ApiTokenAuthentication]
    permission_classes = [IsAuthenticated]

    def totp(self, request) -> str:
        body = TotpSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return body.validated_data["totp"]


class MfaSetupView(_MfaView):
    """POST → a new TOTP secret and its otpauth:// URI (MFA stays off until enabled with a code)."""

    @extend_schema(
        request=None,
        responses={200: MfaSetupAnswerSerializer, 409: error_answer("`mfa_already_enabled`.")},
    )
    def post(self, request):
        secret, uri = services.start_mfa_setup(user=request.user)
        return Response({"secret": secret, "otpauthUri": uri})


class MfaEnableView(_MfaView):
    """POST {totp} → MFA on, with ten one-time recovery codes (shown only now)."""

    @extend_schema(
        request=TotpSerializer,
        responses={
            200: MfaEnabledSerializer,
            400: _WRONG_TOTP,
            409: error_answer("`mfa_already_enabled`, or `mfa_setup_required` (call auth/mfa/setup first)."),
            429: _TOO_MANY_CODES,
        },
    )
    def post(self, request):
        codes = services.turn_on_mfa(user=request.user, code=self.totp(request), ip=client_ip(request))
        return Response({"mfaEnabled": True, "recoveryCodes": codes})


class MfaDisableView(_MfaView):
    """POST {totp} → MFA off (refused while a role of the user forces it)."""

    authentication_classes = [auth.ApiTokenAuthentication]

    @extend_schema(
        request=TotpSerializer,
        responses={
            200: MfaStatusSerializer,
            400: _WRONG_TOTP,
            403: error_answer("`mfa_required_by_role`: a role you hold requires MFA."),
            409: error_answer("`mfa_not_enabled`."),
            429: _TOO_MANY_CODES,
        },
    )
    def post(self, request):
        services.turn_off_mfa(user=request.user, code=self.totp(request), ip=client_ip(request))
        return Response({"mfaEnabled": False})


class MfaRecoveryCodesView(_MfaView):
    """POST {totp} → ten new recovery codes; the old ones stop working."""

    authentication_classes = [auth.ApiTokenAuthentication]

    @extend_schema(
        request=TotpSerializer,
        responses={
            200: RecoveryCodesSerializer,
            400: _WRONG_TOTP,
            409: error_answer("`mfa_not_enabled`."),
            429: _TOO_MANY_CODES,
        },
    )
    def post(self, request):
        codes = services.renew_recovery_codes(user=request.user, code=self.totp(request), ip=client_ip(request))
        return Response({"recoveryCodes": codes})


@extend_schema_view(create=extend_schema(responses={201: ApiTokenCreatedSerializer}))
class ApiTokenViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The signed-in user's own personal API tokens. POST answers the raw token once; DELETE revokes."""

    serializer_class = ApiTokenSerializer

    def get_queryset(self):
        # Own tokens only: a person's tokens are nobody else's business, whatever their role.
        return ApiToken.objects.filter(user_id=self.request.user.pk).order_by("-created_at")

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        days = body.validated_data.get("expires_in_days")
        raw, token = services.create_api_token(
            user=request.user,
            name=body.validated_data["name"],
            lifetime=dt.timedelta(days=days) if days else None,
            ip=client_ip(request),
        )
        return Response({**self.get_serializer(token).data, "token": raw}, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.revoke_api_token(token=instance, actor=self.request.user, ip=client_ip(self.request))
