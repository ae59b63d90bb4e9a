"""Make an enrollment key for a site and print it once (its last line is the raw key alone, for scripts:
``KEY=$(manage.py create_enrollment_key --org acme --site HQ | tail -n 1)``).

Only the key's HMAC is stored; a lost key cannot be shown again, only revoked and replaced.
"""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orgs.models import Organization, Site
from orgs.services import create_enrollment_key


class Command(BaseCommand):
    help = "Create an enrollment key for a site; prints the raw key (shown once) on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, metavar="ORG_SLUG", help="The organization's slug.")
        parser.add_argument("--site", required=True, metavar="SITE_NAME", help="The site's name in that organization.")
        parser.add_argument(
            "--partner", metavar="PARTNER_SLUG", help="The partner's slug, when several partners have that org slug."
        )
        parser.add_argument("--max-usage", type=int, metavar="N", help="How many devices it may enroll (default: any).")
        parser.add_argument(
            "--expires-in-hours", type=float, metavar="H", help="Hours until it stops working (default: never)."
        )
        parser.add_argument("--name", help="A name to tell the key apart in lists (default: the site and the date).")

    def handle(self, *args, org: str, site: str, partner, max_usage, expires_in_hours, name, **options) -> None:
        if max_usage is not None and max_usage < 1:
            raise CommandError("--max-usage must be at least 1.")
        if expires_in_hours is not None and expires_in_hours <= 0:
            raise CommandError("--expires-in-hours must be more than 0.")
        organizations = Organization.objects.select_related("partner").filter(slug=org)
        if partner:
            organizations = organizations.filter(partner__slug=partner)
        found = list(organizations[:10])
        if not found:
            where = f" of partner {partner!r}" if partner else ""
            raise CommandError(f"No organization with slug {org!r}{where}.")
        if len(found) > 1:
            partners = ", ".join(sorted(o.partner.slug for o in found))
            raise CommandError(
                f"Several partners have an organization with slug {org!r} ({partners}); say which with --partner."
            )
        organization = found[0]
        try:
            target = Site.objects.get(org=organization, name=site)
        except Site.DoesNotExist:
            names = ", ".join(Site.objects.filter(org=organization).values_list("name", flat=True)[:20]) or "none"
            raise CommandError(f"Organization {org!r} has no site named {site!r} (its sites: {names}).") from None

        now = timezone.now()
        raw, key = create_enrollment_key(
            site=target,
            name=name or f"{target.name} ({now:%Y-%m-%d})",
            max_usage=max_usage,
            expires_at=now + dt.timedelta(hours=expires_in_hours) if expires_in_hours else None,
            via="manage.py",
        )
        self.stdout.write(
            f"Enrollment key {key.name!r} for {organization.partner.slug}/{organization.slug}/{target.name}"
        )
        self.stdout.write(f"  max usage: {max_usage if max_usage is not None else 'unlimited'}")
        self.stdout.write(f"  expires:   {key.expires_at.isoformat() if key.expires_at else 'never'}")
        self.stdout.write("  Shown once; only its HMAC is stored. The key:")
        self.stdout.write(raw)
