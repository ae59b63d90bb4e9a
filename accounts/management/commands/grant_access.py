"""Give a person access to a partner's organizations or to one organization.

The command acts as the operator of the installation: it goes through the same services as the API and the admin
(``accounts.services.grant_partner_access`` / ``grant_organization_access``, whose no-escalation rule lets the
operator grant anything), which write the same audit row as for the API (``partner_user.create`` …, saying what
changed, with ``"via": "grant_access"``); a new person (``--create-user``) is invited with the membership as the
API invites (one ``user.create`` row).

    # a partner technician who serves two of the partner's customers
    manage.py grant_access tech@msp.example --partner demo-msp --role "Partner Technician" \
        --orgs acme-corp,globex --create-user --name "Terry Tech"

    # a customer's user restricted to one site
    manage.py grant_access it@acme.example --partner demo-msp --org acme-corp --role "Org User" --sites "HQ"
"""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import PartnerUser, Role, User
from accounts.services import change_user, grant_organization_access, grant_partner_access, invite_user
from orgs.models import Organization, Partner, Site
from rmm.domain_errors import DomainError


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class Command(BaseCommand):
    help = "Give a user a partner membership (with all, selected or no organizations) or an organization membership."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--partner", required=True, help="The partner's slug.")
        parser.add_argument("--role", required=True, help='A role name, e.g. "Partner Technician" or "Org User".')
        parser.add_argument("--org", help="An organization slug: makes an organization membership.")
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--orgs", help="Partner membership: only these organization slugs (comma-separated).")
        scope.add_argument("--all-orgs", action="store_true", help="Partner membership: every organization.")
        scope.add_argument("--no-orgs", action="store_true", help="Partner membership: partner-level objects only.")
        parser.add_argument("--sites", help="Organization membership: only these site names (comma-separated).")
        parser.add_argument("--create-user", action="store_true", help="Create the user, printing a password.")
        parser.add_argument("--name", default="", help="The new user's name (with --create-user).")

    @transaction.atomic
    def handle(self, *args, email: str, partner: str, role: str, org: str | None, **options) -> None:
        partner_row = Partner.objects.filter(slug=partner).first()
        if partner_row is None:
            raise CommandError(f"No partner with slug {partner!r}.")
        user = User.objects.filter(email__iexact=email).first()
        if user is None and not options["create_user"]:
            raise CommandError(f"No user {email!r}; add --create-user to create one.")
        role_row = (
            Role.objects.filter(name=role, partner=partner_row).first()
            or Role.objects.filter(name=role, partner__isnull=True).first()
        )
        if role_row is None:
            raise CommandError(f"No role named {role!r} (built-in or of {partner!r}); run `loaddata default_roles`?")
        membership, where = self._membership(partner_row, org, options)
        password = None
        try:
            if user is None:
                password = secrets.token_urlsafe(12)
                user = invite_user(
                    email=email,
                    name=options["name"],
                    password=password,
                    role=role_row,
                    **membership,
                    via="grant_access",
                )
            else:
                if not user.is_staff:  # members work in the admin too
                    user = change_user(user=user, changes={"is_staff": True}, via="grant_access")
                if "org" in membership:
                    grant_organization_access(user=user, role=role_row, **membership, via="grant_access")
                else:
                    grant_partner_access(user=user, role=role_row, **membership, via="grant_access")
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{user.email}: {role_row.name} in {where}.")
        if password:
            self.stdout.write(f"New user's password (shown once): {password}")

    def _membership(self, partner_row: Partner, org: str | None, options: dict) -> tuple[dict[str, Any], str]:
        """The membership the options ask for (the services' keyword arguments) and its description."""
        if org:
            if options["orgs"] or options["all_orgs"] or options["no_orgs"]:
                raise CommandError("--orgs/--all-orgs/--no-orgs are for partner memberships, not with --org.")
            org_row = Organization.objects.filter(partner=partner_row, slug=org).first()
            if org_row is None:
                raise CommandError(f"Partner {partner_row.slug!r} has no organization {org!r}.")
            names = _split(options["sites"])
            sites = list(Site.objects.filter(org=org_row, name__in=names))
            missing = set(names) - {site.name for site in sites}
            if missing:
                raise CommandError(f"Organization {org!r} has no site(s): {', '.join(sorted(missing))}.")
            where = f"organization {org_row.slug}" + (f", sites {', '.join(names)}" if names else ", all sites")
            return {"org": org_row, "sites": sites}, where
        if options["sites"]:
            raise CommandError("--sites needs --org.")
        slugs = _split(options["orgs"])
        orgs = list(Organization.objects.filter(partner=partner_row, slug__in=slugs))
        missing = set(slugs) - {o.slug for o in orgs}
        if missing:
            raise CommandError(f"Partner {partner_row.slug!r} has no organization(s): {', '.join(sorted(missing))}.")
        access = (
            PartnerUser.OrgAccess.SELECTED
            if options["orgs"] is not None
            else PartnerUser.OrgAccess.NONE
            if options["no_orgs"]
            else PartnerUser.OrgAccess.ALL
        )
        where = f"partner {partner_row.slug}, " + (
            f"organizations {', '.join(slugs)}" if access == "selected" else f"org_access {access}"
        )
        return {"partner": partner_row, "org_access": access, "organizations": orgs}, where
