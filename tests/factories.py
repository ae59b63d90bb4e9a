"""Small builders for test data. Each returns a saved row with sensible defaults; keyword arguments override.

They keep the tenant rules the database enforces: a device's site belongs to its org, and every device-owned
row copies its device's org_id.
"""

from __future__ import annotations

import itertools

from django.utils import timezone

from devices.models import Device
from devices.services import credentials
from orgs.models import Organization, Partner, Site

_seq = itertools.count(1)


def partner(**fields) -> Partner:
    n = next(_seq)
    fields.setdefault("name", f"Partner {n}")
    fields.setdefault("slug", f"partner-{n}")
    return Partner.objects.create(**fields)


def organization(partner_: Partner | None = None, **fields) -> Organization:
    n = next(_seq)
    fields.setdefault("name", f"Org {n}")
    fields.setdefault("slug", f"org-{n}")
    return Organization.objects.create(partner=partner_ or partner(), **fields)


def site(org: Organization | None = None, **fields) -> Site:
    fields.setdefault("name", f"Site {next(_seq)}")
    return Site.objects.create(org=org or organization(), **fields)


def device(site_: Site | None = None, **fields) -> Device:
    site_ = site_ or site()
    n = next(_seq)
    fields.setdefault("hostname", f"host-{n:05d}")
    fields.setdefault("os_type", Device.OsType.LINUX)
    fields.setdefault("agent_id", credentials.new_agent_id())
    fields.setdefault("agent_token_hash", credentials.mint_agent_token().hash)
    fields.setdefault("enrolled_at", timezone.now())
    fields.setdefault("org_id", site_.org_id)
    return Device.objects.create(site=site_, **fields)
