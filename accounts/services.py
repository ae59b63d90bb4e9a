"""Signing in: the rules shared by the API login endpoint and the admin login form."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import audit
from accounts.auth import issue_api_token, issue_setup_token, verify_second_factor
from accounts.models import ApiToken, LoginFailure, OrganizationUser, PartnerUser, Role, RolePermission, User


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


# --- memberships -----------------------------------------------------------------------------------------------


class MembershipError(ValueError):
    """A membership that breaks a tenancy rule; ``str()`` says which."""


def _check_role(role: Role, *, scope: str, partner_id) -> None:
    if role.scope != scope:
        raise MembershipError(
            f"Role {role.name!r} has scope {role.scope!r}; this membership needs a role of scope {str(scope)!r}."
        )
    if role.partner_id is not None and role.partner_id != partner_id:
        raise MembershipError(f"Role {role.name!r} belongs to another partner.")


def grant_partner_access(
    *, partner, user: User, role: Role, org_access: str, organizations=(), actor: User | None = None
) -> PartnerUser:
    """Make ``user`` a member of ``partner`` (or change their membership); ``actor`` (None: the operator) must
    not hand out more than they hold.

    ``org_access`` is ``all``, ``selected`` (exactly ``organizations``, which must be the partner's; an empty
    selection reaches nothing) or ``none`` (partner-level objects only).
    """
    _check_role(role, scope=Role.Scope.PARTNER, partner_id=partner.pk)
    check_can_grant(actor, role_permission_names(role), partner_id=partner.pk)
    if org_access not in PartnerUser.OrgAccess.values:
        raise MembershipError(f"org_access must be one of {', '.join(PartnerUser.OrgAccess.values)}.")
    organizations = list(organizations)
    foreign = [org.slug for org in organizations if org.partner_id != partner.pk]
    if foreign:
        raise MembershipError(f"Not organizations of partner {partner.slug!r}: {', '.join(foreign)}.")
    if organizations and org_access != PartnerUser.OrgAccess.SELECTED:
        raise MembershipError("Organizations can only be listed with org_access 'selected'.")
    with transaction.atomic():
        membership, _ = PartnerUser.objects.update_or_create(
            partner=partner, user=user, defaults={"role": role, "org_access": org_access}
        )
        membership.selected_organizations.set(organizations)
    return membership


def grant_organization_access(*, org, user: User, role: Role, sites=(), actor: User | None = None) -> OrganizationUser:
    """Make ``user`` a member of ``org`` (or change their membership); with ``sites``, only those are reached."""
    _check_role(role, scope=Role.Scope.ORGANIZATION, partner_id=org.partner_id)
    check_can_grant(actor, role_permission_names(role), org_id=org.pk)
    sites = list(sites)
    foreign = [site.name for site in sites if site.org_id != org.pk]
    if foreign:
        raise MembershipError(f"Not sites of organization {org.slug!r}: {', '.join(foreign)}.")
    with transaction.atomic():
        membership, _ = OrganizationUser.objects.update_or_create(org=org, user=user, defaults={"role": role})
        membership.sites.set(sites)
    return membership


# --- no escalation ---------------------------------------------------------------------------------------------


class EscalationRefused(PermissionError):
    """The actor tried to hand out (or define) more than they hold themselves."""


def _held_for_granting(actor: User, *, partner_id=None, org_id=None) -> frozenset[str] | None:
    """What the actor holds where the grant takes effect: partner-level permissions for a partner role or
    membership, whole-organization permissions for an organization membership. None: out of reach."""
    from rmm import authz

    current = authz.reach(actor)
    if org_id is not None:
        entry = current.orgs.get(org_id)
        # A member restricted to some sites cannot hand out organization-wide access.
        return entry.org_permissions if entry is not None and entry.whole_org else None
    return current.partners.get(partner_id)


def check_can_grant(actor: User | None, permissions, *, partner_id=None, org_id=None) -> None:
    """Refuse unless ``actor`` holds ``users:write`` where the grant takes effect and every one of
    ``permissions`` there too (wildcards count only against held wildcards: handing out ``*:*`` needs ``*:*``).
    ``actor`` None is the operator (management commands); superusers may grant anything."""
    from rmm.authz import covers

    if actor is None or actor.is_superuser:
        return
    held = _held_for_granting(actor, partner_id=partner_id, org_id=org_id)
    if held is None or not covers(held, "users:write"):
        raise EscalationRefused("You may not manage access here (users:write is needed).")
    missing = sorted(perm for perm in permissions if not covers(held, perm))
    if missing:
        raise EscalationRefused(f"You cannot grant permissions you do not hold: {', '.join(missing)}.")


def role_permission_names(role: Role) -> list[str]:
    return [f"{resource}:{action}" for resource, action in role.permissions.values_list("resource", "action")]


# --- who may change whom -----------------------------------------------------------------------------------------


def may_manage_user(actor: User, target: User) -> bool:
    """May ``actor`` change or delete ``target`` (email, password, status)? Taking over an account takes over all
    its access, so only when ``actor`` could have granted every one of ``target``'s memberships themselves
    (``check_can_grant``): never a superuser, never a person also serving tenants out of the actor's reach or
    holding more than the actor there."""
    if actor.is_superuser and actor.is_active:
        return True
    if target.is_superuser:
        return False
    partner_rows = list(PartnerUser.objects.filter(user=target).values_list("partner_id", "role_id"))
    org_rows = list(OrganizationUser.objects.filter(user=target).values_list("org_id", "role_id"))
    perms: defaultdict[object, list[str]] = defaultdict(list)
    grants = RolePermission.objects.filter(role_id__in={role_id for _, role_id in partner_rows + org_rows})
    for role_id, resource, action in grants.values_list("role_id", "permission__resource", "permission__action"):
        perms[role_id].append(f"{resource}:{action}")
    try:
        for partner_id, role_id in partner_rows:
            check_can_grant(actor, perms[role_id], partner_id=partner_id)
        for org_id, role_id in org_rows:
            check_can_grant(actor, perms[role_id], org_id=org_id)
    except EscalationRefused:
        return False
    return True


def may_manage_membership(actor: User, membership: PartnerUser | OrganizationUser) -> bool:
    """May ``actor`` change or remove ``membership``? Only if they could grant its current role there: nobody
    demotes or removes a member more powerful than themselves (as the API's memberships)."""
    where = (
        {"partner_id": membership.partner_id} if isinstance(membership, PartnerUser) else {"org_id": membership.org_id}
    )
    try:
        check_can_grant(actor, role_permission_names(membership.role), **where)
    except EscalationRefused:
        return False
    return True
