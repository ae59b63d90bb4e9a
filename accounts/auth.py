"""Credentials of people: personal API tokens, TOTP multi-factor sign-in, recovery codes, MFA set-up tokens.

Secrets are never stored: API tokens as SHA-256, recovery codes as HMAC-SHA-256 keyed with SECRET_KEY.
Refused bearer tokens are counted per address, and every second-factor check per user (``accounts.throttle``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

import pyotp
from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions

from accounts import throttle
from accounts.models import ApiToken, MfaRecoveryCode, User
from devices.services import credentials
from rmm.net import client_ip

SETUP_TOKEN_PREFIX = "rmms_"  # noqa: S105
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "RMM"
_SETUP_SALT = "accounts.mfa-setup"
# Writing last_used_at on every request would turn every API read into a write; once a minute is enough.
_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


# --- personal API tokens ---------------------------------------------------------------------------------------


def issue_api_token(*, user: User, name: str, lifetime: dt.timedelta | None) -> tuple[str, ApiToken]:
    """Create a token for ``user``; return the raw token (shown once) and its row."""
    minted = credentials.mint_api_token()
    token = ApiToken.objects.create(
        user=user,
        name=name,
        key_prefix=minted.prefix,
        key_hash=minted.hash,
        expires_at=timezone.now() + lifetime if lifetime else None,
    )
    return minted.raw, token


def user_for_api_token(raw: str) -> tuple[User, ApiToken] | None:
    """The active user and token behind a raw token, or None if it is unknown, expired, revoked or disabled."""
    if not credentials.api_token_is_well_formed(raw):
        return None
    token = ApiToken.objects.select_related("user").filter(key_hash=credentials.hash_api_token(raw)).first()
    if token is None or token.revoked_at is not None:
        return None
    now = timezone.now()
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


def _bearer(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer rmmu_…`` — a personal API token."""

    def authenticate(self, request):
        raw = _bearer(request)
        if raw is None or not credentials.api_token_is_well_formed(raw):
            return None
        found = user_for_api_token(raw)
        if found is None:
            throttle.count_refusal(throttle.Scope.API_TOKEN, client_ip(request))  # 429 past the address's limit
            raise exceptions.AuthenticationFailed("The API token is invalid, expired or revoked.", code="invalid_token")
        return found

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


# --- MFA set-up tokens (force_mfa users who have not enrolled yet) ---------------------------------------------

SETUP_TOKEN_MAX_AGE = dt.timedelta(minutes=10)


def issue_setup_token(user: User) -> str:
    """A short-lived token that only the MFA set-up and enable endpoints accept."""
    return SETUP_TOKEN_PREFIX + signing.dumps({"u": str(user.pk)}, salt=_SETUP_SALT, compress=True)


def user_for_setup_token(raw: str) -> User | None:
    if not raw.startswith(SETUP_TOKEN_PREFIX):
        return None
    try:
        data = signing.loads(raw[len(SETUP_TOKEN_PREFIX) :], salt=_SETUP_SALT, max_age=SETUP_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    user = User.objects.filter(pk=data.get("u")).first()
    return user if user is not None and user.is_active else None


class MfaSetupTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer rmms_…`` — accepted only by the views that list it (MFA set-up and enable)."""

    def authenticate(self, request):
        raw = _bearer(request)
        if raw is None or not raw.startswith(SETUP_TOKEN_PREFIX):
            return None
        user = user_for_setup_token(raw)
        if user is None:
            throttle.count_refusal(throttle.Scope.API_TOKEN, client_ip(request))
            raise exceptions.AuthenticationFailed("The set-up token is invalid or expired.", code="invalid_token")
        return user, None

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


# --- TOTP ------------------------------------------------------------------------------------------------------


def begin_mfa_setup(user: User) -> tuple[str, str]:
    """Give ``user`` a new (not yet enabled) TOTP secret; return it and its otpauth:// URI for an authenticator."""
    secret = pyotp.random_base32()
    User.objects.filter(pk=user.pk).update(mfa_secret=secret, mfa_last_totp_step=None)
    user.mfa_secret, user.mfa_last_totp_step = secret, None
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    return secret, uri


def _accept_totp(user: User, code: str) -> bool:
    """True once for a current TOTP code: the accepted time step is recorded, so the same code cannot be replayed."""
    code = code.strip().replace(" ", "")
    if not user.mfa_secret or not code.isdigit() or len(code) != 6:
        return False
    totp = pyotp.TOTP(user.mfa_secret)
    now = timezone.now()
    step_now = int(now.timestamp()) // totp.interval
    for step in (step_now, step_now - 1, step_now + 1):  # one step of clock drift either way
        if hmac.compare_digest(totp.at(step * totp.interval), code):
            # Compare-and-set: two concurrent requests with the same code cannot both win.
            won = User.objects.filter(
                Q(mfa_last_totp_step__isnull=True) | Q(mfa_last_totp_step__lt=step), pk=user.pk
            ).update(mfa_last_totp_step=step)
            if won:
                user.mfa_last_totp_step = step
            return bool(won)
    return False


def _recovery_hash(user: User, code: str) -> str:
    normalised = code.strip().lower().replace("-", "").replace(" ", "")
    return hmac.new(settings.SECRET_KEY.encode(), f"{user.pk}:{normalised}".encode(), hashlib.sha256).hexdigest()


def _use_recovery_code(user: User, code: str) -> bool:
    return bool(
        MfaRecoveryCode.objects.filter(user=user, code_hash=_recovery_hash(user, code), used_at__isnull=True).update(
            used_at=timezone.now()
        )
    )


def _throttled_check(user: User, check) -> bool:
    # Counted before the check, withdrawn if it passes: concurrent guesses get exactly MFA_MAX_FAILURES checks.
    attempt = throttle.begin_second_factor(user.pk)  # raises rmm.errors.TooManyAttempts at the limit
    if check():
        attempt.withdraw()
        return True
    return False


def verify_second_factor(user: User, code: str) -> bool:
    """A current TOTP code (accepted once) or an unused recovery code (consumed).

    Every check counts against the user's second-factor throttle: ``rmm.errors.TooManyAttempts`` once
    MFA_MAX_FAILURES wrong codes were given within the window, through any door.
    """
    return _throttled_check(user, lambda: bool(code) and (_accept_totp(user, code) or _use_recovery_code(user, code)))


def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with fresh ones; return them (they are shown once)."""
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODE_COUNT)]
    with transaction.atomic():
        MfaRecoveryCode.objects.filter(user=user).delete()
        MfaRecoveryCode.objects.bulk_create(
            [MfaRecoveryCode(user=user, code_hash=_recovery_hash(user, code)) for code in codes]
        )
    return codes


def enable_mfa(user: User, code: str) -> list[str] | None:
    """Turn MFA on once the user proves their authenticator works; return recovery codes, or None if the code
    is wrong (throttled like ``verify_second_factor``)."""
    if not _throttled_check(user, lambda: _accept_totp(user, code)):
        return None
    User.objects.filter(pk=user.pk).update(mfa_enabled=True)
    user.mfa_enabled = True
    return new_recovery_codes(user)


def disable_mfa(user: User, code: str) -> bool:
    """Turn MFA off, given a valid second factor; forget the secret and the recovery codes."""
    if not verify_second_factor(user, code):
        return False
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(mfa_enabled=False, mfa_secret="", mfa_last_totp_step=None)
        MfaRecoveryCode.objects.filter(user=user).delete()
    user.mfa_enabled, user.mfa_secret = False, ""
    return True
