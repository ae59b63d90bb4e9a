"""People and their access: signing in (the rules shared by the API login endpoint and the admin login form),
memberships and invitations, and the no-escalation rule every door obeys."""

from __future__ import annotations

import datetime as dt
import functools
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from django.conf import settings
from django.contrib.auth.hashers import check_password, get_hasher, make_password
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import audit, throttle
from accounts.auth import (
    begin_mfa_setup,
    disable_mfa,
    enable_mfa,
    issue_api_token,
    issue_setup_token,
    new_recovery_codes,
    verify_second_factor,
)
from accounts.models import ApiToken, AuditAction, OrganizationUser, PartnerUser, Permission, Role, User
from orgs.models import Organization, Partner, Site
from rmm.domain_errors import Conflict, DomainError, Invalid, Refused, StepRequired, Unauthenticated
from rmm.errors import TooManyAttempts


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


@functools.cache
def _stand_in_hash(algorithm: str) -> str:
    return make_password(secrets.token_urlsafe(16), hasher=algorithm)


def _password_is_right(user: User | None, password: str) -> TypeGuard[User]:
    """Check the password with the same work whether the email is unknown, has no usable password (invited,
    never set) or is a real account, so the time of the answer does not tell which."""
    if user is None or not user.has_usable_password():
        check_password(password, _stand_in_hash(get_hasher().algorithm))
        return False
    return user.check_password(password)


def _too_many(refused: TooManyAttempts) -> TooManyAttempts:
    minutes = math.ceil(refused.retry_after / 60)
    wait = f"{minutes} minutes" if minutes > 1 else f"{refused.retry_after} seconds"
    return TooManyAttempts(refused.retry_after, f"Too many failed sign-ins; try again in {wait}.")


# A sign-in refused with one of these codes stays counted as a failed attempt; any other answer withdraws it.
_FAILED_SIGN_INS = frozenset({"invalid_credentials", "invalid_totp"})


def check_credentials(*, email: str, password: str, totp: str | None, ip: str | None) -> User:
    """The user behind these credentials. Otherwise raises ``Unauthenticated`` (a wrong password or code, a missing
    code), ``Refused`` (a disabled account), ``StepRequired`` (the role needs a second factor that is not set up;
    ``extra`` holds the ``setupToken``) or ``TooManyAttempts``, each with the spec's code.

    The attempt is counted by the sign-in throttle (``accounts.throttle.begin_sign_in``) before the password is
    checked, so guessing stops exactly at the limit even under concurrency, and may first wait the email's delay;
    it is withdrawn unless the password or the second factor was wrong. Whether an account is disabled or needs MFA
    is only revealed to someone who knows its password.
    """
    email = email.strip().lower()
    try:
        attempt = throttle.begin_sign_in(email=email, address=ip)
    except TooManyAttempts as refused:
        raise _too_many(refused) from None
    try:
        user = _judge_credentials(email=email, password=password, totp=totp)
    except (DomainError, TooManyAttempts) as refused:
        if refused.code not in _FAILED_SIGN_INS:
            attempt.withdraw()
        raise
    attempt.withdraw()
    return user


def _judge_credentials(*, email: str, password: str, totp: str | None) -> User:
    user = User.objects.filter(email__iexact=email).first()
    if not _password_is_right(user, password):
        raise Unauthenticated("The email or password is wrong.", code="invalid_credentials")
    if user.status == User.Status.DISABLED:
        raise Refused("This account is disabled.", code="account_disabled")

    if not user.mfa_enabled and role_forces_mfa(user):
        raise StepRequired(
            "Your role requires multi-factor sign-in: set it up with the setupToken, then sign in again.",
            code="mfa_enrollment_required",
            extra={"setupToken": issue_setup_token(user)},
        )
    if user.mfa_enabled:
        if not totp:
            raise Unauthenticated("Give the current code of your authenticator app (totp).", code="mfa_required")
        try:
            right = verify_second_factor(user, totp)  # the user's second-factor throttle: 5 wrong codes, then 429
        except TooManyAttempts as refused:
            raise _too_many(refused) from None
        if not right:
            raise Unauthenticated("The authenticator code is wrong or was already used.", code="invalid_totp")
    return user


def login(*, email: str, password: str, totp: str | None, ip: str | None) -> Login:
    """Check the credentials and issue a personal API token for the session."""
    user = check_credentials(email=email, password=password, totp=totp, ip=ip)
    raw, token = issue_api_token(user=user, name="login", lifetime=dt.timedelta(hours=settings.LOGIN_TOKEN_HOURS))
    updates: dict[str, Any] = {"last_login": timezone.now()}
    if user.status == User.Status.INVITED:
        updates["status"] = User.Status.ACTIVE  # the first sign-in accepts the invitation
    User.objects.filter(pk=user.pk).update(**updates)
    audit.record(
        action=AuditAction.USER_LOGIN, actor_user=user, target=user, ip=ip, details={"token": token.key_prefix}
    )
    return Login(user=user, token=raw, token_row=token)


def record_sign_in(*, user: User, ip: str | None, via: str) -> None:
    """The audit row of a sign-in through a door other than the API's login (which :func:`login` records)."""
    audit.record(action=AuditAction.USER_LOGIN, actor_user=user, target=user, ip=ip, details={"via": via})


# --- personal API tokens and the second factor -----------------------------------------------------------------


def create_api_token(
    *, user: User, name: str, lifetime: dt.timedelta | None, ip: str | None = None
) -> tuple[str, ApiToken]:
    """A personal API token of ``user`` (the raw token, to show once, and its row), audited."""
    with transaction.atomic():
        raw, token = issue_api_token(user=user, name=name, lifetime=lifetime)
        audit.record(action=AuditAction.API_TOKEN_CREATE, actor_user=user, target=token, ip=ip)
    return raw, token


def revoke_api_token(*, token: ApiToken, actor: User | None, ip: str | None = None) -> None:
    """End a personal API token (an earlier revocation time is kept), audited."""
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit.record(action=AuditAction.API_TOKEN_REVOKE, actor_user=actor, target=token, ip=ip)


WRONG_CODE = "The code is wrong or was already used."


def _wrong_code() -> Invalid:
    return Invalid(WRONG_CODE, code="invalid_totp", fields={"totp": ["Wrong code."]})


def start_mfa_setup(*, user: User) -> tuple[str, str]:
    """A new authenticator secret and its otpauth:// URI; MFA stays off until :func:`turn_on_mfa`."""
    if user.mfa_enabled:
        raise Conflict("Multi-factor sign-in is already on; disable it first.", code="mfa_already_enabled")
    return begin_mfa_setup(user)


def turn_on_mfa(*, user: User, code: str, ip: str | None = None) -> list[str]:
    """Turn multi-factor sign-in on with a first authenticator code; answers ten one-time recovery codes."""
    if user.mfa_enabled:
        raise Conflict("Multi-factor sign-in is already on.", code="mfa_already_enabled")
    if not user.mfa_secret:
        raise Conflict("Call POST /api/v1/auth/mfa/setup first.", code="mfa_setup_required")
    codes = enable_mfa(user, code)
    if codes is None:
        raise _wrong_code()
    audit.record(action=AuditAction.USER_MFA_ENABLE, actor_user=user, target=user, ip=ip)
    return codes


def turn_off_mfa(*, user: User, code: str, ip: str | None = None) -> None:
    """Turn multi-factor sign-in off with a current code; refused while a role of the user forces it."""
    if not user.mfa_enabled:
        raise Conflict("Multi-factor sign-in is not on.", code="mfa_not_enabled")
    if role_forces_mfa(user):
        raise Refused("A role you hold requires multi-factor sign-in.", code="mfa_required_by_role")
    if not disable_mfa(user, code):
        raise _wrong_code()
    audit.record(action=AuditAction.USER_MFA_DISABLE, actor_user=user, target=user, ip=ip)


def renew_recovery_codes(*, user: User, code: str, ip: str | None = None) -> list[str]:
    """Ten new recovery codes for a current code; the old ones stop working."""
    if not user.mfa_enabled:
        raise Conflict("Multi-factor sign-in is not on.", code="mfa_not_enabled")
    if not verify_second_factor(user, code):
        raise _wrong_code()
    audit.record(action=AuditAction.USER_MFA_RECOVERY_CODES, actor_user=user, target=user, ip=ip)
    return new_recovery_codes(user)


# --- memberships ---------------------------------------------------------------------------------------------
#
# Every door (the API, the admin, ``grant_access``) creates, changes and removes memberships through these
# functions; each checks the rules, writes and records its audit row (``partner_user.*``, ``organization_user.*``,
# saying what changed). Refusals are domain errors: ``MembershipError`` (400) for a membership that breaks a tenancy
# rule, ``EscalationRefused`` (403) for one the actor could not grant.


class MembershipError(Invalid):
    """A membership that breaks a tenancy rule; ``str()`` says which, ``fields`` names the input at fault with the
    API's names (``roleId``, ``orgAccess``, ``organizationIds``, ``siteIds``)."""

    def __init__(self, message: str, *, field: str = "nonFieldErrors"):
        super().__init__(message, fields={field: [message]})


class EscalationRefused(Refused):
    """The actor tried to hand out (or define, or take over) more than they hold themselves."""

    default_code = "escalation_refused"


MEMBERSHIP_BEYOND_ACTOR = "This membership holds more than you could grant yourself (role or reach)."


def _check_role(role: Role, *, scope: str, partner_id) -> None:
    if role.scope != scope:
        raise MembershipError(
            f"Role {role.name!r} has scope {role.scope!r}; this membership needs a role of scope {str(scope)!r}.",
            field="roleId",
        )
    if role.partner_id is not None and role.partner_id != partner_id:
        raise MembershipError(f"Role {role.name!r} belongs to another partner.", field="roleId")


def check_partner_membership(*, partner: Partner, role: Role, org_access: str, organizations: Iterable) -> None:
    """The rules of a partner membership's own fields, for every door (the admin's form asks before saving): a role
    of scope partner (built-in or this partner's), a known ``org_access``, organizations only of this partner and
    only with ``org_access = selected``. Raises :class:`MembershipError`."""
    _check_role(role, scope=Role.Scope.PARTNER, partner_id=partner.pk)
    if org_access not in PartnerUser.OrgAccess.values:
        raise MembershipError(
            f"org_access must be one of {', '.join(PartnerUser.OrgAccess.values)}.", field="orgAccess"
        )
    organizations = list(organizations)
    foreign = [org.slug for org in organizations if org.partner_id != partner.pk]
    if foreign:
        raise MembershipError(
            f"Not organizations of partner {partner.slug!r}: {', '.join(foreign)}.", field="organizationIds"
        )
    if organizations and org_access != PartnerUser.OrgAccess.SELECTED:
        raise MembershipError("Organizations can only be listed with org_access 'selected'.", field="organizationIds")


def check_organization_membership(*, org: Organization, role: Role, sites: Iterable) -> None:
    """The rules of an organization membership's own fields: a role of scope organization (built-in or the
    organization's partner's), sites only of this organization. Raises :class:`MembershipError`."""
    _check_role(role, scope=Role.Scope.ORGANIZATION, partner_id=org.partner_id)
    foreign = [site.name for site in sites if site.org_id != org.pk]
    if foreign:
        raise MembershipError(f"Not sites of organization {org.slug!r}: {', '.join(foreign)}.", field="siteIds")


def _may_change(actor: User | None, existing: PartnerUser | OrganizationUser | None) -> None:
    if existing is not None and actor is not None and not may_manage_membership(actor, existing):
        raise EscalationRefused(MEMBERSHIP_BEYOND_ACTOR)


def _save_partner_membership(
    *, partner: Partner, user: User, role: Role, org_access: str, organizations: Iterable, actor: User | None
) -> tuple[PartnerUser, dict | None]:
    """Check and write a partner membership (inside the caller's transaction); the membership and its state before
    (None: it is new)."""
    existing = PartnerUser.objects.select_for_update().filter(partner=partner, user=user).first()
    _may_change(actor, existing)
    before = membership_state(existing) if existing is not None else None
    organizations = list(organizations)
    check_partner_membership(partner=partner, role=role, org_access=org_access, organizations=organizations)
    check_can_grant(
        actor, role_permission_names(role), partner_id=partner.pk, org_access=org_access, organizations=organizations
    )
    membership, _ = PartnerUser.objects.update_or_create(
        partner=partner, user=user, defaults={"role": role, "org_access": org_access}
    )
    membership.selected_organizations.set(organizations)
    return membership, before


def _save_organization_membership(
    *, org: Organization, user: User, role: Role, sites: Iterable, actor: User | None
) -> tuple[OrganizationUser, dict | None]:
    existing = OrganizationUser.objects.select_for_update().filter(org=org, user=user).first()
    _may_change(actor, existing)
    before = membership_state(existing) if existing is not None else None
    sites = list(sites)
    check_organization_membership(org=org, role=role, sites=sites)
    check_can_grant(actor, role_permission_names(role), org=org, sites=sites)
    membership, _ = OrganizationUser.objects.update_or_create(org=org, user=user, defaults={"role": role})
    membership.sites.set(sites)
    return membership, before


def _audit_membership(
    membership: PartnerUser | OrganizationUser,
    verb: str,
    details: dict,
    *,
    actor: User | None,
    ip: str | None,
    via: str | None,
) -> None:
    audit.record(
        action=audit.action_for(membership, verb),
        actor_user=actor,
        target=membership,
        details={**details, "via": via} if via else details,
        ip=ip,
    )


def grant_partner_access(
    *,
    partner: Partner,
    user: User,
    role: Role,
    org_access: str,
    organizations: Iterable[Organization] = (),
    actor: User | None = None,
    ip: str | None = None,
    via: str | None = None,
) -> PartnerUser:
    """Make ``user`` a member of ``partner`` (or change their membership) and audit it (``partner_user.create`` or
    ``.update``, saying what changed; ``via`` names a door other than the API). ``actor`` (None: the operator)
    must be able to manage the membership as it stands and must not hand out more than they hold
    (``check_can_grant``: the role's permissions and the organization reach).

    ``org_access`` is ``all``, ``selected`` (exactly ``organizations``, which must be the partner's; an empty
    selection reaches nothing) or ``none`` (partner-level objects only).
    """
    with transaction.atomic():
        membership, before = _save_partner_membership(
            partner=partner, user=user, role=role, org_access=org_access, organizations=organizations, actor=actor
        )
        details = audit.changes(before, membership_state(membership))
        _audit_membership(membership, "update" if before else "create", details, actor=actor, ip=ip, via=via)
    return membership


def grant_organization_access(
    *,
    org: Organization,
    user: User,
    role: Role,
    sites: Iterable[Site] = (),
    actor: User | None = None,
    ip: str | None = None,
    via: str | None = None,
) -> OrganizationUser:
    """Make ``user`` a member of ``org`` (or change their membership); with ``sites``, only those are reached.
    Audited as ``organization_user.create`` or ``.update``; the rules as :func:`grant_partner_access`'s."""
    with transaction.atomic():
        membership, before = _save_organization_membership(org=org, user=user, role=role, sites=sites, actor=actor)
        details = audit.changes(before, membership_state(membership))
        _audit_membership(membership, "update" if before else "create", details, actor=actor, ip=ip, via=via)
    return membership


def revoke_access(
    *,
    membership: PartnerUser | OrganizationUser,
    actor: User | None = None,
    ip: str | None = None,
    via: str | None = None,
) -> None:
    """End a partner or organization membership, audited with what it was. Nobody removes a membership they could
    not grant as it stands (``EscalationRefused``)."""
    with transaction.atomic():
        _may_change(actor, membership)
        _audit_membership(
            membership, "delete", audit.changes(membership_state(membership), None), actor=actor, ip=ip, via=via
        )
        membership.delete()


def invite_user(
    *,
    email: str,
    name: str = "",
    password: str | None = None,
    role: Role,
    partner: Partner | None = None,
    org_access: str = PartnerUser.OrgAccess.NONE,
    organizations: Iterable[Organization] = (),
    org: Organization | None = None,
    sites: Iterable[Site] = (),
    actor: User | None = None,
    ip: str | None = None,
    via: str | None = None,
) -> User:
    """A new person together with their first membership, of ``partner`` or of ``org``: active with ``password``
    (which must pass the password validators), invited (no usable password) without. One audit row,
    ``user.create``, holds the person and the membership."""
    if password:
        try:
            validate_password(password)
        except DjangoValidationError as exc:
            raise Invalid("The password is too weak.", fields={"password": list(exc.messages)}) from None
    with transaction.atomic():
        user = User.objects.create_user(
            email,
            password,
            name=name,
            is_staff=True,
            status=User.Status.ACTIVE if password else User.Status.INVITED,
        )
        membership: PartnerUser | OrganizationUser
        if partner is not None:
            membership, _ = _save_partner_membership(
                partner=partner, user=user, role=role, org_access=org_access, organizations=organizations, actor=actor
            )
            target = {"partnerId": str(partner.pk)}
        elif org is not None:
            membership, _ = _save_organization_membership(org=org, user=user, role=role, sites=sites, actor=actor)
            target = {"orgId": str(org.pk)}
        else:
            raise Invalid(
                "Give either partnerId or orgId.", fields={"nonFieldErrors": ["Give either partnerId or orgId."]}
            )
        membership_changes = audit.changes(None, membership_state(membership))
        details = audit.changes(None, user_state(user)) | {"membership": target | membership_changes}
        if via:
            details["via"] = via
        audit.record(action=AuditAction.USER_CREATE, actor_user=actor, target=user, details=details, ip=ip)
    return user


# --- people ------------------------------------------------------------------------------------------------------

USER_BEYOND_ACTOR = "This person holds access you could not grant (here or in tenants you do not manage)."


def change_user(
    *, user: User, changes: Mapping[str, Any], actor: User | None = None, ip: str | None = None, via: str | None = None
) -> User:
    """Change a person's own fields (``changes``: model field names, e.g. ``name``, ``status``, ``email``) and
    audit ``user.update`` with what changed. Taking over an account takes over all its access, so ``actor``
    (None: the operator) must be able to manage the person (:func:`may_manage_user`), else ``Conflict``
    ``user_beyond_your_authority``."""
    if actor is not None and not may_manage_user(actor, user):
        raise Conflict(USER_BEYOND_ACTOR, code="user_beyond_your_authority")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        before = user_state(locked)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save()
        details = audit.changes(before, user_state(locked))
        audit.record(
            action=AuditAction.USER_UPDATE,
            actor_user=actor,
            target=locked,
            details={**details, "via": via} if via else details,
            ip=ip,
        )
    return locked


def delete_user(*, user: User, actor: User | None = None, ip: str | None = None, via: str | None = None) -> None:
    """Delete a person (their memberships and tokens go with them), audited with who they were. Nobody deletes
    themself, operators included (another operator can: an installation is never left without its last one by
    a slip); nobody deletes a person they could not manage (``Conflict``, as :func:`change_user`)."""
    if actor is not None and actor.pk == user.pk:
        raise Conflict("You cannot delete yourself.", code="cannot_delete_self")
    if actor is not None and not may_manage_user(actor, user):
        raise Conflict(USER_BEYOND_ACTOR, code="user_beyond_your_authority")
    with transaction.atomic():
        details = audit.changes(user_state(user), None)
        audit.record(
            action=AuditAction.USER_DELETE,
            actor_user=actor,
            target=user,
            details={**details, "via": via} if via else details,
            ip=ip,
        )
        user.delete()


# --- roles -------------------------------------------------------------------------------------------------------
#
# Built-in roles (no partner, or ``is_system``) come from fixtures and are the same on every installation: read-only.
# A partner's custom roles are defined, changed and deleted at partner level (``users:write``) and grant only what
# their maker holds there (``check_can_define_role``).


def _require_partner_level(actor: User | None, partner: Partner | None) -> None:
    from rmm import authz

    if _is_operator(actor):
        return
    if partner is None or not authz.has_partner_permission(actor, partner, "users:write"):
        raise Refused("Roles are managed at partner level (users:write).", code="permission_denied")


def _audit_role(role: Role, action: AuditAction, details: dict, *, actor, ip, via) -> None:
    audit.record(
        action=action, actor_user=actor, target=role, details={**details, "via": via} if via else details, ip=ip
    )


def define_role(
    *,
    partner: Partner | None,
    name: str,
    scope: str,
    permissions: Iterable[Permission] = (),
    force_mfa: bool = False,
    description: str = "",
    actor: User | None = None,
    ip: str | None = None,
    via: str | None = None,
) -> Role:
    """A new custom role of ``partner`` with ``permissions`` (only operators define roles of no partner, which are
    then built-in), audited as ``role.create``."""
    permissions = list(permissions)
    if partner is None and not _is_operator(actor):
        raise Invalid.field("partnerId", "A custom role belongs to a partner.")
    _require_partner_level(actor, partner)
    check_can_define_role(actor, partner_id=getattr(partner, "pk", None), permissions=[str(p) for p in permissions])
    with transaction.atomic():
        role = Role.objects.create(
            partner=partner, name=name, scope=scope, force_mfa=force_mfa, description=description
        )
        role.permissions.set(permissions)
        _audit_role(role, AuditAction.ROLE_CREATE, {}, actor=actor, ip=ip, via=via)
    return role


def change_role(
    *,
    role: Role,
    changes: Mapping[str, Any],
    permissions: Iterable[Permission] | None = None,
    actor: User | None = None,
    ip: str | None = None,
    via: str | None = None,
) -> Role:
    """Change a custom role's own fields (``changes``: model field names) and, unless None, its permissions,
    audited as ``role.update`` naming what changed. Members already hold the role wherever they hold it, so the
    new permissions must be grantable to each of them (``check_can_define_role``)."""
    if role.is_system or role.partner_id is None:
        raise Refused("Built-in roles cannot be changed.", code="system_role_read_only")
    _require_partner_level(actor, role.partner)
    if "partner" in changes and changes["partner"] != role.partner:
        raise Invalid.field("partnerId", "A role cannot move to another partner.")
    if permissions is not None:
        permissions = list(permissions)
        names = [str(p) for p in permissions]
        check_can_define_role(actor, partner_id=role.partner_id, permissions=names, role=role)
    with transaction.atomic():
        locked = Role.objects.select_for_update().get(pk=role.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save()
        if permissions is not None:
            locked.permissions.set(permissions)
        changed = sorted([*changes, *(["permissions"] if permissions is not None else [])])
        _audit_role(locked, AuditAction.ROLE_UPDATE, {"changed": changed}, actor=actor, ip=ip, via=via)
    return locked


def delete_role(*, role: Role, actor: User | None = None, ip: str | None = None, via: str | None = None) -> None:
    """Delete a custom role nobody holds (``Conflict`` ``role_in_use`` otherwise), audited as ``role.delete``."""
    if role.is_system or role.partner_id is None:
        raise Refused("Built-in roles cannot be deleted.", code="system_role_read_only")
    _require_partner_level(actor, role.partner)
    with transaction.atomic():
        if role.partner_memberships.exists() or role.org_memberships.exists():
            raise Conflict("Members hold this role; give them another role first.", code="role_in_use")
        _audit_role(role, AuditAction.ROLE_DELETE, {}, actor=actor, ip=ip, via=via)
        role.delete()


# --- what an audit row says about people and memberships ---------------------------------------------------------


def membership_state(membership: PartnerUser | OrganizationUser) -> dict:
    """A membership as its audit rows describe it (``audit.changes`` of two states says what changed)."""
    state: dict[str, Any] = {"role": {"id": str(membership.role_id), "name": membership.role.name}}
    if isinstance(membership, PartnerUser):
        state["orgAccess"] = membership.org_access
        state["organizationIds"] = sorted(str(org.pk) for org in membership.selected_organizations.all())
    else:
        state["siteIds"] = sorted(str(site.pk) for site in membership.sites.all())
    return state


def user_state(user: User) -> dict:
    """A person as their audit rows describe them; secrets (password, MFA) never appear."""
    return {
        "email": user.email,
        "name": user.name,
        "status": user.status,
        "isStaff": user.is_staff,
        "isSuperuser": user.is_superuser,
    }


# --- no escalation ---------------------------------------------------------------------------------------------


def _is_operator(actor: User | None) -> bool:
    return actor is None or (actor.is_superuser and actor.is_active)


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


def check_can_grant(
    actor: User | None,
    permissions,
    *,
    partner_id=None,
    org_access: str | None = None,
    organizations=(),
    org=None,
    sites=(),
) -> None:
    """The no-escalation rule, for every door (API, admin, ``grant_access``): nobody grants a permission or a
    reach they do not hold themselves where it takes effect. Raises :class:`EscalationRefused`.

    - A partner membership or custom role (``partner_id``): the actor holds ``users:write`` and every one of
      ``permissions`` at partner level there (wildcards count only against held wildcards: handing out ``*:*``
      needs ``*:*``), and the membership's organization reach: ``org_access`` ``all`` needs the actor's own
      access to be ``all`` in that partner (it reaches organizations made later too), ``selected`` needs each of
      ``organizations`` reached whole, each with ``permissions``; ``none`` (or None, a role being defined)
      reaches no organization.
    - An organization membership (``org``, optionally restricted to ``sites``): the actor holds ``users:write``
      and ``permissions`` on the whole organization (a site-restricted member grants nothing).

    ``actor`` None is the operator (management commands); superusers may grant anything. The comparison of
    reaches is ``authz.beyond``, the same that decides who may manage an existing member (:func:`may_manage_user`).
    """
    from rmm import authz

    if _is_operator(actor):
        return
    assert actor is not None  # None is the operator
    permissions = frozenset(permissions)
    held = _held_for_granting(actor, partner_id=partner_id, org_id=org.pk if org is not None else None)
    if held is None or not authz.covers(held, "users:write"):
        raise EscalationRefused("You may not manage access here (users:write is needed).")
    missing = sorted(perm for perm in permissions if not authz.covers(held, perm))
    if missing:
        raise EscalationRefused(f"You cannot grant permissions you do not hold: {', '.join(missing)}.")
    organizations, sites = list(organizations), list(sites)
    wanted = authz.membership_reach(
        permissions=permissions,
        partner_id=partner_id,
        org_access=org_access,
        organizations=organizations,
        org=org,
        sites=sites,
    )
    excess = authz.beyond(actor, wanted)
    if excess:
        names = {obj.pk: str(obj.slug if hasattr(obj, "slug") else obj) for obj in [*organizations, *sites]}
        described = "; ".join(_describe(item, names) for item in excess)
        raise EscalationRefused(f"You cannot grant access beyond your own: {described}.")


def _describe(excess, names: dict) -> str:
    """One ``authz.Excess`` in words, naming organizations and sites by ``names`` (their ids otherwise)."""
    permissions = ", ".join(sorted(excess.permissions))
    if excess.where == "every_org":
        if excess.outside:
            return "every organization of the partner, those made later included (your own access is not 'all')"
        return f"{permissions} in every organization of the partner"
    if excess.where in ("org", "site"):
        place = f"{'organization' if excess.where == 'org' else 'site'} {names.get(excess.id, excess.id)}"
        return f"{place}, which is outside your reach" if excess.outside else f"{permissions} in {place}"
    if excess.where == "partner":
        return f"{permissions} at partner level"
    return f"{excess.where} {excess.id}"


def role_permission_names(role: Role) -> list[str]:
    return [f"{resource}:{action}" for resource, action in role.permissions.values_list("resource", "action")]


def check_can_define_role(actor: User | None, *, partner_id, permissions, role: Role | None = None) -> None:
    """May ``actor`` give the custom role of ``partner_id`` (``role``, None while it is made) ``permissions``?

    Defining a role grants nothing by itself: its permissions must be held at partner level (``check_can_grant``).
    Changing a role members already hold changes their access wherever they hold it, so the actor must also be
    able to manage each of those memberships as they stand (nobody demotes someone beyond them) and to grant
    each of them the new permissions with its reach.
    """
    check_can_grant(actor, permissions, partner_id=partner_id)
    if _is_operator(actor) or role is None or role.pk is None:
        return
    memberships: list[PartnerUser | OrganizationUser] = [
        *role.partner_memberships.select_related("role").prefetch_related("selected_organizations"),
        *role.org_memberships.select_related("role", "org").prefetch_related("sites"),
    ]
    for membership in memberships:
        try:
            _check_can_hold(actor, membership, role_permission_names(membership.role))
            _check_can_hold(actor, membership, permissions)
        except EscalationRefused as exc:
            raise EscalationRefused(f"Members hold this role where you could not grant it. {exc}") from None


def _check_can_hold(actor: User | None, membership: PartnerUser | OrganizationUser, permissions) -> None:
    """Could ``actor`` grant ``membership`` as it stands (its reach) with ``permissions``?"""
    if isinstance(membership, PartnerUser):
        check_can_grant(
            actor,
            permissions,
            partner_id=membership.partner_id,
            org_access=membership.org_access,
            organizations=membership.selected_organizations.all(),
        )
    else:
        check_can_grant(actor, permissions, org=membership.org, sites=membership.sites.all())


# --- who may change whom -----------------------------------------------------------------------------------------


def may_manage_user(actor: User, target: User) -> bool:
    """May ``actor`` change or delete ``target`` (email, password, status)? Taking over an account takes over all
    its access, so only when ``actor`` manages access (``users:write``) wherever ``target`` is a member and
    ``target``'s whole reach (memberships with their organizations and sites, guardian grants; a disabled
    account's too, which enabling it gives back) is within ``actor``'s own (``authz.beyond``): never a
    superuser, never a person also serving tenants out of the actor's reach or holding more than the actor there.
    """
    from rmm import authz

    if actor.is_superuser and actor.is_active:
        return True
    if target.is_superuser or not authz.reach(actor).is_active:
        return False
    places = [
        {"partner_id": partner_id}
        for partner_id in PartnerUser.objects.filter(user=target).values_list("partner_id", flat=True)
    ]
    places += [
        {"org_id": org_id} for org_id in OrganizationUser.objects.filter(user=target).values_list("org_id", flat=True)
    ]
    for where in places:
        held = _held_for_granting(actor, **where)
        if held is None or not authz.covers(held, "users:write"):
            return False
    return not authz.beyond(actor, authz.potential_reach(target))


def may_manage_membership(actor: User, membership: PartnerUser | OrganizationUser) -> bool:
    """May ``actor`` change or remove ``membership``? Only if they could grant it as it stands, its role with its
    reach (``check_can_grant``): nobody demotes, narrows or removes a member beyond themselves."""
    try:
        _check_can_hold(actor, membership, role_permission_names(membership.role))
    except EscalationRefused:
        return False
    return True
