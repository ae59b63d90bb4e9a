"""Demo data for a fresh installation: one partner with two customers, their sites and keys, two logins, and
a fleet of realistic devices with inventory, a day of telemetry, groups, commands and a few audit entries.

For benchmarks the fleet can be spread over more customers (``organizations``) and each device's software list
topped up to about ``software_per_device`` programs from a synthetic catalog of a few thousand packages with a
skewed popularity (``synthetic_software_catalog``), as a real fleet's long tail of installed software looks.

``seed_demo`` is what ``manage.py seed_demo`` runs. It is idempotent: when the demo partner exists it creates
nothing and only reports the login. Everything is made in one transaction, so an interrupted run leaves no half
demo behind that a second run would mistake for a finished one.

Generation is reproducible (a ``random.Random`` seeded by the caller) except for identifiers and secrets
(UUIDs, agent ids, agent tokens, enrollment keys, passwords), which are always fresh and random, and the telemetry,
whose samples sit on the clock's 5-minute marks. Enrollment keys
come from ``orgs.services.create_enrollment_key``; agent tokens are thrown away after hashing, since no real
agent will ever use them.

Devices are generated in chunks of ``CHUNK_SIZE`` so memory stays bounded at 100,000 devices. Their rows are
written with ``COPY … FROM STDIN`` instead of ``bulk_create``: see ``_CopyWriter`` for the measured reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import random
import secrets
import string
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.text import slugify
from psycopg import sql
from psycopg.types.json import Jsonb

from accounts.models import AuditLog, PartnerUser, Role, User
from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceGroup,
    DeviceGroupMembership,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
    DeviceTelemetry,
)
from devices.services import credentials
from devices.services.telemetry_partitions import ensure_partitions
from orgs.models import Organization, Partner, Site
from orgs.services import create_enrollment_key
from rmm.ids import uuid7

DEMO_PARTNER_SLUG = "demo-msp"
ADMIN_EMAIL = "admin@example.com"
TECHNICIAN_EMAIL = "tech@example.com"
TECHNICIAN_ROLE = "Partner Technician"
ADMIN_ROLE = "Partner Admin"

# The per-device tables, in the order the summary lists them.
FLEET_MODELS = [
    Device,
    DeviceHardware,
    DeviceNetworkInterface,
    DeviceDisk,
    DeviceSoftware,
    DeviceNetworkConnection,
    DeviceRegistryEntry,
    DeviceConfigEntry,
    DeviceGroupMembership,
    DeviceCommand,
    DeviceTelemetry,
]

CHUNK_SIZE = 1_000
TELEMETRY_INTERVAL = dt.timedelta(minutes=5)
DEFAULT_CREDENTIALS_FILE = Path(settings.BASE_DIR) / "var" / "demo-credentials.txt"

# The demo tenants: organization → its sites as (name, timezone, public IP of the site's internet line, city).
# The public IPs are from the documentation ranges (RFC 5737); None means a site of home workers.
DEMO_ORGANIZATIONS = {
    "Acme Corp": [
        ("Headquarters", "America/Chicago", "203.0.113.10", "Springfield"),
        ("Warehouse", "America/Chicago", "203.0.113.77", "Shelbyville"),
    ],
    "Globex": [
        ("Cypress Creek", "America/New_York", "198.51.100.24", "Cypress Creek"),
        ("Remote Workers", "UTC", None, ""),
    ],
}
# More customers, for fleets spread over more than the two above (``organizations``): each gets an office and its
# home workers. Past the end of the list the names repeat with a number.
EXTRA_ORGANIZATIONS = [
    ("Initech", "America/Denver", "Boulder"),
    ("Northwind Traders", "America/Los_Angeles", "Redmond"),
    ("Tailspin Toys", "America/New_York", "Albany"),
    ("Woodgrove Bank", "Europe/London", "Leeds"),
    ("Wide World Importers", "America/Chicago", "Tulsa"),
    ("Fourth Coffee", "America/Los_Angeles", "Portland"),
    ("Alpine Ski House", "Europe/Zurich", "Davos"),
    ("Coho Winery", "America/Los_Angeles", "Napa"),
    ("Lucerne Publishing", "Europe/Berlin", "Hamburg"),
    ("Wingtip Toys", "America/New_York", "Boston"),
    ("Blue Yonder Airlines", "America/Chicago", "Dallas"),
    ("Humongous Insurance", "America/New_York", "Hartford"),
    ("Margie's Travel", "Europe/Paris", "Lyon"),
    ("Bellows College", "America/Chicago", "Madison"),
]


@dataclass
class DemoLogin:
    """A demo user's email and password; ``password`` is None when it is not known (any more)."""

    email: str
    password: str | None
    role: str


@dataclass
class DemoResult:
    """What ``seed_demo`` did: whether it created the demo, the logins, new enrollment keys, and row counts."""

    created: bool
    partner: Partner
    logins: list[DemoLogin]
    enrollment_keys: list[tuple[str, str]] = field(default_factory=list)  # (organization / site, raw key)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def seed_demo(
    *,
    devices: int,
    seed: int,
    telemetry_hours: int,
    telemetry_devices: int,
    credentials_file: Path,
    organizations: int = len(DEMO_ORGANIZATIONS),
    software_per_device: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DemoResult:
    """Create the demo partner and its fleet of ``devices`` devices, or report the existing demo.

    ``telemetry_hours`` of samples every 5 minutes are made for the first ``telemetry_devices`` devices only
    (288 rows a device for a day, which is what makes 100,000 devices with telemetry impractical).
    ``organizations`` customers share the fleet (Acme Corp and Globex first, then ``EXTRA_ORGANIZATIONS``).
    ``software_per_device``, when given, tops each device's software list up to about that many programs
    (±10 %) from ``synthetic_software_catalog()``; None keeps the realistic 21-60.
    The passwords of newly created users are written to ``credentials_file`` (mode 0600).
    """
    if devices < 0 or telemetry_hours < 0 or telemetry_devices < 0:
        raise ValueError("devices, telemetry_hours and telemetry_devices must not be negative.")
    if organizations < 1:
        raise ValueError("organizations must be at least 1.")
    if software_per_device is not None and software_per_device < 0:
        raise ValueError("software_per_device must not be negative.")
    existing = Partner.objects.filter(slug=DEMO_PARTNER_SLUG).first()
    if existing is not None:
        notes = _ensure_memberships(existing)
        _set_up_alerting(existing)
        _set_up_scripts(existing)
        return DemoResult(
            created=False,
            partner=existing,
            logins=_known_logins(credentials_file),
            counts={"devices": Device.objects.filter(org__partner=existing).count()},
            notes=notes,
        )

    now = timezone.now()
    if telemetry_hours and telemetry_devices and devices:
        # Partitions for every day the samples cover, so none land in the default partition. Its own
        # transaction: it takes a short exclusive lock on the default partition.
        ensure_partitions(first_day=(now - dt.timedelta(hours=telemetry_hours)).date(), last_day=now.date())

    with transaction.atomic():
        result = _create_demo(
            now=now,
            rng=random.Random(seed),  # noqa: S311 -- demo data, reproducible on purpose; secrets come from `secrets`
            devices=devices,
            telemetry_hours=telemetry_hours,
            telemetry_devices=telemetry_devices,
            credentials_file=credentials_file,
            organizations=organizations,
            # Telemetry has its own random stream: how many samples a device gets depends on where the clock
            # stands between two 5-minute marks (an online device seen 2-90 s ago has 287 or 288 in a day), and
            # on the shared stream that shifted every later device's inventory with the time of day.
            telemetry_rng=random.Random(f"{seed}:telemetry"),  # noqa: S311
            # Its own random stream, so the rest of the fleet is the same with or without the extra software.
            software_top_up=None
            if software_per_device is None
            else _SoftwareTopUp(rng=random.Random(f"{seed}:software"), target=software_per_device),  # noqa: S311
            progress=progress,
        )
    alerting = _set_up_alerting(result.partner)
    result.counts["alert rules"] = alerting.rules
    result.counts["open alerts"] = alerting.open_alerts
    scripts = _set_up_scripts(result.partner)
    result.counts["library scripts"] = scripts.scripts
    result.counts["script runs"] = scripts.runs_created
    return result


def _set_up_alerting(partner: Partner):
    """The demo's alert rules (alerts.demo), made once, and one evaluation pass so alerts are open at once."""
    from alerts.demo import set_up_demo_alerting

    return set_up_demo_alerting(partner=partner, actor=User.objects.filter(email__iexact=ADMIN_EMAIL).first())


def _set_up_scripts(partner: Partner):
    """The demo's script library (scripts.demo), made once: scripts, a few past runs with outputs, a schedule."""
    from scripts.demo import set_up_demo_scripts

    return set_up_demo_scripts(
        partner=partner,
        actor=User.objects.filter(email__iexact=ADMIN_EMAIL).first(),
        requested_by=User.objects.filter(email__iexact=TECHNICIAN_EMAIL).first(),
    )


def new_agent_token_hash() -> str:
    """The stored hash of a fresh agent token; the token itself is thrown away."""
    return credentials.mint_agent_token().hash


# --- tenants, users, keys -------------------------------------------------------------------------------------


def _create_demo(
    *,
    now: dt.datetime,
    rng: random.Random,
    telemetry_rng: random.Random,
    devices: int,
    telemetry_hours: int,
    telemetry_devices: int,
    credentials_file: Path,
    organizations: int,
    software_top_up: _SoftwareTopUp | None,
    progress: Callable[[str], None] | None,
) -> DemoResult:
    partner = Partner.objects.create(
        name="Demo MSP", slug=DEMO_PARTNER_SLUG, type=Partner.Type.MSP, settings={"demo": True}
    )
    admin, admin_password = _get_or_create_user(ADMIN_EMAIL, name="Demo Admin", superuser=True)
    technician, technician_password = _get_or_create_user(TECHNICIAN_EMAIL, name="Terry Technician")
    new_passwords = {
        user.email: password
        for user, password in ((admin, admin_password), (technician, technician_password))
        if password is not None
    }
    if new_passwords:
        _write_credentials(credentials_file, {**_read_credentials(credentials_file), **new_passwords})
    result = DemoResult(created=True, partner=partner, logins=[])
    result.notes.extend(_ensure_memberships(partner))

    sites: list[_DemoSite] = []
    organization_specs = _organization_specs(organizations)
    for org_index, (org_name, site_specs) in enumerate(organization_specs):
        org = Organization.objects.create(partner=partner, name=org_name, slug=slugify(org_name))
        for site_index, (site_name, tz, public_ip, city) in enumerate(site_specs):
            site = Site.objects.create(
                org=org,
                name=site_name,
                timezone=tz,
                address={"city": city} if city else {},
                contact={"name": "Front desk", "phone": "+1 555 0100"} if city else {},
            )
            second_octet = (10 * (org_index + 1) + site_index) % 256  # customers past the 24th reuse ranges
            sites.append(_DemoSite(site=site, public_ip=public_ip, subnet=f"10.{second_octet}"))
        first_site = next(s.site for s in sites if s.site.org_id == org.id)
        raw_key, _ = create_enrollment_key(
            site=first_site, name=f"{first_site.name} default key", created_by=admin, via="demo"
        )
        result.enrollment_keys.append((f"{org.name} / {first_site.name}", raw_key))

    fleet = _FleetGenerator(
        rng=rng,
        telemetry_rng=telemetry_rng,
        now=now,
        sites=sites,
        groups=_create_groups(sites),
        command_authors=[admin.id, technician.id],
        telemetry_hours=telemetry_hours,
        software_top_up=software_top_up,
    )
    with connection.cursor() as cursor:
        writer = _CopyWriter(cursor.cursor)
        for start in range(0, devices, CHUNK_SIZE):
            stop = min(start + CHUNK_SIZE, devices)
            specs = [fleet.device(index) for index in range(start, stop)]
            for spec in specs:
                writer.add(Device, fleet.device_row(spec))
            # Devices go in first: every child row's composite foreign key points at them.
            writer.flush()
            if start == 0:
                # The foreign key check of every child row (SELECT 1 FROM devices WHERE id = $1 AND org_id = $2)
                # is planned once per connection. Planned over a devices table without statistics it scanned
                # devices_org_status for the org and filtered on id: 90 µs a child row at 3,000 devices, growing
                # with the fleet; 16 µs after ANALYZE, which counts this transaction's own rows, so the check uses
                # the (id, org_id) key.
                cursor.execute("ANALYZE devices")
            for spec in specs:
                fleet.write_inventory(spec, writer, with_telemetry=spec.index < telemetry_devices)
            writer.flush()
            if progress is not None and devices > CHUNK_SIZE:
                progress(f"  {stop:,} / {devices:,} devices")

    from alerts.demo import make_some_devices_need_attention

    # Before the dynamic groups are evaluated: "Disks over 90 %" then counts the demo's full disks too.
    make_some_devices_need_attention(now=now, organization_ids=list(fleet.groups))
    _create_rule_groups(organization_ids=list(fleet.groups))
    audit_entries = _write_audit_log(now=now, rng=rng, partner=partner, admin=admin, technician=technician, fleet=fleet)
    result.counts = {
        "organizations": len(organization_specs),
        "sites": len(sites),
        "enrollment keys": len(result.enrollment_keys),
        "device groups": (2 + len(RULE_GROUPS)) * len(organization_specs),
        **{model._meta.verbose_name_plural: writer.counts[model] for model in FLEET_MODELS},
        "audit log entries": audit_entries,
    }
    result.logins = _known_logins(credentials_file)
    return result


def _organization_specs(count: int) -> list[tuple[str, list[tuple[str, str, str | None, str]]]]:
    """The first ``count`` demo customers as (name, sites): Acme Corp and Globex, then ``EXTRA_ORGANIZATIONS``."""
    specs = list(DEMO_ORGANIZATIONS.items())[:count]
    for index in range(count - len(specs)):
        name, tz, city = EXTRA_ORGANIZATIONS[index % len(EXTRA_ORGANIZATIONS)]
        if index >= len(EXTRA_ORGANIZATIONS):
            name = f"{name} {index // len(EXTRA_ORGANIZATIONS) + 1}"
        office_ip = f"{('203.0.113', '198.51.100', '192.0.2')[index % 3]}.{100 + index % 150}"  # RFC 5737
        specs.append((name, [("Main Office", tz, office_ip, city), ("Remote Workers", "UTC", None, "")]))
    return specs


def _get_or_create_user(email: str, *, name: str, superuser: bool = False) -> tuple[User, str | None]:
    """The user with ``email``, created with a random password if missing; the password only when created.

    Both demo logins are staff: technicians work in the admin (people created through the API are staff too)."""
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user, None
    password = secrets.token_urlsafe(15)
    if superuser:
        return User.objects.create_superuser(email, password, name=name), password
    return User.objects.create_user(email, password, name=name, is_staff=True), password


def _ensure_memberships(partner: Partner) -> list[str]:
    """Give the demo admin and technician their partner roles, if the default roles are loaded."""
    notes = []
    for email, role_name in ((ADMIN_EMAIL, ADMIN_ROLE), (TECHNICIAN_EMAIL, TECHNICIAN_ROLE)):
        user = User.objects.filter(email__iexact=email).first()
        role = Role.objects.filter(name=role_name, partner__isnull=True).first()
        if user is None:
            continue
        if not user.is_staff:  # a demo seeded when the technician was not staff could not sign in to the admin
            User.objects.filter(pk=user.pk).update(is_staff=True)
        if role is None:
            notes.append(
                f"No built-in role {role_name!r}: {email} gets no partner membership. "
                "Run `manage.py loaddata default_roles`, then seed_demo again to add it."
            )
            continue
        PartnerUser.objects.get_or_create(
            partner=partner, user=user, defaults={"role": role, "org_access": PartnerUser.OrgAccess.ALL}
        )
    return notes


# --- the credentials file ---------------------------------------------------------------------------------------


def _write_credentials(path: Path, passwords: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Demo logins written by `manage.py seed_demo`: email, then password.",
        "# Change the passwords (`manage.py changepassword EMAIL`) before the server is reachable by anyone else.",
        *(f"{email} {password}" for email, password in passwords.items()),
    ]
    # Created 0600 from the start, not chmod-ed afterwards, so the password is never readable by others.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")
    path.chmod(0o600)  # in case the file existed with a wider mode


def _read_credentials(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    passwords = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            email, _, password = line.strip().partition(" ")
            passwords[email.lower()] = password.strip()
    return passwords


def _known_logins(credentials_file: Path) -> list[DemoLogin]:
    """The demo logins, with the password from the credentials file when it still opens the account."""
    passwords = _read_credentials(credentials_file)
    logins = []
    for email, role in ((ADMIN_EMAIL, "superuser"), (TECHNICIAN_EMAIL, TECHNICIAN_ROLE)):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            continue
        password = passwords.get(email)
        # The file can be stale (the database was reset, or someone changed the password): check it.
        logins.append(DemoLogin(email, password if password and user.check_password(password) else None, role))
    return logins


# --- groups and the audit log -----------------------------------------------------------------------------------

WINDOWS_RULE = {"operator": "AND", "conditions": [{"field": "osType", "operator": "equals", "value": "windows"}]}


# Dynamic groups whose rules show what the language does; evaluated by the groups service once the fleet exists.
RULE_GROUPS = {
    "Disks over 90 %": {"field": "disks.usedPercent", "operator": "greaterThan", "value": 90},
    "Windows without 7-Zip, seen this week": {
        "operator": "AND",
        "conditions": [
            {"field": "osType", "operator": "equals", "value": "windows"},
            {"field": "software.notInstalled", "operator": "contains", "value": "7-zip"},
            {"field": "lastSeenAt", "operator": "withinLast", "value": {"amount": 7, "unit": "days"}},
        ],
    },
}


def _create_rule_groups(*, organization_ids: list) -> None:
    from devices import rules
    from devices.services.groups import refresh_group

    for org_id in organization_ids:
        for name, rule in RULE_GROUPS.items():
            group = DeviceGroup.objects.create(
                org_id=org_id,
                name=name,
                type=DeviceGroup.Type.DYNAMIC,
                filter_rules=rule,
                fields_used=rules.fields_used(rule),
            )
            refresh_group(group)


@dataclass
class _OrgGroups:
    windows: DeviceGroup  # dynamic: every Windows device of the organization
    servers: DeviceGroup  # static: the servers, added by hand


def _create_groups(sites: list[_DemoSite]) -> dict[Any, _OrgGroups]:
    groups = {}
    for org_id in dict.fromkeys(s.site.org_id for s in sites):
        groups[org_id] = _OrgGroups(
            windows=DeviceGroup.objects.create(
                org_id=org_id,
                name="Windows devices",
                type=DeviceGroup.Type.DYNAMIC,
                filter_rules=WINDOWS_RULE,
                fields_used=["osType"],
            ),
            servers=DeviceGroup.objects.create(org_id=org_id, name="Servers", type=DeviceGroup.Type.STATIC),
        )
    return groups


def _write_audit_log(
    *, now: dt.datetime, rng: random.Random, partner: Partner, admin: User, technician: User, fleet: _FleetGenerator
) -> int:
    entries = []
    for org in partner.organizations.all():
        created = now - dt.timedelta(days=400)
        entries.append(
            AuditLog(
                actor_user=admin,
                org=org,
                action="organization.create",
                target_type="organization",
                target_id=str(org.id),
                details={"name": org.name},
                ip="127.0.0.1",
                created_at=created,
            )
        )
    for spec in fleet.quarantined[:3]:
        entries.append(
            AuditLog(
                actor_user=technician,
                org_id=spec.org_id,
                action="device.quarantine",
                target_type="device",
                target_id=str(spec.id),
                details={"hostname": spec.hostname, "reason": spec.quarantined_reason},
                ip="198.51.100.200",
                created_at=spec.quarantined_at,
            )
        )
    for spec, command_id, command_type, created_at in fleet.sample_commands[:5]:
        entries.append(
            AuditLog(
                actor_user=technician,
                org_id=spec.org_id,
                action="device_command.create",
                target_type="device_command",
                target_id=str(command_id),
                details={"deviceId": str(spec.id), "hostname": spec.hostname, "type": command_type},
                ip="198.51.100.200",
                created_at=created_at,
            )
        )
    entries.append(
        AuditLog(
            actor_user=admin,
            action="user.login",
            target_type="user",
            target_id=str(admin.id),
            ip="127.0.0.1",
            created_at=now - dt.timedelta(minutes=rng.randint(5, 120)),
        )
    )
    AuditLog.objects.bulk_create(entries)
    return len(entries)


# --- COPY ---------------------------------------------------------------------------------------------------


class _CopyWriter:
    """Buffers rows per table and writes them with ``COPY … FROM STDIN``.

    Measured on a 2-core box, 300 devices (96,000 rows, 80,000 of them telemetry): 4.3 s with ``bulk_create``
    (batches of 2,000; most of it building model instances and rendering INSERTs), 1.5 s with COPY. 100,000
    devices (5.8 million rows, telemetry for the first 1,000) take 79 s with COPY at an 82 MB peak RSS; with
    ``software_per_device=150`` over 10 organizations (15.9 million rows, no telemetry) 452 s (bench/RESULTS.md).
    Rows are dicts keyed by attname; a missing column gets the model field's default, so a row can only lack
    fields whose default is right (the ``id`` UUID, blank strings, NULLs).
    """

    def __init__(self, cursor, *, batch_rows: int = 20_000) -> None:
        self._cursor = cursor
        self._batch_rows = batch_rows
        self._buffers: dict[type[models.Model], list[tuple]] = defaultdict(list)
        self._columns: dict[type[models.Model], list[_Column]] = {}
        self.counts: Counter[type[models.Model]] = Counter()

    def add(self, model: type[models.Model], row: dict[str, Any]) -> None:
        columns = self._columns.get(model) or self._columns.setdefault(model, _columns_of(model))
        self._buffers[model].append(tuple(column.value(row) for column in columns))
        if len(self._buffers[model]) >= self._batch_rows:
            self._flush_model(model)

    def flush(self) -> None:
        """Write every buffered row, tables in the order their first row was added (parents before children)."""
        for model in list(self._buffers):
            self._flush_model(model)

    def _flush_model(self, model: type[models.Model]) -> None:
        rows = self._buffers.pop(model, [])
        if not rows:
            return
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(model._meta.db_table),
            sql.SQL(", ").join(sql.Identifier(column.name) for column in self._columns[model]),
        )
        with self._cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        self.counts[model] += len(rows)


_MISSING = object()


@dataclass
class _Column:
    name: str
    attname: str
    default: Callable[[], Any]
    is_json: bool

    def value(self, row: dict[str, Any]) -> Any:
        value = row.get(self.attname, _MISSING)
        if value is _MISSING:
            value = self.default()
        if self.is_json and value is not None:
            return Jsonb(value)
        return value


def _columns_of(model: type[models.Model]) -> list[_Column]:
    return [
        _Column(
            name=f.column,
            attname=f.attname,
            default=f.get_default,
            is_json=isinstance(f, models.JSONField),
        )
        for f in model._meta.concrete_fields
        if f.column
    ]


# --- the fleet ----------------------------------------------------------------------------------------------


@dataclass
class _DemoSite:
    site: Site
    public_ip: str | None  # None: home workers, each behind their own public address
    subnet: str  # the first two octets of the site's private network


@dataclass
class _DeviceSpec:
    """What the child rows of one generated device need to know about it."""

    index: int
    id: Any
    org_id: Any
    site: _DemoSite
    os_type: str
    kind: str  # workstation, laptop or server
    server_role: str
    hostname: str
    os_version: str
    os_build: str
    architecture: str
    agent_version: str
    status: str
    last_seen_at: dt.datetime
    last_seen_ip: str
    enrolled_at: dt.datetime
    tags: list[str]
    hardware: _HardwareModel
    ram_total_mb: int
    disk_total_gb: float
    primary_disk_used_percent: float = 0.0
    quarantined_at: dt.datetime | None = None
    quarantined_reason: str = ""


@dataclass(frozen=True)
class _HardwareModel:
    manufacturer: str
    model: str
    cpu_model: str
    cpu_cores: int
    cpu_threads: int
    gpu_model: str
    bios_version: str
    architecture: str
    serial_prefix: str
    serial_length: int
    mac_prefix: str
    ram_choices_mb: tuple[int, ...]
    disk_choices_gb: tuple[float, ...]


def _hw(
    manufacturer, model, cpu, cores, threads, gpu, bios, arch, serial, mac, ram=(8, 16, 16, 32), disk=(238.5, 476.9)
):
    prefix, length = serial
    return _HardwareModel(
        manufacturer,
        model,
        cpu,
        cores,
        threads,
        gpu,
        bios,
        arch,
        prefix,
        length,
        mac,
        tuple(r * 1024 for r in ram),
        disk,
    )


_DELL, _LENOVO, _HP, _APPLE = ("", 7, "B0:7B:25"), ("PF", 6, "8C:16:45"), ("5CG", 7, "D0:AD:08"), ("", 10, "F0:18:98")
_SERVER_RAM, _SERVER_DISK, _VM_RAM, _VM_DISK = (32, 64, 128, 256), (446.6, 893.1, 1787.8), (4, 8, 16), (80.0, 127.0)

WINDOWS_WORKSTATIONS = [
    _hw("Dell Inc.", "Latitude 5440", "13th Gen Intel(R) Core(TM) i5-1345U", 10, 12,
        "Intel(R) Iris(R) Xe Graphics", "1.18.0", "amd64", ("", 7), _DELL[2]),
    _hw("Dell Inc.", "OptiPlex 7010", "13th Gen Intel(R) Core(TM) i7-13700", 16, 24,
        "Intel(R) UHD Graphics 770", "1.16.1", "amd64", ("", 7), _DELL[2]),
    _hw("LENOVO", "ThinkPad T14 Gen 4", "13th Gen Intel(R) Core(TM) i7-1365U", 10, 12,
        "Intel(R) Iris(R) Xe Graphics", "R2FET54W (1.34 )", "amd64", _LENOVO[:2], _LENOVO[2]),
    _hw("LENOVO", "ThinkCentre M70q Gen 4", "13th Gen Intel(R) Core(TM) i5-13400T", 10, 16,
        "Intel(R) UHD Graphics 730", "M4BKT2AA", "amd64", _LENOVO[:2], _LENOVO[2]),
    _hw("HP", "HP EliteBook 840 G10", "13th Gen Intel(R) Core(TM) i5-1335U", 10, 12,
        "Intel(R) Iris(R) Xe Graphics", "V70 Ver. 01.06.00", "amd64", _HP[:2], _HP[2]),
    _hw("Microsoft Corporation", "Surface Laptop 7", "Snapdragon(R) X Elite - X1E80100 - Qualcomm(R) Oryon(TM) CPU",
        12, 12, "Qualcomm(R) Adreno(TM) X1-85 GPU", "175.77.235", "arm64", ("0", 11), "C8:5A:CF", ram=(16, 32)),
    _hw("Dell Inc.", "Precision 3660", "13th Gen Intel(R) Core(TM) i9-13900", 24, 32,
        "NVIDIA RTX A2000 12GB", "2.15.0", "amd64", ("", 7), _DELL[2], ram=(32, 64), disk=(953.9, 1907.7)),
]  # fmt: skip
MACS = [
    _hw("Apple Inc.", "MacBook Pro (14-inch, Nov 2023)", "Apple M3 Pro", 11, 11, "Apple M3 Pro",
        "iBoot 11881.41.5", "arm64", _APPLE[:2], _APPLE[2], ram=(18, 36), disk=(494.4, 994.7)),
    _hw("Apple Inc.", "MacBook Air (13-inch, M2, 2022)", "Apple M2", 8, 8, "Apple M2",
        "iBoot 11881.41.5", "arm64", _APPLE[:2], _APPLE[2], ram=(8, 16, 24), disk=(245.1, 494.4)),
    _hw("Apple Inc.", "Mac mini (2023)", "Apple M2", 8, 8, "Apple M2",
        "iBoot 11881.41.5", "arm64", _APPLE[:2], _APPLE[2], ram=(8, 16), disk=(245.1, 494.4)),
    _hw("Apple Inc.", "MacBook Pro (16-inch, 2019)", "Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", 8, 16,
        "AMD Radeon Pro 5500M", "2075.100.3.0.3", "amd64", ("C02", 9), _APPLE[2], ram=(16, 32), disk=(499.9,)),
]  # fmt: skip
LINUX_WORKSTATIONS = [
    _hw("Dell Inc.", "XPS 13 9340", "Intel(R) Core(TM) Ultra 7 155H", 16, 22, "Intel(R) Arc(TM) Graphics",
        "1.4.0", "amd64", ("", 7), _DELL[2], ram=(16, 32)),
    _hw("LENOVO", "ThinkPad X1 Carbon Gen 11", "13th Gen Intel(R) Core(TM) i7-1365U", 10, 12,
        "Intel(R) Iris(R) Xe Graphics", "N3XET58W (1.33 )", "amd64", _LENOVO[:2], _LENOVO[2], ram=(16, 32)),
    _hw("Framework", "Laptop 13 (AMD Ryzen 7040Series)", "AMD Ryzen 7 7840U w/ Radeon 780M Graphics", 8, 16,
        "AMD Radeon 780M", "03.05", "amd64", ("FRANDACP", 8), "A8:3B:76", ram=(32, 64), disk=(953.9,)),
]  # fmt: skip
SERVERS = [
    _hw("Dell Inc.", "PowerEdge R650", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 32, 64, "Matrox G200eW3",
        "1.13.2", "amd64", ("", 7), _DELL[2], ram=_SERVER_RAM, disk=_SERVER_DISK),
    _hw("HPE", "ProLiant DL380 Gen10", "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz", 12, 24, "Matrox G200eH3",
        "U30 v2.90", "amd64", ("CZ", 8), "94:40:C9", ram=_SERVER_RAM, disk=_SERVER_DISK),
    _hw("VMware, Inc.", "VMware7,1", "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", 4, 4, "VMware SVGA 3D",
        "VMW71.00V.21100432.B64.2301110304", "amd64", ("VMware-", 16), "00:50:56", ram=_VM_RAM, disk=_VM_DISK),
    _hw("Microsoft Corporation", "Virtual Machine", "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz", 4, 8,
        "Microsoft Hyper-V Video", "Hyper-V UEFI Release v4.1", "amd64", ("0", 11), "00:15:5D",
        ram=_VM_RAM, disk=_VM_DISK),
    _hw("QEMU", "Standard PC (Q35 + ICH9, 2009)", "AMD EPYC 7763 64-Core Processor", 8, 8, "",
        "1.16.3-debian-1.16.3-2", "amd64", ("", 0), "52:54:00", ram=_VM_RAM, disk=_VM_DISK),
    _hw("Amazon EC2", "c7g.xlarge", "Neoverse-V1 (AWS Graviton3)", 4, 4, "", "1.0", "arm64",
        ("ec2", 17), "0A:1F:2B", ram=(8,), disk=(100.0,)),
]  # fmt: skip
_LINUX_SERVER_HARDWARE = SERVERS
_WINDOWS_SERVER_HARDWARE = SERVERS[:4]

# (os_version, os_build, weight): what the fleet runs, most devices on the current release.
WINDOWS_DESKTOP_VERSIONS = [
    ("Windows 11 Pro 23H2", "22631.4460", 5),
    ("Windows 11 Pro 24H2", "26100.2314", 3),
    ("Windows 11 Enterprise 23H2", "22631.4541", 2),
    ("Windows 10 Pro 22H2", "19045.5131", 3),
]
WINDOWS_SERVER_VERSIONS = [
    ("Windows Server 2022 Standard", "20348.2849", 5),
    ("Windows Server 2019 Standard", "17763.6532", 2),
    ("Windows Server 2025 Standard", "26100.2314", 1),
]
MACOS_VERSIONS = [("15.1.1", "24B91", 4), ("14.7.1", "23H222", 4), ("14.5", "23F79", 1), ("13.7.1", "22H221", 1)]
LINUX_VERSIONS = [
    ("Ubuntu 24.04.1 LTS", "6.8.0-49-generic", 4),
    ("Ubuntu 22.04.5 LTS", "5.15.0-126-generic", 4),
    ("Debian GNU/Linux 12 (bookworm)", "6.1.0-28-amd64", 2),
    ("Rocky Linux 9.5 (Blue Onyx)", "5.14.0-503.14.1.el9_5.x86_64", 1),
]
AGENT_VERSIONS = [("1.4.2", 14), ("1.4.1", 4), ("1.3.9", 2)]
# (status, weight): mostly online, as a healthy fleet is.
STATUSES = [("online", 84), ("offline", 11), ("maintenance", 4), ("quarantined", 1)]
# (os_type, kind, weight)
KINDS = [
    ("windows", "workstation", 50),
    ("macos", "laptop", 18),
    ("linux", "workstation", 7),
    ("windows", "server", 10),
    ("linux", "server", 15),
]
WINDOWS_SERVER_ROLES = ["dc", "file", "sql", "rds", "print"]
LINUX_SERVER_ROLES = ["web", "db", "app", "k8s", "backup", "mon"]
TAGS = ["finance", "sales", "engineering", "hr", "support", "marketing", "vip", "remote", "byod", "pci", "kiosk"]
DISPLAY_NAMES = ["Reception PC", "CEO laptop", "Shipping desk", "Meeting room A", "Lab bench 3", "Front counter"]
QUARANTINE_REASONS = ["Ransomware indicators reported by EDR", "Unknown device on the finance VLAN"]

# (name, publisher, versions (first is the most common), install location)
WINDOWS_SOFTWARE = [
    ("Google Chrome", "Google LLC", ["131.0.6778.86", "130.0.6723.117"], r"C:\Program Files\Google\Chrome\Application"),
    ("Microsoft Edge", "Microsoft Corporation", ["131.0.2903.70"],
     r"C:\Program Files (x86)\Microsoft\Edge\Application"),
    ("Mozilla Firefox (x64 en-US)", "Mozilla", ["133.0", "132.0.2"], r"C:\Program Files\Mozilla Firefox"),
    ("Microsoft 365 Apps for enterprise - en-us", "Microsoft Corporation", ["16.0.18129.20158", "16.0.17928.20286"],
     r"C:\Program Files\Microsoft Office"),
    ("Microsoft Teams", "Microsoft Corporation", ["24295.606.3238.6194"], ""),
    ("Microsoft OneDrive", "Microsoft Corporation", ["24.211.1020.0002"], r"C:\Program Files\Microsoft OneDrive"),
    ("7-Zip 24.08 (x64)", "Igor Pavlov", ["24.08"], "C:\\Program Files\\7-Zip\\"),
    ("Notepad++ (64-bit x64)", "Notepad++ Team", ["8.7.1", "8.6.9"], r"C:\Program Files\Notepad++"),
    ("Adobe Acrobat (64-bit)", "Adobe", ["24.004.20272", "24.003.20180"], r"C:\Program Files\Adobe\Acrobat DC\\"),
    ("VLC media player", "VideoLAN", ["3.0.21", "3.0.20"], r"C:\Program Files\VideoLAN\VLC"),
    ("Zoom Workplace (64-bit)", "Zoom Communications, Inc.", ["6.2.11.54035", "6.1.11.47412"], ""),
    ("Slack (Machine - MSI)", "Slack Technologies Inc.", ["4.41.97"], r"C:\Program Files\Slack"),
    ("Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.42.34433", "Microsoft Corporation",
     ["14.42.34433.0"], ""),
    ("Microsoft Visual C++ 2015-2022 Redistributable (x86) - 14.42.34433", "Microsoft Corporation",
     ["14.42.34433.0"], ""),
    ("Microsoft Visual C++ 2013 Redistributable (x64) - 12.0.40664", "Microsoft Corporation", ["12.0.40664.0"], ""),
    ("Microsoft Visual C++ 2010  x64 Redistributable - 10.0.40219", "Microsoft Corporation", ["10.0.40219"], ""),
    ("Microsoft .NET Runtime - 8.0.11 (x64)", "Microsoft Corporation", ["64.44.23719"], ""),
    ("Microsoft Windows Desktop Runtime - 8.0.11 (x64)", "Microsoft Corporation", ["64.44.23722"], ""),
    ("Microsoft ASP.NET Core 8.0.11 - Shared Framework (x64)", "Microsoft Corporation", ["8.0.11.24521"], ""),
    ("Microsoft Update Health Tools", "Microsoft Corporation", ["5.72.0.0"], ""),
    ("Microsoft Edge WebView2 Runtime", "Microsoft Corporation", ["131.0.2903.70"], ""),
    ("Windows PC Health Check", "Microsoft Corporation", ["3.6.2204.08001"], ""),
    ("Git", "The Git Development Community", ["2.47.1", "2.46.0"], r"C:\Program Files\Git\\"),
    ("Python 3.12.7 (64-bit)", "Python Software Foundation", ["3.12.7150.0"], ""),
    ("Node.js", "Node.js Foundation", ["22.11.0", "20.18.1"], "C:\\Program Files\\nodejs\\"),
    ("Microsoft Visual Studio Code", "Microsoft Corporation", ["1.95.3", "1.94.2"],
     "C:\\Program Files\\Microsoft VS Code\\"),
    ("PuTTY release 0.82 (64-bit)", "Simon Tatham", ["0.82.0.0"], "C:\\Program Files\\PuTTY\\"),
    ("WinSCP 6.3.5", "Martin Prikryl", ["6.3.5"], "C:\\Program Files (x86)\\WinSCP\\"),
    ("FileZilla 3.68.1", "Tim Kosse", ["3.68.1"], r"C:\Program Files\FileZilla FTP Client"),
    ("KeePass Password Safe 2.57.1", "Dominik Reichl", ["2.57.1"], "C:\\Program Files\\KeePass Password Safe 2\\"),
    ("Greenshot 1.2.10.6", "Greenshot", ["1.2.10.6"], "C:\\Program Files\\Greenshot\\"),
    ("TeamViewer", "TeamViewer", ["15.59.5", "15.58.4"], r"C:\Program Files\TeamViewer"),
    ("Cisco Secure Client - AnyConnect VPN", "Cisco Systems, Inc.", ["5.1.6.103"], ""),
    ("FortiClient VPN", "Fortinet Technologies Inc", ["7.4.0.1658"], "C:\\Program Files\\Fortinet\\FortiClient\\"),
    ("Sophos Endpoint Agent", "Sophos Limited", ["2024.2.1.1"], ""),
    ("CrowdStrike Windows Sensor", "CrowdStrike, Inc.", ["7.19.18913.0", "7.18.18710.0"], ""),
    ("Dell Command | Update for Windows Universal", "Dell Inc.", ["5.4.0"], ""),
    ("Dell SupportAssist", "Dell Inc.", ["4.4.1.21645"], ""),
    ("HP Support Assistant", "HP Inc.", ["9.32.36.0"], ""),
    ("Lenovo Vantage Service", "Lenovo Group Ltd.", ["4.1.16.0"], ""),
    ("Intel(R) Management Engine Components", "Intel Corporation", ["2406.5.5.0"], ""),
    ("Realtek Audio Driver", "Realtek Semiconductor Corp.", ["6.0.9600.1"], ""),
    ("NVIDIA Graphics Driver 566.14", "NVIDIA Corporation", ["566.14"], ""),
    ("Java 8 Update 431 (64-bit)", "Oracle Corporation", ["8.0.4310.10"], "C:\\Program Files\\Java\\jre-1.8\\"),
    ("Eclipse Temurin JRE with Hotspot 21.0.5+11 (x64)", "Eclipse Adoptium", ["21.0.5.11"], ""),
    ("Microsoft SQL Server Management Studio - 20.2", "Microsoft Corporation", ["20.2.30.0"], ""),
    ("Microsoft Power BI Desktop (x64)", "Microsoft Corporation", ["2.137.1102.0"], ""),
    ("Adobe Creative Cloud", "Adobe Inc.", ["6.4.0.361"], r"C:\Program Files\Adobe\Adobe Creative Cloud"),
    ("Webex", "Cisco Webex LLC", ["44.10.2.31237"], ""),
    ("LibreOffice 24.8.3.2", "The Document Foundation", ["24.8.3.2"], "C:\\Program Files\\LibreOffice\\"),
    ("paint.net", "dotPDN LLC", ["5.0.13"], "C:\\Program Files\\paint.net\\"),
    ("Everything 1.4.1.1026 (x64)", "voidtools", ["1.4.1.1026"], r"C:\Program Files\Everything"),
    ("WinRAR 7.01 (64-bit)", "win.rar GmbH", ["7.01.0"], "C:\\Program Files\\WinRAR\\"),
    ("PowerShell 7-x64", "Microsoft Corporation", ["7.4.6.0"], "C:\\Program Files\\PowerShell\\7\\"),
    ("Windows Subsystem for Linux", "Microsoft Corporation", ["2.3.26.0"], ""),
    ("Docker Desktop", "Docker Inc.", ["4.36.0"], r"C:\Program Files\Docker\Docker"),
    ("Postman x64", "Postman", ["11.20.0"], ""),
    ("Wireshark 4.4.2 x64", "The Wireshark developer community", ["4.4.2"], "C:\\Program Files\\Wireshark\\"),
    ("Npcap", "Nmap Project", ["1.80"], r"C:\Program Files\Npcap"),
    ("Foxit PDF Reader", "Foxit Software Inc.", ["2024.3.0.26795"], "C:\\Program Files\\Foxit Software\\"),
    ("Citrix Workspace 2409", "Citrix Systems, Inc.", ["24.9.10.28"], ""),
    ("Spotify", "Spotify AB", ["1.2.50.335"], ""),
    ("Dropbox", "Dropbox, Inc.", ["213.4.6105"], r"C:\Program Files (x86)\Dropbox\Client"),
    ("Google Drive", "Google LLC", ["101.0.3.0"], r"C:\Program Files\Google\Drive File Stream\101.0.3.0"),
]  # fmt: skip
MACOS_SOFTWARE = [
    ("Google Chrome", "Google LLC", ["131.0.6778.86", "130.0.6723.117"], "/Applications/Google Chrome.app"),
    ("Safari", "Apple Inc.", ["18.1.1", "17.6"], "/Applications/Safari.app"),
    ("Firefox", "Mozilla", ["133.0", "132.0.2"], "/Applications/Firefox.app"),
    ("Microsoft Word", "Microsoft Corporation", ["16.91"], "/Applications/Microsoft Word.app"),
    ("Microsoft Excel", "Microsoft Corporation", ["16.91"], "/Applications/Microsoft Excel.app"),
    ("Microsoft PowerPoint", "Microsoft Corporation", ["16.91"], "/Applications/Microsoft PowerPoint.app"),
    ("Microsoft Outlook", "Microsoft Corporation", ["16.91"], "/Applications/Microsoft Outlook.app"),
    ("Microsoft OneNote", "Microsoft Corporation", ["16.91"], "/Applications/Microsoft OneNote.app"),
    ("Microsoft Teams", "Microsoft Corporation", ["24295.606.3238.6194"], "/Applications/Microsoft Teams.app"),
    ("OneDrive", "Microsoft Corporation", ["24.211.1020"], "/Applications/OneDrive.app"),
    ("Slack", "Slack Technologies, Inc.", ["4.41.97"], "/Applications/Slack.app"),
    ("zoom.us", "Zoom Video Communications, Inc.", ["6.2.11"], "/Applications/zoom.us.app"),
    ("1Password", "AgileBits Inc.", ["8.10.54"], "/Applications/1Password.app"),
    ("Visual Studio Code", "Microsoft Corporation", ["1.95.3"], "/Applications/Visual Studio Code.app"),
    ("iTerm2", "George Nachman", ["3.5.10"], "/Applications/iTerm.app"),
    ("Docker Desktop", "Docker Inc.", ["4.36.0"], "/Applications/Docker.app"),
    ("Postman", "Postman, Inc.", ["11.20.0"], "/Applications/Postman.app"),
    ("Spotify", "Spotify AB", ["1.2.50.335"], "/Applications/Spotify.app"),
    ("Notion", "Notion Labs, Inc.", ["4.2.0"], "/Applications/Notion.app"),
    ("Figma", "Figma, Inc.", ["124.6.5"], "/Applications/Figma.app"),
    ("Rectangle", "Ryan Hanson", ["0.84"], "/Applications/Rectangle.app"),
    ("The Unarchiver", "MacPaw Inc.", ["4.3.8"], "/Applications/The Unarchiver.app"),
    ("VLC", "VideoLAN", ["3.0.21"], "/Applications/VLC.app"),
    ("Xcode", "Apple Inc.", ["16.1", "15.4"], "/Applications/Xcode.app"),
    ("Keynote", "Apple Inc.", ["14.2"], "/Applications/Keynote.app"),
    ("Pages", "Apple Inc.", ["14.2"], "/Applications/Pages.app"),
    ("Numbers", "Apple Inc.", ["14.2"], "/Applications/Numbers.app"),
    ("GarageBand", "Apple Inc.", ["10.4.11"], "/Applications/GarageBand.app"),
    ("iMovie", "Apple Inc.", ["10.4.2"], "/Applications/iMovie.app"),
    ("Adobe Acrobat Reader", "Adobe Inc.", ["24.004.20272"], "/Applications/Adobe Acrobat Reader.app"),
    ("Cisco Secure Client", "Cisco Systems, Inc.", ["5.1.6.103"], "/Applications/Cisco/Cisco Secure Client.app"),
    ("Falcon", "CrowdStrike, Inc.", ["7.19.18913"], "/Applications/Falcon.app"),
    ("Sophos Endpoint", "Sophos Limited", ["2024.2.1"], "/Applications/Sophos/Sophos Endpoint.app"),
    ("Webex", "Cisco Webex LLC", ["44.10.2.31237"], "/Applications/Webex.app"),
    ("Citrix Workspace", "Citrix Systems, Inc.", ["24.9.10.28"], "/Applications/Citrix Workspace.app"),
    ("Dropbox", "Dropbox, Inc.", ["213.4.6105"], "/Applications/Dropbox.app"),
    ("Google Drive", "Google LLC", ["101.0.3"], "/Applications/Google Drive.app"),
    ("Logi Options+", "Logitech Inc.", ["1.83.646484"], "/Applications/logioptionsplus.app"),
    ("DisplayLink Manager", "DisplayLink Corp.", ["1.11.1"], "/Applications/DisplayLink Manager.app"),
    ("Raycast", "Raycast Technologies Inc.", ["1.86.1"], "/Applications/Raycast.app"),
    ("Arc", "The Browser Company of New York Inc.", ["1.69.0"], "/Applications/Arc.app"),
]  # fmt: skip
_DEB = "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>"
LINUX_SOFTWARE = [
    (name, publisher or _DEB, [version], "/usr")
    for name, version, publisher in [
        ("openssh-server", "1:9.6p1-3ubuntu13.5", ""), ("openssl", "3.0.13-0ubuntu3.4", ""),
        ("curl", "8.5.0-2ubuntu10.5", ""), ("wget", "1.21.4-1ubuntu4.1", ""), ("git", "1:2.43.0-1ubuntu7.1", ""),
        ("vim", "2:9.1.0016-1ubuntu7.5", ""), ("nano", "7.2-2build1", ""), ("htop", "3.3.0-4build1", ""),
        ("tmux", "3.4-1build1", ""), ("rsync", "3.2.7-1ubuntu1", ""), ("sudo", "1.9.15p5-3ubuntu5", ""),
        ("bash", "5.2.21-2ubuntu4", ""), ("coreutils", "9.4-3ubuntu6", ""), ("systemd", "255.4-1ubuntu8.4", ""),
        ("apt", "2.7.14build2", ""), ("python3", "3.12.3-0ubuntu2", ""), ("python3-pip", "24.0+dfsg-1ubuntu1.1", ""),
        ("ca-certificates", "20240203", ""), ("tzdata", "2024a-3ubuntu1.1", ""), ("cron", "3.0pl1-184ubuntu2", ""),
        ("rsyslog", "8.2312.0-3ubuntu9", ""), ("logrotate", "3.21.0-2build1", ""),
        ("unattended-upgrades", "2.9.1+nmu4ubuntu1", ""), ("ufw", "0.36.2-6", ""),
        ("iptables", "1.8.10-3ubuntu2", ""), ("net-tools", "2.10-0.1ubuntu4", ""), ("iproute2", "6.1.0-1ubuntu6", ""),
        ("bind9-dnsutils", "1:9.18.28-0ubuntu0.24.04.1", ""), ("jq", "1.7.1-3build1", ""),
        ("zip", "3.0-13build1", ""), ("unzip", "6.0-28ubuntu4.1", ""), ("gzip", "1.12-1ubuntu3", ""),
        ("tar", "1.35+dfsg-3build1", ""), ("less", "590-2ubuntu2.1", ""), ("lsof", "4.95.0-1build3", ""),
        ("strace", "6.8-0ubuntu2", ""), ("tcpdump", "4.99.4-3ubuntu4", ""), ("nginx", "1.24.0-2ubuntu7.1", ""),
        ("postgresql-16", "16.6-0ubuntu0.24.04.1", ""), ("redis-server", "5:7.0.15-1build2", ""),
        ("docker-ce", "5:27.3.1-1~ubuntu.24.04~noble", "Docker <support@docker.com>"),
        ("containerd.io", "1.7.23-1", "Containerd team <help@containerd.io>"),
        ("nodejs", "20.18.1-1nodesource1", "Nodesource <contact@nodesource.com>"),
        ("chrony", "4.5-1ubuntu4.1", ""), ("fail2ban", "1.0.2-3ubuntu0.1", ""), ("auditd", "1:3.1.2-2.1build1", ""),
        ("snapd", "2.66.1+24.04", ""), ("libc6", "2.39-0ubuntu8.3", ""), ("libssl3t64", "3.0.13-0ubuntu3.4", ""),
        ("zlib1g", "1:1.3.dfsg-3.1ubuntu2.1", ""), ("gnupg", "2.4.4-2ubuntu17", ""),
        ("software-properties-common", "0.99.49.1", ""), ("linux-image-generic", "6.8.0-49.49", ""),
        ("openjdk-17-jre-headless", "17.0.13+11-2ubuntu1~24.04", ""), ("certbot", "2.9.0-1", ""),
        ("prometheus-node-exporter", "1.7.0-1ubuntu0.2", ""), ("qemu-guest-agent", "1:8.2.2+ds-0ubuntu1.4", ""),
        ("open-vm-tools", "2:12.4.5-1~ubuntu0.24.04.1", ""), ("cloud-init", "24.3.1-0ubuntu0~24.04.2", ""),
        ("firefox", "1:1snap1-0ubuntu5", ""),
        ("code", "1.95.3-1731513102", "Microsoft Corporation <vscode-linux@microsoft.com>"),
        ("google-chrome-stable", "131.0.6778.85-1", "Chrome Linux Team <chromium-dev@chromium.org>"),
    ]
]  # fmt: skip
# Always installed, besides the random picks: our agent, and what a server of that role runs.
SERVER_ROLE_SOFTWARE = {
    "web": "nginx",
    "db": "postgresql-16",
    "k8s": "containerd.io",
    "mon": "prometheus-node-exporter",
}


# The wildcard address as an agent reports a listening socket (data for the demo; nothing here binds to it).
_ANY = "0.0.0.0"  # noqa: S104


def _weighted(rng: random.Random, choices: list[tuple]) -> tuple:
    return rng.choices(choices, weights=[c[-1] for c in choices])[0]


class _FleetGenerator:
    """Makes one device and its rows at a time, deterministic for a given seed.

    ``rng`` makes the devices and their inventory and is drawn from the same number of times whatever the clock;
    the telemetry, whose length depends on the clock, draws from ``telemetry_rng``.
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        telemetry_rng: random.Random,
        now: dt.datetime,
        sites: list[_DemoSite],
        groups: dict[Any, _OrgGroups],
        command_authors: list[Any],
        telemetry_hours: int,
        software_top_up: _SoftwareTopUp | None = None,
    ) -> None:
        self.rng = rng
        self.telemetry_rng = telemetry_rng
        self.now = now
        self.sites = sites
        self.groups = groups
        self.command_authors = command_authors
        self.telemetry_hours = telemetry_hours
        self.software_top_up = software_top_up
        self.server_counters: Counter[str] = Counter()
        # A few devices and commands the audit log talks about.
        self.quarantined: list[_DeviceSpec] = []
        self.sample_commands: list[tuple[_DeviceSpec, Any, str, dt.datetime]] = []
        # Acme is the bigger customer: 60 % of the devices.
        self.site_weights = [3 if s.site.org.name == "Acme Corp" else 2 for s in sites]

    # The device itself.

    def device(self, index: int) -> _DeviceSpec:
        rng, now = self.rng, self.now
        site = rng.choices(self.sites, weights=self.site_weights)[0]
        os_type, kind, _ = _weighted(rng, KINDS)
        role = ""
        if kind == "server":
            role = rng.choice(WINDOWS_SERVER_ROLES if os_type == "windows" else LINUX_SERVER_ROLES)
            self.server_counters[role] += 1
            hostname = f"srv-{role}-{self.server_counters[role]:02d}"
            hardware = rng.choice(_WINDOWS_SERVER_HARDWARE if os_type == "windows" else _LINUX_SERVER_HARDWARE)
            versions = WINDOWS_SERVER_VERSIONS if os_type == "windows" else LINUX_VERSIONS
        else:
            hostname = f"{'mac' if os_type == 'macos' else 'ws'}-{index + 1:04d}"
            hardware = rng.choice(
                {"windows": WINDOWS_WORKSTATIONS, "macos": MACS, "linux": LINUX_WORKSTATIONS}[os_type]
            )
            versions = {"windows": WINDOWS_DESKTOP_VERSIONS, "macos": MACOS_VERSIONS, "linux": LINUX_VERSIONS}[os_type]
        os_version, os_build, _ = _weighted(rng, versions)
        status = _weighted(rng, STATUSES)[0]
        if status == "offline":
            last_seen_at = now - dt.timedelta(minutes=rng.uniform(10, 60 * 24 * 30))
        else:
            last_seen_at = now - dt.timedelta(seconds=rng.uniform(2, 90))
        enrolled_at = now - dt.timedelta(days=rng.uniform(1, 720))
        last_seen_at = max(last_seen_at, enrolled_at + dt.timedelta(minutes=1))
        public_ip = site.public_ip or f"192.0.2.{rng.randint(1, 254)}"
        tags = rng.sample(TAGS, rng.choice([0, 1, 1, 2, 3]))
        if kind == "server":
            tags = [rng.choice(["production", "production", "staging"]), *tags[:1]]
        spec = _DeviceSpec(
            index=index,
            id=uuid7(),
            org_id=site.site.org_id,
            site=site,
            os_type=os_type,
            kind=kind,
            server_role=role,
            hostname=hostname,
            os_version=os_version,
            os_build=os_build,
            architecture=hardware.architecture,
            agent_version=_weighted(rng, AGENT_VERSIONS)[0],
            status=status,
            last_seen_at=last_seen_at,
            last_seen_ip=public_ip,
            enrolled_at=enrolled_at,
            tags=tags,
            hardware=hardware,
            ram_total_mb=rng.choice(hardware.ram_choices_mb),
            disk_total_gb=rng.choice(hardware.disk_choices_gb),
        )
        if status == "quarantined":
            spec.quarantined_at = now - dt.timedelta(hours=rng.uniform(1, 72))
            spec.quarantined_reason = rng.choice(QUARANTINE_REASONS)
            self.quarantined.append(spec)
        return spec

    def device_row(self, spec: _DeviceSpec) -> dict[str, Any]:
        token_issued_at = max(spec.enrolled_at, self.now - dt.timedelta(days=self.rng.uniform(0, 29)))
        return {
            "id": spec.id,
            "org_id": spec.org_id,
            "site_id": spec.site.site.id,
            "agent_id": credentials.new_agent_id(),
            "agent_token_hash": new_agent_token_hash(),
            "agent_token_issued_at": token_issued_at,
            "hostname": spec.hostname,
            "display_name": self.rng.choice(DISPLAY_NAMES) if self.rng.random() < 0.03 else "",
            "os_type": spec.os_type,
            "os_version": spec.os_version,
            "os_build": spec.os_build,
            "architecture": spec.architecture,
            "agent_version": spec.agent_version,
            "status": spec.status,
            "last_seen_at": spec.last_seen_at,
            "last_seen_ip": spec.last_seen_ip,
            "enrolled_at": spec.enrolled_at,
            "tags": spec.tags,
            "quarantined_at": spec.quarantined_at,
            "quarantined_reason": spec.quarantined_reason,
            "created_at": spec.enrolled_at,
            "updated_at": self.now,
        }

    # Its inventory, telemetry, groups and commands.

    def write_inventory(self, spec: _DeviceSpec, writer: _CopyWriter, *, with_telemetry: bool) -> None:
        owner = {"device_id": spec.id, "org_id": spec.org_id}
        writer.add(DeviceHardware, {**owner, **self._hardware(spec)})
        for row in self._interfaces(spec):
            writer.add(DeviceNetworkInterface, {**owner, **row})
        for row in self._disks(spec):
            writer.add(DeviceDisk, {**owner, **row})
        for row in self._software(spec):
            writer.add(DeviceSoftware, {**owner, **row})
        for row in self._connections(spec):
            writer.add(DeviceNetworkConnection, {**owner, **row})
        if spec.os_type == "windows":
            for row in self._registry_entries(spec):
                writer.add(DeviceRegistryEntry, {**owner, **row})
        else:
            for row in self._config_entries(spec):
                writer.add(DeviceConfigEntry, {**owner, **row})
        groups = self.groups[spec.org_id]
        if spec.os_type == "windows":
            writer.add(
                DeviceGroupMembership,
                {**owner, "group_id": groups.windows.id, "added_by": "dynamic_rule", "added_at": spec.enrolled_at},
            )
        if spec.kind == "server":
            writer.add(
                DeviceGroupMembership,
                {**owner, "group_id": groups.servers.id, "added_by": "manual", "added_at": spec.enrolled_at},
            )
        for row in self._commands(spec):
            writer.add(DeviceCommand, {**owner, **row})
        if with_telemetry:
            for row in self._telemetry(spec):
                writer.add(DeviceTelemetry, {**owner, **row})

    def _hardware(self, spec: _DeviceSpec) -> dict[str, Any]:
        hw = spec.hardware
        serial = hw.serial_prefix + _random_string(self.rng, hw.serial_length) if hw.serial_length else ""
        return {
            "cpu_model": hw.cpu_model,
            "cpu_cores": hw.cpu_cores,
            "cpu_threads": hw.cpu_threads,
            "ram_total_mb": spec.ram_total_mb,
            "disk_total_gb": spec.disk_total_gb,
            "gpu_model": hw.gpu_model,
            "serial_number": serial,
            "manufacturer": hw.manufacturer,
            "model": hw.model,
            "bios_version": hw.bios_version,
            "updated_at": spec.last_seen_at,
        }

    def _interfaces(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng = self.rng
        names = {
            "windows": ("Ethernet", "Wi-Fi"),
            "macos": ("en0", "en1"),
            "linux": ("ens160", "eth1") if spec.kind == "server" else ("enp0s31f6", "wlp0s20f3"),
        }[spec.os_type]
        mac = f"{spec.hardware.mac_prefix}:{rng.randrange(256):02X}:{rng.randrange(256):02X}:{rng.randrange(256):02X}"
        ip = f"{spec.site.subnet}.{rng.randint(0, 15)}.{rng.randint(2, 254)}"
        rows = [
            {
                "interface_name": names[0],
                "mac_address": mac,
                "ip_address": ip,
                "ip_type": "ipv4",
                "is_primary": True,
                "public_ip": spec.last_seen_ip,
                "updated_at": spec.last_seen_at,
            }
        ]
        if rng.random() < 0.5:
            # The same adapter's IPv6 link-local address, as agents report every address.
            link_local = f"fe80::{rng.randrange(1 << 16):x}:{rng.randrange(1 << 16):x}"
            rows.append({**rows[0], "ip_address": link_local, "ip_type": "ipv6", "is_primary": False, "public_ip": ""})
        return rows

    def _disks(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng = self.rng
        if spec.os_type == "windows":
            layout = [("C:\\", r"\\.\PHYSICALDRIVE0", "NTFS", 1.0)]
            if spec.kind == "server" or rng.random() < 0.2:
                layout.append(("D:\\", r"\\.\PHYSICALDRIVE1", "NTFS", rng.choice([1.0, 2.0, 4.0])))
            if spec.server_role == "sql":
                layout.append(("E:\\", r"\\.\PHYSICALDRIVE2", "ReFS", 2.0))
        elif spec.os_type == "macos":
            layout = [("/", "/dev/disk3s1s1", "apfs", 1.0), ("/System/Volumes/Data", "/dev/disk3s5", "apfs", 1.0)]
        else:
            root = "/dev/sda1" if spec.kind == "server" else "/dev/nvme0n1p2"
            layout = [("/", root, "ext4", 1.0)]
            if spec.kind == "server":
                data = {"db": "/var/lib/postgresql", "backup": "/srv/backup"}.get(spec.server_role, "/srv")
                layout.append((data, "/dev/sdb1", "xfs", rng.choice([2.0, 4.0])))
            else:
                layout.append(("/boot/efi", "/dev/nvme0n1p1", "vfat", 0.0))
        rows = []
        for mount_point, device_name, fs_type, size_factor in layout:
            total = round(spec.disk_total_gb * size_factor, 1) if size_factor else 1.0
            used_percent = round(min(99.5, max(3.0, rng.betavariate(4, 3) * 100)), 1)
            used = round(total * used_percent / 100, 1)
            health = "critical" if used_percent > 95 else "warning" if used_percent > 88 else "healthy"
            if rng.random() < 0.01:
                health = "unknown"
            rows.append(
                {
                    "mount_point": mount_point,
                    "device_name": device_name,
                    "fs_type": fs_type,
                    "total_gb": total,
                    "used_gb": used,
                    "free_gb": round(total - used, 1),
                    "used_percent": used_percent,
                    "health": health,
                    "updated_at": spec.last_seen_at,
                }
            )
        spec.primary_disk_used_percent = rows[0]["used_percent"]
        return rows

    def _software(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng = self.rng
        catalog = {"windows": WINDOWS_SOFTWARE, "macos": MACOS_SOFTWARE, "linux": LINUX_SOFTWARE}[spec.os_type]
        picks = rng.sample(catalog, rng.randint(20, min(58, len(catalog))))
        wanted = SERVER_ROLE_SOFTWARE.get(spec.server_role)
        if wanted and all(name != wanted for name, *_ in picks):
            picks.append(next(entry for entry in catalog if entry[0] == wanted))
        agent_location = {"windows": r"C:\Program Files\RMM Agent", "macos": "/Library/RMM Agent"}
        rows = [
            {
                "name": "RMM Agent",
                "version": spec.agent_version,
                "publisher": "Demo MSP",
                "install_date": spec.enrolled_at.date(),
                "install_location": agent_location.get(spec.os_type, "/opt/rmm-agent"),
                "updated_at": spec.last_seen_at,
            }
        ]
        for name, publisher, versions, location in picks:
            version = versions[0] if len(versions) == 1 or rng.random() < 0.75 else rng.choice(versions[1:])
            installed = spec.enrolled_at - dt.timedelta(days=rng.uniform(0, 400))
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "publisher": publisher,
                    "install_date": installed.date(),
                    "install_location": location,
                    "updated_at": spec.last_seen_at,
                }
            )
        if self.software_top_up is not None:
            rows.extend(self.software_top_up.rows(spec, present=len(rows)))
        return rows

    def _connections(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng = self.rng
        local_ip = f"{spec.site.subnet}.{rng.randint(0, 15)}.{rng.randint(2, 254)}"
        agent = ("tcp", local_ip, rng.randint(49152, 65535), "203.0.113.5", 443, "ESTABLISHED", "rmm-agent")
        if spec.os_type == "windows":
            pool = [
                ("tcp", _ANY, 135, _ANY, 0, "LISTEN", "svchost.exe"),
                ("tcp", _ANY, 445, _ANY, 0, "LISTEN", "System"),
                ("tcp", local_ip, rng.randint(49152, 65535), "52.113.194.132", 443, "ESTABLISHED", "ms-teams.exe"),
                ("tcp", local_ip, rng.randint(49152, 65535), "142.250.72.196", 443, "ESTABLISHED", "chrome.exe"),
                ("udp", _ANY, 5353, "", None, "", "chrome.exe"),
            ]
            if spec.kind == "server":
                pool.append(("tcp", _ANY, 3389, _ANY, 0, "LISTEN", "svchost.exe"))
            if spec.server_role == "sql":
                pool.append(("tcp", _ANY, 1433, _ANY, 0, "LISTEN", "sqlservr.exe"))
        elif spec.os_type == "macos":
            pool = [
                ("tcp", local_ip, rng.randint(49152, 65535), "17.57.146.52", 5223, "ESTABLISHED", "apsd"),
                ("tcp", local_ip, rng.randint(49152, 65535), "142.250.72.196", 443, "ESTABLISHED", "Google Chrome"),
                ("udp", _ANY, 5353, "", None, "", "mDNSResponder"),
                ("tcp6", "::", 7000, "::", 0, "LISTEN", "ControlCenter"),
            ]
        else:
            pool = [
                ("tcp", _ANY, 22, _ANY, 0, "LISTEN", "sshd"),
                ("tcp6", "::", 22, "::", 0, "LISTEN", "sshd"),
                ("udp", "127.0.0.53", 53, "", None, "", "systemd-resolve"),
                ("tcp", local_ip, 22, "10.10.0.15", rng.randint(49152, 65535), "ESTABLISHED", "sshd"),
            ]
            role_ports = {"web": (443, "nginx"), "db": (5432, "postgres"), "mon": (9100, "node_exporter")}
            if spec.server_role in role_ports:
                port, process = role_ports[spec.server_role]
                pool.append(("tcp", _ANY, port, _ANY, 0, "LISTEN", process))
        chosen = [agent, *rng.sample(pool, rng.randint(2, min(5, len(pool))))]
        return [
            {
                "protocol": protocol,
                "local_addr": local_addr,
                "local_port": local_port,
                "remote_addr": remote_addr,
                "remote_port": remote_port,
                "state": state,
                "pid": 4 if process == "System" else rng.randint(300, 32000),
                "process_name": process,
                "updated_at": spec.last_seen_at,
            }
            for protocol, local_addr, local_port, remote_addr, remote_port, state, process in chosen
        ]

    def _registry_entries(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng = self.rng
        current_version = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
        build, _, ubr = spec.os_build.partition(".")
        entries = [
            (current_version, "ProductName", spec.os_version.rsplit(" ", 1)[0], "REG_SZ"),
            (current_version, "DisplayVersion", spec.os_version.rsplit(" ", 1)[-1], "REG_SZ"),
            (current_version, "CurrentBuild", build, "REG_SZ"),
            (current_version, "UBR", ubr, "REG_DWORD"),
            (
                r"HKLM\SYSTEM\CurrentControlSet\Control\Terminal Server",
                "fDenyTSConnections",
                "0" if spec.kind == "server" else rng.choice("01"),
                "REG_DWORD",
            ),
            (
                r"HKLM\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate\AU",
                "NoAutoUpdate",
                rng.choice(["0", "0", "0", "1"]),
                "REG_DWORD",
            ),
            (r"HKLM\SYSTEM\CurrentControlSet\Services\RmmAgent", "Start", "2", "REG_DWORD"),
        ]
        return [
            {
                "registry_path": path,
                "value_name": name,
                "value_data": data,
                "value_type": value_type,
                "collected_at": spec.last_seen_at,
            }
            for path, name, data, value_type in entries
        ]

    def _config_entries(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng = self.rng
        sshd = "/etc/ssh/sshd_config"
        if spec.os_type == "macos":
            entries = [
                (sshd, "PasswordAuthentication", rng.choice(["yes", "no"])),
                ("/Library/Preferences/com.apple.alf.plist", "globalstate", rng.choice(["0", "1", "1", "2"])),
                ("/Library/Preferences/com.apple.SoftwareUpdate.plist", "AutomaticCheckEnabled", "true"),
                (
                    "/Library/Preferences/com.apple.SoftwareUpdate.plist",
                    "AutomaticDownload",
                    rng.choice(["true", "false"]),
                ),
            ]
        else:
            entries = [
                (sshd, "PermitRootLogin", rng.choice(["no", "prohibit-password", "prohibit-password", "yes"])),
                (sshd, "PasswordAuthentication", rng.choice(["no", "no", "yes"])),
                (sshd, "Port", "22"),
                ("/etc/os-release", "PRETTY_NAME", f'"{spec.os_version}"'),
                (
                    "/etc/apt/apt.conf.d/20auto-upgrades",
                    "APT::Periodic::Unattended-Upgrade",
                    rng.choice(['"1"', '"0"']),
                ),
            ]
        return [
            {"file_path": path, "config_key": key, "config_value": value, "collected_at": spec.last_seen_at}
            for path, key, value in entries
        ]

    def _commands(self, spec: _DeviceSpec) -> list[dict[str, Any]]:
        rng, now = self.rng, self.now
        if rng.random() > 0.3:
            return []
        rows = []
        for _ in range(rng.randint(1, 3)):
            created_at = now - dt.timedelta(minutes=rng.uniform(1, 60 * 24 * 7))
            command_type = rng.choice(["script", "script", "script", "reboot", "refresh_inventory", "update"])
            if spec.status == "offline":
                status = rng.choice(["pending", "expired"]) if created_at > spec.last_seen_at else "completed"
            else:
                status = rng.choices(
                    ["completed", "failed", "timeout", "cancelled", "pending", "sent"], weights=[70, 10, 4, 4, 6, 6]
                )[0]
            expires_at = created_at + dt.timedelta(hours=24)
            if status in ("pending", "sent"):
                # Queued or claimed and still running: recent, and not expired.
                created_at = now - dt.timedelta(seconds=rng.uniform(5, 600))
                expires_at = created_at + dt.timedelta(hours=24)
            # Pending and expired commands never reached the agent; cancelled ones were withdrawn before.
            claimed = status not in ("pending", "expired", "cancelled")
            sent_at = created_at + dt.timedelta(seconds=rng.uniform(1, 60)) if claimed else None
            duration_ms = rng.randint(200, 120_000)
            completed_at = None
            if status in ("completed", "failed", "timeout"):
                completed_at = sent_at + dt.timedelta(milliseconds=duration_ms if status != "timeout" else 300_000)
            command_id = uuid7()
            rows.append(
                {
                    "id": command_id,
                    "type": command_type,
                    "payload": self._command_payload(spec, command_type),
                    "status": status,
                    "created_by_id": rng.choice(self.command_authors),
                    "created_at": created_at,
                    "updated_at": completed_at or sent_at or created_at,
                    "sent_at": sent_at,
                    "completed_at": completed_at,
                    "expires_at": expires_at,
                    "result": self._command_result(spec, command_type, status, duration_ms),
                }
            )
            if len(self.sample_commands) < 5:
                self.sample_commands.append((spec, command_id, command_type, created_at))
        return rows

    def _command_payload(self, spec: _DeviceSpec, command_type: str) -> dict[str, Any]:
        if command_type == "script":
            name, language, content = {
                "windows": (
                    "Clear temp files",
                    "powershell",
                    "Get-ChildItem $env:TEMP -Recurse | Remove-Item -Force -Recurse -ErrorAction SilentlyContinue",
                ),
                "macos": ("List pending updates", "zsh", "softwareupdate --list"),
                "linux": ("Disk usage report", "bash", "df -h --output=source,pcent,target -x tmpfs"),
            }[spec.os_type]
            return {"scriptName": name, "language": language, "content": content, "timeoutSeconds": 300}
        if command_type == "reboot":
            return {"delaySeconds": 60, "message": "Rebooting for maintenance"}
        if command_type == "update":
            return {"agentVersion": "1.4.2"}
        return {}

    def _command_result(self, spec: _DeviceSpec, command_type: str, status: str, duration_ms: int) -> dict | None:
        if status == "completed":
            stdout = {
                "script": {
                    "windows": "Removed 1,284 files (412 MB).",
                    "macos": "No new software available.",
                    "linux": "/dev/sda1 41% /\n/dev/sdb1 63% /srv",
                }[spec.os_type],
                "reboot": "Reboot scheduled in 60 seconds.",
                "refresh_inventory": "Inventory sent.",
                "update": "Agent updated to 1.4.2.",
            }[command_type]
            return {"exitCode": 0, "stdout": stdout, "stderr": "", "durationMs": duration_ms, "error": None}
        if status == "failed":
            return {
                "exitCode": 1,
                "stdout": "",
                "stderr": "Access to the path is denied." if spec.os_type == "windows" else "Permission denied",
                "durationMs": duration_ms,
                "error": "The command exited with code 1.",
            }
        if status == "timeout":
            return {
                "exitCode": None,
                "stdout": "",
                "stderr": "",
                "durationMs": 300_000,
                "error": "Timed out after 300 s.",
            }
        return None

    def _telemetry(self, spec: _DeviceSpec):
        """Samples every 5 minutes over the last ``telemetry_hours`` until the device was last seen.

        Workstations follow office hours in their site's rough time zone; servers are busy around the clock.
        """
        rng = self.telemetry_rng
        step = TELEMETRY_INTERVAL
        end = min(self.now, spec.last_seen_at)
        end -= dt.timedelta(minutes=end.minute % 5, seconds=end.second, microseconds=end.microsecond)
        start = self.now - dt.timedelta(hours=self.telemetry_hours)
        server = spec.kind == "server"
        base_cpu = rng.uniform(10, 45) if server else rng.uniform(3, 25)
        base_ram = rng.uniform(40, 80)
        processes = {"windows": 190, "macos": 420, "linux": 140}[spec.os_type] + rng.randint(-30, 80)
        disk_percent = spec.primary_disk_used_percent
        disk_total = spec.disk_total_gb
        utc_offset = -6 if "America" in spec.site.site.timezone else 0
        ts = end
        while ts > start:
            local_hour = (ts.hour + utc_offset + ts.minute / 60) % 24
            office = max(0.0, math.sin(math.pi * (local_hour - 7) / 11)) if 7 <= local_hour <= 18 else 0.0
            activity = 0.7 + 0.3 * office if server else 0.15 + 0.85 * office
            cpu = base_cpu * activity * rng.uniform(0.6, 1.6)
            if rng.random() < 0.02:
                cpu += rng.uniform(30, 60)  # an occasional spike: a scan, a build, a backup
            ram = min(98.0, base_ram * (0.85 + 0.2 * activity) + rng.uniform(-2, 2))
            yield {
                "ts": ts,
                "cpu_percent": round(min(100.0, cpu), 1),
                "ram_percent": round(ram, 1),
                "ram_used_mb": int(spec.ram_total_mb * ram / 100),
                "disk_percent": disk_percent,
                "disk_used_gb": round(disk_total * disk_percent / 100, 1),
                "network_in_bytes": int(activity * rng.uniform(0.2, 1.0) * (40e6 if server else 15e6)),
                "network_out_bytes": int(activity * rng.uniform(0.2, 1.0) * (25e6 if server else 4e6)),
                "process_count": processes + int(activity * 40) + rng.randint(-5, 5),
            }
            ts -= step


_ALPHANUMERIC = string.ascii_uppercase + string.digits


def _random_string(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(_ALPHANUMERIC, k=length))


# --- the synthetic software catalog (--software-per-device) ------------------------------------------------------

# The long tail of a real fleet: vendors' tools, drivers, runtimes and plug-ins that few devices share. The names
# are made up ("Contoso Utility 123") so they never collide with the realistic catalogs above.
SYNTHETIC_SOFTWARE_SIZE = 4_000
# Popularity follows Zipf's law, weight 1 / rank ** s: with ~110 picks a device, the top package is on almost every
# device, rank 100 on ~1 in 6, rank 1,000 on ~1 in 60 and the last on ~1 in 300.
SYNTHETIC_SOFTWARE_SKEW = 1.0
SYNTHETIC_VENDORS = [
    ("Contoso", "Contoso Ltd."),
    ("Fabrikam", "Fabrikam, Inc."),
    ("Litware", "Litware, Inc."),
    ("Proseware", "Proseware, Inc."),
    ("Adatum", "A. Datum Corporation"),
    ("Trey", "Trey Research Inc."),
    ("Relecloud", "Relecloud"),
    ("VanArsdel", "VanArsdel, Ltd."),
    ("Southridge", "Southridge Video"),
    ("Lamna", "Lamna Healthcare Company"),
    ("Tailwind", "Tailwind Traders"),
    ("Nod", "Nod Publishers"),
    ("Fincher", "Fincher Architects"),
    ("Munson", "Munson's Pickles and Preserves Farm"),
    ("Consolidated", "Consolidated Messenger"),
    ("Graphic", "Graphic Design Institute"),
    ("Datum", "Datum Software GmbH"),
    ("Cronus", "Cronus Systems"),
    ("Olympia", "Olympia Tech Pty Ltd"),
    ("Skyline", "Skyline Software BV"),
]
SYNTHETIC_PRODUCTS = [
    "Utility", "Agent", "Toolkit", "Viewer", "Driver Pack", "Runtime", "Connector", "Client", "Suite", "Manager",
    "Studio", "Helper", "Updater", "Sync", "Plug-in", "SDK", "Monitor", "Backup", "Scanner", "Reader", "Editor",
    "Analytics", "Print Services", "VPN", "Audio Driver", "Launcher", "Add-in for Office", "Framework",
]  # fmt: skip


@dataclass(frozen=True)
class SyntheticPackage:
    """One program of the synthetic catalog, as each OS family's agent reports it."""

    name: str  # Windows and macOS: "Contoso Utility 123"
    package_name: str  # Linux: "contoso-utility-123"
    publisher: str
    versions: tuple[str, ...]  # the first is the most common
    vendor: str
    product: str


@functools.cache
def synthetic_software_catalog() -> tuple[SyntheticPackage, ...]:
    """``SYNTHETIC_SOFTWARE_SIZE`` made-up programs, the most popular first; the same list for every seed."""
    rng = random.Random("synthetic software catalog")  # noqa: S311 -- demo data, fixed on purpose
    names: dict[tuple[int, int, int], None] = {}
    while len(names) < SYNTHETIC_SOFTWARE_SIZE:
        key = (rng.randrange(len(SYNTHETIC_VENDORS)), rng.randrange(len(SYNTHETIC_PRODUCTS)), rng.randint(1, 999))
        names[key] = None
    catalog = []
    for vendor_index, product_index, number in names:
        vendor, publisher = SYNTHETIC_VENDORS[vendor_index]
        product = f"{SYNTHETIC_PRODUCTS[product_index]} {number}"
        major = rng.randint(1, 30)
        versions = tuple(
            f"{major}.{minor}.{rng.randint(0, 9999)}"
            for minor in sorted(rng.sample(range(20), rng.choice([1, 1, 2, 3])), reverse=True)
        )
        catalog.append(
            SyntheticPackage(
                name=f"{vendor} {product}",
                package_name=slugify(f"{vendor} {product}"),
                publisher=publisher,
                versions=versions,
                vendor=vendor,
                product=product,
            )
        )
    return tuple(catalog)


@functools.cache
def _synthetic_cumulative_weights() -> list[float]:
    total, cumulative = 0.0, []
    for rank in range(1, SYNTHETIC_SOFTWARE_SIZE + 1):
        total += 1 / rank**SYNTHETIC_SOFTWARE_SKEW
        cumulative.append(total)
    return cumulative


class _SoftwareTopUp:
    """Adds synthetic programs to a device's software list until it has about ``target`` rows (±10 %)."""

    def __init__(self, *, rng: random.Random, target: int) -> None:
        self.rng = rng
        self.low, self.high = round(target * 0.9), round(target * 1.1)
        self.catalog = synthetic_software_catalog()
        self.cumulative = _synthetic_cumulative_weights()
        self.ranks = range(len(self.catalog))

    def rows(self, spec: _DeviceSpec, *, present: int) -> list[dict[str, Any]]:
        rng = self.rng
        missing = min(rng.randint(self.low, self.high) - present, len(self.catalog))
        if missing <= 0:
            return []
        # Draws with replacement by popularity until enough distinct programs: a popular one is drawn again and
        # again, a rare one seldom, which is the skew wanted.
        picked: dict[int, None] = {}
        while len(picked) < missing:
            picked.update(dict.fromkeys(rng.choices(self.ranks, cum_weights=self.cumulative, k=missing - len(picked))))
        rows = []
        for rank in picked:
            package = self.catalog[rank]
            versions = package.versions
            version = versions[0] if len(versions) == 1 or rng.random() < 0.75 else rng.choice(versions[1:])
            if spec.os_type == "windows":
                name, location = package.name, rf"C:\Program Files\{package.vendor}\{package.product}"
            elif spec.os_type == "macos":
                name, location = package.name, f"/Applications/{package.name}.app"
            else:
                name, location = package.package_name, "/usr"
            rows.append(
                {
                    "name": name,
                    "version": version,
                    "publisher": package.publisher,
                    "install_date": (spec.enrolled_at - dt.timedelta(days=rng.uniform(0, 400))).date(),
                    "install_location": location,
                    "updated_at": spec.last_seen_at,
                }
            )
        return rows
