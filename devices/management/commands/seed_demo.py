"""Fill an empty installation with a demo MSP, two customers and a fleet of devices to click through.

    manage.py loaddata default_roles      # first, so the demo users get their partner roles
    manage.py seed_demo                   # ~300 devices with a day of telemetry
    manage.py seed_demo --devices 100000  # a benchmark fleet; telemetry for the first 1,000 devices only
    manage.py seed_demo --devices 100000 --organizations 10 --software-per-device 150 --telemetry-devices 0
                                          # the dynamic-groups benchmark's fleet (bench/groups_seed.sh)

Running it again creates nothing: it says the demo exists and prints the login again. The logic is in
``devices.demo``.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from devices.demo import (
    DEFAULT_CREDENTIALS_FILE,
    DEMO_ORGANIZATIONS,
    DEMO_PARTNER_SLUG,
    SYNTHETIC_SOFTWARE_SIZE,
    seed_demo,
)

ADMIN_URL = "http://127.0.0.1:8000/admin/"


class Command(BaseCommand):
    help = (
        "Create a demo partner (slug demo-msp) with two organizations (or --organizations K), their sites and "
        "enrollment keys, a superuser admin@example.com and a technician tech@example.com (passwords written to "
        "--credentials-file, mode 0600), and N devices with hardware, software, disks, network, registry/config "
        "entries, groups, commands, audit entries and telemetry every 5 minutes. Idempotent: if the demo partner "
        "exists, only prints the login."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--devices", type=int, default=300, metavar="N", help="Devices to create (default 300).")
        parser.add_argument(
            "--seed", type=int, default=42, metavar="S", help="Seed of the random data, for reproducible demos."
        )
        parser.add_argument(
            "--telemetry-hours",
            type=int,
            default=24,
            metavar="H",
            help="Hours of telemetry (one sample every 5 minutes, 288 a device for 24 h); 0 for none (default 24).",
        )
        parser.add_argument(
            "--telemetry-devices",
            type=int,
            default=1000,
            metavar="M",
            help="Only the first M devices get telemetry, so a 100,000-device fleet does not mean 29 million "
            "samples (default 1000).",
        )
        parser.add_argument(
            "--organizations",
            type=int,
            default=len(DEMO_ORGANIZATIONS),
            metavar="K",
            help=f"Customers the devices are spread over: Acme Corp and Globex, then made-up ones with an office "
            f"and home workers each (default {len(DEMO_ORGANIZATIONS)}).",
        )
        parser.add_argument(
            "--software-per-device",
            type=int,
            default=None,
            metavar="N",
            help=f"Top each device's software list up to about N programs (±10 %%) from a synthetic catalog of "
            f"{SYNTHETIC_SOFTWARE_SIZE:,} packages with a skewed popularity (default: only the realistic 21-60).",
        )
        parser.add_argument(
            "--credentials-file",
            type=Path,
            default=DEFAULT_CREDENTIALS_FILE,
            metavar="PATH",
            help=f"Where the demo passwords are written and read back (default {DEFAULT_CREDENTIALS_FILE}).",
        )

    def handle(
        self,
        *args,
        devices: int,
        seed: int,
        telemetry_hours: int,
        telemetry_devices: int,
        organizations: int,
        software_per_device: int | None,
        credentials_file: Path,
        **options,
    ) -> None:
        if devices < 0 or telemetry_hours < 0 or telemetry_devices < 0:
            raise CommandError("--devices, --telemetry-hours and --telemetry-devices must not be negative.")
        if organizations < 1:
            raise CommandError("--organizations must be at least 1.")
        if software_per_device is not None and software_per_device < 0:
            raise CommandError("--software-per-device must not be negative.")
        credentials_file = Path(credentials_file)  # call_command() passes options without argparse's type=
        started = time.monotonic()
        result = seed_demo(
            devices=devices,
            seed=seed,
            telemetry_hours=telemetry_hours,
            telemetry_devices=telemetry_devices,
            organizations=organizations,
            software_per_device=software_per_device,
            credentials_file=credentials_file,
            progress=self.stdout.write,
        )
        elapsed = time.monotonic() - started

        if result.created:
            self.stdout.write(self.style.SUCCESS(f"Created the demo partner {DEMO_PARTNER_SLUG!r} in {elapsed:.1f} s:"))
            for name, count in result.counts.items():
                self.stdout.write(f"  {count:>10,}  {name}")
            self.stdout.write("Enrollment keys (shown only now; only their hashes are stored):")
            for label, raw_key in result.enrollment_keys:
                self.stdout.write(f"  {label}: {raw_key}")
        else:
            self.stdout.write(
                f"The demo partner {DEMO_PARTNER_SLUG!r} exists already ({result.counts['devices']:,} devices); "
                "nothing was created."
            )
        for note in result.notes:
            self.stdout.write(self.style.WARNING(note))

        self.stdout.write(f"Admin: {ADMIN_URL}")
        for login in result.logins:
            if login.password is None:
                self.stdout.write(
                    f"  {login.email} ({login.role}): password unknown (not in {credentials_file}, or changed); "
                    f"set one with `manage.py changepassword {login.email}`"
                )
            else:
                self.stdout.write(f"  {login.email} ({login.role}): {login.password}")
        self.stdout.write(f"Passwords are kept in {credentials_file}.")
