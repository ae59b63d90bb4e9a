"""The harness of the console's real-browser tests (tests/console/test_browser.py): Debian's chromium driven by
Playwright against Django's live server, and the world those tests look at.

Browsers cannot be downloaded here, so Playwright launches the system's ``chromium`` (``.ci/run`` installs it with
apt-get); the tests are skipped only where it is missing.

The world is built ONCE per module and committed (no transaction around it): the live server answers from its own
threads and connections, so it must see the rows, and building the tenants, personas, telemetry and rollups per
test would cost more than the browser. The module's fixture flushes the database at its end, as Django's
TransactionTestCase does after each test (and empties the few tables without a model that flush leaves).

Organization B's rows carry the marker ``zulu`` in every name (hostnames, organization, site, group, script, alert,
user), so a page that leaks any of them is found by one substring search.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pyotp
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts.models import PartnerUser, User
from alerts.models import Alert, Severity
from devices.models import Device, DeviceCommand, DeviceTelemetry
from devices.services import commands, telemetry
from scripts.models import Script
from scripts.services import library
from tests.conftest import PASSWORD, World, build_permissions, build_persona, build_roles, build_world

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots" / "console"
VIEWPORT = {"width": 1440, "height": 900}
LEAK_MARKER = "zulu"  # in every name of organization B's rows; never in a name of A's
# Every page with a form carries a CSRF token: 64 random letters and digits, which hold "zulu" (in any case) about
# once in 15,000 tokens, so a crawl of ~100 pages met it about once in 150 runs (seen once in CI on 2026-12-07).
_CSRF_TOKEN = re.compile(r'(name="csrfmiddlewaretoken" value=")[^"]*"')


def without_csrf_tokens(html: str) -> str:
    """The page without its CSRF tokens' values: what it shows of the tenants' data, for the leak checks."""
    return _CSRF_TOKEN.sub(r'\1"', html)


SCRIPT_NAME = "Disk cleanup"

# Device statuses in reach of partner A's people: every status appears, so a count that reads the wrong key or
# forgets a status differs from the API's. (a1-1 stays online: it is the device page's device.)
STATUSES_OF_A = {
    "a1-1": Device.Status.ONLINE,
    "a1-2": Device.Status.ONLINE,
    "a2-1": Device.Status.OFFLINE,
    "a2-2": Device.Status.MAINTENANCE,
    "a2m-1": Device.Status.QUARANTINED,
    "a2m-2": Device.Status.DECOMMISSIONED,
}


@dataclass
class ConsoleWorld:
    """The conftest world with the console's extras; B renamed with the leak marker."""

    world: World
    personas: dict[str, User]
    mfa_technician: User
    mfa_secret: str
    script: Script
    device: Device  # a1-1: the device page's device, with a day of telemetry
    # "page" / "list": org A's open alerts that two tests acknowledge; "info": one that stays open; "zulu": B's
    alerts: dict[str, Alert]
    zulu_device: Device
    devices: dict[str, Device] = field(default_factory=dict)  # hostname → device, for A and B


def build_console_world(*, now: dt.datetime | None = None) -> ConsoleWorld:
    """Tenants, personas (staff, so they may sign in to the admin), statuses, a library script, open alerts, a day
    of CPU/RAM/disk/network samples on a1-1 rolled up, and B's look-alikes of all of it."""
    now = now or timezone.now()
    world = build_world()
    roles = build_roles(build_permissions())
    personas = {
        name: build_persona(name, world, roles) for name in ("partner_technician", "org_admin", "org_user", "outsider")
    }
    User.objects.filter(pk__in=[user.pk for user in personas.values()]).update(is_staff=True)

    _rename_b(world)
    devices = {device.hostname: device for device in Device.objects.all()}
    for hostname, status in STATUSES_OF_A.items():
        Device.objects.filter(pk=devices[hostname].pk).update(status=status, last_seen_at=now - dt.timedelta(minutes=3))
    devices = {device.hostname: device for device in Device.objects.all()}

    secret = pyotp.random_base32()
    mfa_technician = User.objects.create_user(
        email="mfa.technician@a.example", password=PASSWORD, is_staff=True, mfa_enabled=True, mfa_secret=secret
    )
    PartnerUser.objects.create(
        partner=world.partner_a, user=mfa_technician, role=roles["Partner Technician"], org_access="all"
    )

    script = library.save_script(
        script=Script(
            partner=world.partner_a,
            name=SCRIPT_NAME,
            language=Script.Language.PYTHON,
            os_types=[Script.OsType.WINDOWS, Script.OsType.LINUX],
            content="import shutil\nprint(shutil.disk_usage('/'))\n",
        ),
        actor=None,
    )
    zulu_device = devices["zulu-db-1"]
    library.save_script(
        script=Script(
            org=world.org_b, name="Zulu cleanup", language=Script.Language.SH, content="echo zulu\n", os_types=[]
        ),
        actor=None,
    )

    a1_1, a1_2 = devices["a1-1"], devices["a1-2"]
    alerts = {
        "page": _alert(a1_1, Severity.CRITICAL, "CPU above 90% on a1-1", subject="cpu", opened=now),
        "list": _alert(a1_2, Severity.WARNING, "Disk / above 85% on a1-2", subject="/", opened=now),
        "info": _alert(devices["a2-1"], Severity.INFO, "a2-1 rebooted", subject="", opened=now),
        "zulu": _alert(zulu_device, Severity.CRITICAL, "Zulu database is down", subject="", opened=now),
    }
    commands.queue_command(device=zulu_device, type=DeviceCommand.Type.REFRESH_INVENTORY, payload=None)
    for device in (a1_1, zulu_device):
        _day_of_samples(device, now=now)
    telemetry.roll_up(now=now)
    return ConsoleWorld(
        world=world,
        personas=personas,
        mfa_technician=mfa_technician,
        mfa_secret=secret,
        script=script,
        device=a1_1,
        alerts=alerts,
        zulu_device=zulu_device,
        devices=devices,
    )


def _rename_b(world: World) -> None:
    """Every name of partner B's tenant carries the leak marker (the conftest world's "b1-1", "B1" are too short to
    search for: they occur inside UUIDs and CSS)."""
    world.partner_b.name, world.partner_b.slug = "Zulu Partner", "zulu-partner"
    world.partner_b.save()
    world.org_b.name, world.org_b.slug = "Zulu Holdings", "zulu-holdings"
    world.org_b.save()
    world.site_b1.name = "Zulu Yard"
    world.site_b1.save()
    for device, hostname in zip(world.devices[world.site_b1], ("zulu-db-1", "zulu-web-2"), strict=True):
        Device.objects.filter(pk=device.pk).update(hostname=hostname, status=Device.Status.ONLINE)
    group = world.groups["B1 servers"]
    group.name = "Zulu servers"
    group.save()
    key = world.keys[world.site_b1]
    key.name = "Zulu Yard key"
    key.save()
    User.objects.filter(email="admin@b.example").update(email="admin@zulu.example")


def _alert(device: Device, severity: str, title: str, *, subject: str, opened: dt.datetime) -> Alert:
    return Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        subject=subject,
        severity=severity,
        title=title,
        opened_at=opened,
        last_evaluated_at=opened,
    )


def _day_of_samples(device: Device, *, now: dt.datetime) -> None:
    """A sample every 5 minutes over the last 24 hours (288), every metric set."""
    start = now - dt.timedelta(hours=24)
    DeviceTelemetry.objects.bulk_create(
        DeviceTelemetry(
            device_id=device.pk,
            org_id=device.org_id,
            ts=start + dt.timedelta(minutes=5 * n),
            cpu_percent=20 + (n * 7) % 60,
            ram_percent=40 + (n * 3) % 30,
            ram_used_mb=4000 + n,
            disk_percent=55 + n / 100,
            disk_used_gb=120 + n / 10,
            network_in_bytes=1_000_000 + 1000 * n,
            network_out_bytes=500_000 + 500 * n,
            process_count=150 + n % 20,
        )
        for n in range(288)
    )


def session_cookie(user: User, base_url: str) -> dict[str, Any]:
    """A Playwright cookie signing ``user`` in (Django's force_login: a committed session row)."""
    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": base_url,
    }


def current_totp(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def same_site_links(base_url: str, current_url: str, hrefs: list[str]) -> list[str]:
    """The console pages among ``hrefs`` (absolute URLs): under /admin/, not signing out, not deleting, no anchors."""
    base = urlsplit(base_url)
    found = []
    for href in hrefs:
        if not href or href.startswith(("#", "javascript:", "mailto:")):
            continue
        url = urlsplit(urljoin(current_url, href))
        if url.netloc != base.netloc or not url.path.startswith("/admin/"):
            continue
        if url.path.startswith(("/admin/logout/", "/admin/password_change/")) or url.path.endswith("/delete/"):
            continue
        found.append(url._replace(fragment="").geturl())
    return found


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height
