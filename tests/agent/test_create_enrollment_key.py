"""manage.py create_enrollment_key: a key for a site, printed once on the last line, stored as an HMAC."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from orgs.models import EnrollmentKey
from tests import factories
from tests.agent.conftest import enroll

pytestmark = pytest.mark.django_db


def create(*args) -> str:
    out = io.StringIO()
    call_command("create_enrollment_key", *args, stdout=out)
    return out.getvalue()


def test_it_prints_the_raw_key_alone_on_the_last_line_and_stores_only_its_hmac(client):
    site = factories.site(name="HQ")
    out = create("--org", site.org.slug, "--site", "HQ", "--max-usage", "3", "--expires-in-hours", "24")

    raw = out.rstrip("\n").splitlines()[-1]
    key = EnrollmentKey.objects.get()
    assert raw.startswith("ek_") and " " not in raw
    assert key.key_hash == hmac.new(settings.SECRET_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()
    assert key.key_prefix == raw[:8] and (key.org_id, key.site_id, key.max_usage) == (site.org_id, site.pk, 3)
    assert dt.timedelta(hours=23) < key.expires_at - timezone.now() <= dt.timedelta(hours=24)
    assert enroll(client, raw).status_code == 201


def test_defaults_are_unlimited_and_never_expiring():
    site = factories.site(name="HQ")
    create("--org", site.org.slug, "--site", "HQ")
    key = EnrollmentKey.objects.get()
    assert key.max_usage is None and key.expires_at is None


def test_an_org_slug_used_by_two_partners_needs_partner():
    first = factories.site(factories.organization(slug="acme"), name="HQ")
    factories.site(factories.organization(slug="acme"), name="HQ")
    with pytest.raises(CommandError, match="--partner"):
        create("--org", "acme", "--site", "HQ")
    create("--org", "acme", "--site", "HQ", "--partner", first.org.partner.slug)
    assert EnrollmentKey.objects.get().org_id == first.org_id


def test_unknown_org_or_site_is_a_clear_error():
    site = factories.site(name="HQ")
    with pytest.raises(CommandError, match="No organization"):
        create("--org", "nope", "--site", "HQ")
    with pytest.raises(CommandError, match="no site named 'Branch'"):
        create("--org", site.org.slug, "--site", "Branch")
    with pytest.raises(CommandError, match="--max-usage"):
        create("--org", site.org.slug, "--site", "HQ", "--max-usage", "0")
    assert not EnrollmentKey.objects.exists()
