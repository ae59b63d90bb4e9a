"""Signing in: the rules shared by the API login endpoint and the admin login form."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db.models import Q
from django.utils import timezone

from accounts import audit
from accounts.auth import issue_api_token, issue_setup_token, verify_second_factor
from accounts.models import ApiToken, LoginFailure, Role, User


class LoginRefused(Exception):
    """Sign-in refused; ``code`` and ``status`` are the API's answer, ``extra`` goes into the body."""

    def __init__(self, status: int, code: str, message: str, extra: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


@dataclass
class Login:
    user: User
    token: str
    token_row: ApiToken


def role_forces_mfa(user: User) -> bool:
    """True when any role the user holds, through any membership, has ``force_mfa``."""
    return Role.objects.filter(
        Q(partner_memberships__user=user) | Q(org_memberships__user=user), force_mfa=True
    ).exists()


def _window_start() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def _throttled(email: str, ip: str | None) -> bool:
    since = _window_start()
    limit = settings.LOGIN_MAX_FAILURES
    if LoginFailure.objects.filter(email=email, created_at__gte=since).count() >= limit:
        return True
    return ip is not None and LoginFailure.objects.filter(ip=ip, created_at__gte=since).count() >= limit


def _fail(email: str, ip: str | None) -> None:
    LoginFailure.objects.create(email=email, ip=ip)
    # Keep the table small: this email's failures that no longer count.
    LoginFailure.objects.filter(email=email, created_at__lt=_window_start()).delete()


def check_credentials(*, email: str, password: str, totp: str | None, ip: str | None) -> User:
    """The user behind these credentials, or LoginRefused with the spec's answer.

    Order matters: the throttle is checked before the password (so guessing stops), and whether an account is
    disabled or needs MFA is only revealed to someone who knows its password.
    """
    email = email.strip().lower()
    if _throttled(email, ip):
        minutes = settings.LOGIN_FAILURE_WINDOW_SECONDS // 60
        raise LoginRefused(429, "too_many_attempts", f"Too many failed sign-ins; try again in {minutes} minutes.")

    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        make_password(password)  # spend the same time as for a real user, so timing does not reveal emails
        _fail(email, ip)
        raise LoginRefused(401, "invalid_credentials", "The email or password is wrong.")
    if not user.check_password(password):
        _fail(email, ip)
        raise LoginRefused(401, "invalid_credentials", "The email or password is wrong.")
    if user.status == User.Status.DISABLED:
        raise LoginRefused(403, "account_disabled", "This account is disabled.")

    if not user.mfa_enabled and role_forces_mfa(user):
        raise LoginRefused(
            428,
            "mfa_enrollment_required",
            "Your role requires multi-factor sign-in: set it up with the setupToken, then sign in again.",
            {"setupToken": issue_setup_token(user)},
        )
    if user.mfa_enabled:
        if not totp:
            raise LoginRefused(401, "mfa_required", "Give the current code of your authenticator app (totp).")
        if not verify_second_factor(user, totp):
            _fail(email, ip)
            raise LoginRefused(401, "invalid_totp", "The authenticator code is wrong or was already used.")
    return user


def login(*, email: str, password: str, totp: str | None, ip: str | None) -> Login:
    """Check the credentials and issue a personal API token for the session."""
    user = check_credentials(email=email, password=password, totp=totp, ip=ip)
    raw, token = issue_api_token(user=user, name="login", lifetime=dt.timedelta(hours=settings.LOGIN_TOKEN_HOURS))
    updates = {"last_login": timezone.now()}
    if user.status == User.Status.INVITED:
        updates["status"] = User.Status.ACTIVE  # the first sign-in accepts the invitation
    User.objects.filter(pk=user.pk).update(**updates)
    audit.record(action="user.login", actor_user=user, target=user, ip=ip, details={"token": token.key_prefix})
    return Login(user=user, token=raw, token_row=token)
