"""manage.py seed_demo: a demo partner and a fleet of devices, created once, every row inside its device's org."""

import datetime as dt
import stat
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, OuterRef, Subquery
from django.utils import timezone

from accounts.models import AuditLog, PartnerUser, User
from alerts.demo import DEMO_RULES
from alerts.models import Alert, AlertRule
from devices.demo import LINUX_SOFTWARE, MACOS_SOFTWARE, WINDOWS_SOFTWARE, synthetic_software_catalog
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
from devices.services.credentials import ENROLLMENT_KEY_MARKER, hash_enrollment_key
from orgs.models import EnrollmentKey, Organization, Partner, Site
from scripts.demo import DEMO_SCRIPTS
from scripts.models import Script, ScriptRun, ScriptSchedule

DEVICE_OWNED = [
    DeviceHardware,
    DeviceNetworkInterface,
    DeviceDisk,
    DeviceSoftware,
    DeviceRegistryEntry,
    DeviceConfigEntry,
    DeviceNetworkConnection,
    DeviceCommand,
    DeviceGroupMembership,
    DeviceTelemetry,
]
REALISTIC_NAMES = sorted({entry[0] for entry in [*WINDOWS_SOFTWARE, *MACOS_SOFTWARE, *LINUX_SOFTWARE]})


@pytest.fixture
def credentials_file(tmp_path) -> Path:
    return tmp_path / "demo-credentials.txt"


@pytest.fixture
def load_default_roles(settings):
    """Loads fixtures/default_roles.json when called (FIXTURE_DIRS set here too, whatever rmm/settings.py says)."""
    fixtures = Path(settings.BASE_DIR) / "fixtures"
    if fixtures not in [Path(folder) for folder in settings.FIXTURE_DIRS]:
        settings.FIXTURE_DIRS = [*settings.FIXTURE_DIRS, fixtures]
    return lambda: call_command("loaddata", "default_roles", verbosity=0)


@pytest.fixture
def default_roles(load_default_roles):
    load_default_roles()


@pytest.fixture
def seed(credentials_file):
    def seed(**options) -> str:
        out = StringIO()
        options = {"devices": 20, "seed": 7, "credentials_file": credentials_file, **options}
        call_command("seed_demo", stdout=out, **options)
        return out.getvalue()

    return seed


def passwords_in(credentials_file: Path) -> dict[str, str]:
    lines = [line.split() for line in credentials_file.read_text().splitlines() if not line.startswith("#")]
    return dict(lines)


def row_counts() -> dict[str, int]:
    models = [Partner, Organization, Site, EnrollmentKey, User, PartnerUser, Device, DeviceGroup, AuditLog]
    return {model.__name__: model.objects.count() for model in [*models, *DEVICE_OWNED]}


@pytest.mark.django_db
def test_it_creates_the_demo_tenants(seed):
    output = seed()

    partner = Partner.objects.get(slug="demo-msp")
    orgs = {org.name: org for org in partner.organizations.all()}
    assert set(orgs) == {"Acme Corp", "Globex"}
    for org in orgs.values():
        assert org.sites.count() == 2
        key = org.enrollment_keys.get()
        assert key.site.org_id == org.id
        assert key.key_prefix.startswith(ENROLLMENT_KEY_MARKER)
    # The raw keys are printed once, and only their HMACs are stored.
    printed = [word for word in output.split() if word.startswith(ENROLLMENT_KEY_MARKER)]
    assert len(printed) == 2
    assert {hash_enrollment_key(raw) for raw in printed} == set(
        EnrollmentKey.objects.values_list("key_hash", flat=True)
    )
    assert {raw[:8] for raw in printed} == set(EnrollmentKey.objects.values_list("key_prefix", flat=True))


@pytest.mark.django_db
def test_it_spreads_the_devices_over_both_orgs_and_their_sites(seed):
    seed()

    assert Device.objects.count() == 20
    per_org = dict(Device.objects.values_list("org__name").annotate(n=Count("id")))
    assert set(per_org) == {"Acme Corp", "Globex"}
    assert all(device.site.org_id == device.org_id for device in Device.objects.select_related("site"))
    assert Device.objects.values("agent_id").distinct().count() == 20
    for device in Device.objects.all():
        assert len(device.agent_id) == 64 and int(device.agent_id, 16) >= 0
        assert len(device.agent_token_hash) == 64
        assert device.last_seen_at and device.enrolled_at and device.last_seen_ip and device.os_version


@pytest.mark.django_db
def test_every_device_has_its_inventory(seed):
    seed()

    for device in Device.objects.annotate(
        software=Count("devicesoftware", distinct=True),
        interfaces=Count("devicenetworkinterface", distinct=True),
        disks=Count("devicedisk", distinct=True),
        connections=Count("devicenetworkconnection", distinct=True),
    ):
        assert DeviceHardware.objects.filter(device=device).exists()
        assert 21 <= device.software <= 60
        assert 1 <= device.interfaces <= 2
        assert 1 <= device.disks <= 3
        assert device.connections >= 1
        if device.os_type == "windows":
            assert DeviceRegistryEntry.objects.filter(device=device).exists()
        else:
            assert DeviceConfigEntry.objects.filter(device=device).exists()


@pytest.mark.django_db
def test_it_records_a_day_of_telemetry(seed):
    seed()

    assert DeviceTelemetry.objects.count() > 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(ts) > now() - interval '24 hours', max(ts) <= now() FROM device_telemetry")
        assert cursor.fetchone() == (True, True)
    online = Device.objects.filter(status="online").first()
    assert DeviceTelemetry.objects.filter(device=online).count() in (287, 288)


@pytest.mark.django_db
def test_telemetry_can_be_limited_to_the_first_devices(seed):
    seed(telemetry_devices=3, telemetry_hours=2)

    assert DeviceTelemetry.objects.values("device").distinct().count() <= 3
    assert DeviceTelemetry.objects.count() <= 3 * 24


@pytest.mark.django_db
def test_every_device_owned_row_is_in_its_devices_org(seed):
    seed()

    for model in DEVICE_OWNED:
        assert model.objects.exists(), model.__name__
        devices_org = Subquery(Device.objects.filter(id=OuterRef("device_id")).values("org_id")[:1])
        assert not model.objects.exclude(org_id=devices_org).exists(), model.__name__


@pytest.mark.django_db
def test_it_makes_a_static_and_dynamic_groups_per_org(seed):
    seed()

    for org in Organization.objects.all():
        dynamic = DeviceGroup.objects.get(org=org, name="Windows devices")
        static = DeviceGroup.objects.get(org=org, type="static")
        assert dynamic.filter_rules["conditions"][0] == {"field": "osType", "operator": "equals", "value": "windows"}
        windows = set(Device.objects.filter(org=org, os_type="windows").values_list("id", flat=True))
        members = dynamic.memberships.all()
        assert set(members.values_list("device_id", flat=True)) == windows
        assert set(members.values_list("added_by", flat=True)) <= {"dynamic_rule"}
        servers = set(Device.objects.filter(org=org, hostname__startswith="srv-").values_list("id", flat=True))
        assert set(static.memberships.values_list("device_id", flat=True)) == servers
        # The rule groups are evaluated by the groups service: their members are what their rules match.
        full_disks = DeviceGroup.objects.get(org=org, name="Disks over 90 %")
        expected = set(Device.objects.filter(org=org, devicedisk__used_percent__gt=90).values_list("id", flat=True))
        assert set(full_disks.memberships.values_list("device_id", flat=True)) == expected
        assert full_disks.fields_used == ["disks.usedPercent"]


@pytest.mark.django_db
def test_it_queues_commands_and_writes_audit_entries(seed):
    seed()

    assert DeviceCommand.objects.exists()
    for command in DeviceCommand.objects.filter(status__in=["completed", "failed"]):
        assert set(command.result) == {"exitCode", "stdout", "stderr", "durationMs", "error"}
        assert command.sent_at <= command.completed_at
    assert AuditLog.objects.filter(action="organization.create").count() == 2


@pytest.mark.django_db
def test_the_superuser_signs_in_with_the_password_in_the_credentials_file(seed, credentials_file):
    output = seed()

    password = passwords_in(credentials_file)["admin@example.com"]
    assert stat.S_IMODE(credentials_file.stat().st_mode) == 0o600
    assert password in output and "http://127.0.0.1:8000/admin/" in output
    user = authenticate(username="admin@example.com", password=password)
    assert user is not None and user.is_superuser and user.is_staff


@pytest.mark.django_db
def test_the_technician_gets_the_partner_technician_role_when_roles_are_loaded(default_roles, seed, credentials_file):
    seed()

    membership = PartnerUser.objects.get(user__email="tech@example.com")
    assert membership.partner.slug == "demo-msp"
    assert membership.role.name == "Partner Technician"
    assert membership.org_access == "all"
    assert authenticate(username="tech@example.com", password=passwords_in(credentials_file)["tech@example.com"])


@pytest.mark.django_db
def test_the_technician_signs_in_to_the_admin_and_sees_the_open_alerts(default_roles, seed, credentials_file, client):
    seed()
    password = passwords_in(credentials_file)["tech@example.com"]

    response = client.post("/admin/login/?next=/admin/", {"username": "tech@example.com", "password": password})

    assert response.status_code == 302 and response.url == "/admin/"
    page = client.get("/admin/alerts/alert/?status__exact=open")
    assert page.status_code == 200
    assert 'name="_selected_action"' in page.content.decode()


@pytest.mark.django_db
def test_a_demo_technician_seeded_without_admin_access_gets_it_on_the_next_run(default_roles, seed):
    seed()
    User.objects.filter(email="tech@example.com").update(is_staff=False)

    seed()

    assert User.objects.get(email="tech@example.com").is_staff


@pytest.mark.django_db
def test_without_roles_it_skips_the_memberships_and_says_so(seed):
    output = seed()

    assert not PartnerUser.objects.exists()
    assert "loaddata default_roles" in output


@pytest.mark.django_db
def test_running_it_twice_creates_nothing_and_reprints_the_login(default_roles, seed, credentials_file):
    seed()
    before = row_counts()
    password = passwords_in(credentials_file)["admin@example.com"]

    output = seed(devices=50)

    assert row_counts() == before
    assert "exists already" in output
    assert password in output
    assert f" {ENROLLMENT_KEY_MARKER}" not in output


@pytest.mark.django_db
def test_a_second_run_adds_the_memberships_once_the_roles_are_loaded(seed, load_default_roles):
    seed()
    assert not PartnerUser.objects.exists()

    load_default_roles()
    seed()

    assert set(PartnerUser.objects.values_list("user__email", "role__name")) == {
        ("admin@example.com", "Partner Admin"),
        ("tech@example.com", "Partner Technician"),
    }


@pytest.mark.django_db
def test_the_same_seed_gives_the_same_fleet(seed):
    def fleet(slug):
        devices = Device.objects.filter(org__partner__slug=slug)
        return sorted(devices.values_list("hostname", "os_type", "os_version", "status", "site__name", "tags"))

    seed()
    Partner.objects.filter(slug="demo-msp").update(slug="demo-msp-first")

    seed()

    assert fleet("demo-msp") == fleet("demo-msp-first")


@pytest.mark.django_db
def test_software_per_device_tops_every_device_up_to_about_n_programs(seed):
    seed(software_per_device=150)

    catalog = synthetic_software_catalog()
    synthetic = {package.name for package in catalog} | {package.package_name for package in catalog}
    for device in Device.objects.all():
        names = list(DeviceSoftware.objects.filter(device=device).values_list("name", flat=True))
        assert 135 <= len(names) <= 165, device.hostname
        assert len(set(names)) == len(names), device.hostname
        # The realistic list is still there; the rest comes from the synthetic catalog.
        assert "RMM Agent" in names
        assert 75 <= sum(name in synthetic for name in names) <= 145
        linux_style = {name for name in names if name in synthetic and name.islower()}
        assert bool(linux_style) == (device.os_type == "linux"), device.hostname


@pytest.mark.django_db
def test_the_synthetic_software_has_a_few_popular_and_many_rare_packages(seed):
    seed(devices=40, software_per_device=150)

    catalog = synthetic_software_catalog()
    assert len({package.name for package in catalog}) == len(catalog) >= 3000
    per_name = dict(
        DeviceSoftware.objects.filter(name__in=[package.name for package in catalog])
        .values_list("name")
        .annotate(devices=Count("device", distinct=True))
    )
    not_linux = Device.objects.exclude(os_type="linux").count()
    # Uniform picks would put each package on ~3 % of the devices; Zipf puts the top ones on most of them.
    assert per_name[catalog[0].name] >= 0.7 * not_linux
    assert sum(count >= 0.5 * not_linux for count in per_name.values()) >= 5
    assert sum(count == 1 for count in per_name.values()) >= 500


@pytest.mark.django_db
def test_the_extra_software_leaves_the_rest_of_the_fleet_as_it_was(seed):
    def fleet(slug):
        devices = Device.objects.filter(org__partner__slug=slug)
        return sorted(devices.values_list("hostname", "os_type", "os_version", "status", "site__name", "tags"))

    def realistic_software(slug):
        software = DeviceSoftware.objects.filter(org__partner__slug=slug, name__in=REALISTIC_NAMES)
        return sorted(software.values_list("device__hostname", "name", "version"))

    seed()
    Partner.objects.filter(slug="demo-msp").update(slug="demo-msp-first")

    seed(software_per_device=150)

    assert fleet("demo-msp") == fleet("demo-msp-first")
    assert realistic_software("demo-msp") == realistic_software("demo-msp-first")
    topped_up = DeviceSoftware.objects.filter(org__partner__slug="demo-msp").count()
    assert topped_up > 3 * DeviceSoftware.objects.filter(org__partner__slug="demo-msp-first").count()


@pytest.mark.django_db
def test_the_inventory_is_the_same_wherever_the_clock_stands_between_two_telemetry_samples(seed, monkeypatch):
    # Samples sit on the clock's 5-minute marks, so a device seen 2-90 s ago gets 288 samples a day when the seed
    # runs 150 s after a mark and 287 when it runs 1 s after one. Telemetry used to draw from the stream that makes
    # the inventory, which then shifted for every later device: a flaky failure of the test above.
    last_mark = timezone.now().replace(second=0, microsecond=0)
    last_mark -= dt.timedelta(minutes=last_mark.minute % 5 + 5)

    def inventory(slug):
        owned = {"org__partner__slug": slug}
        return {
            "software": sorted(
                DeviceSoftware.objects.filter(**owned).values_list("device__hostname", "name", "version")
            ),
            "serials": sorted(DeviceHardware.objects.filter(**owned).values_list("device__hostname", "serial_number")),
            "disks": sorted(
                DeviceDisk.objects.filter(**owned).values_list("device__hostname", "mount_point", "used_gb")
            ),
            "connections": sorted(
                DeviceNetworkConnection.objects.filter(**owned).values_list("device__hostname", "local_port", "pid")
            ),
            "commands": sorted(DeviceCommand.objects.filter(**owned).values_list("device__hostname", "type", "status")),
        }

    monkeypatch.setattr(timezone, "now", lambda: last_mark + dt.timedelta(seconds=150))
    seed()
    Partner.objects.filter(slug="demo-msp").update(slug="demo-msp-first")
    monkeypatch.setattr(timezone, "now", lambda: last_mark + dt.timedelta(seconds=1))
    seed()

    samples = {
        slug: DeviceTelemetry.objects.filter(org__partner__slug=slug).count() for slug in ("demo-msp", "demo-msp-first")
    }
    assert samples["demo-msp"] < samples["demo-msp-first"]  # the two clocks did give different telemetry
    assert inventory("demo-msp") == inventory("demo-msp-first")


@pytest.mark.django_db
def test_organizations_spreads_the_fleet_over_that_many_customers(seed):
    output = seed(devices=200, organizations=17)

    orgs = list(Partner.objects.get(slug="demo-msp").organizations.all())
    assert len(orgs) == 17
    assert {"Acme Corp", "Globex", "Initech", "Initech 2"} <= {org.name for org in orgs}
    assert len({org.slug for org in orgs}) == 17
    for org in orgs:
        assert org.sites.count() == 2
        assert org.enrollment_keys.get().site.org_id == org.id
        assert DeviceGroup.objects.filter(org=org).count() == 4
        assert Device.objects.filter(org=org).exists(), org.name
    assert all(device.site.org_id == device.org_id for device in Device.objects.select_related("site"))
    assert "        17  organizations" in output
    assert AuditLog.objects.filter(action="organization.create").count() == 17


@pytest.mark.django_db
def test_a_single_organization_gets_the_whole_fleet(seed):
    seed(organizations=1)

    assert list(Organization.objects.values_list("name", flat=True)) == ["Acme Corp"]
    assert Device.objects.filter(org__name="Acme Corp").count() == 20


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"organizations": 0}, "--organizations must be at least 1"),
        ({"software_per_device": -1}, "--software-per-device must not be negative"),
    ],
)
def test_it_refuses_impossible_options(seed, options, message):
    with pytest.raises(CommandError, match=message):
        seed(**options)

    assert not Partner.objects.exists()


@pytest.mark.django_db
def test_it_gives_every_organization_the_demo_alert_rules_and_opens_alerts_at_once(seed):
    output = seed(devices=60)

    names = {demo.name for demo in DEMO_RULES}
    for org in Organization.objects.all():
        rules = AlertRule.objects.filter(org=org)
        assert set(rules.values_list("name", flat=True)) == names
        assert not rules.filter(channels__isnull=False).exists()  # console only: no notification channel
    firing = set(Alert.objects.filter(status="open").values_list("rule__name", flat=True))
    assert firing >= names, f"no open alert for {names - firing}"
    busy = Alert.objects.get(status="open", rule__name="CPU above 90 % for 10 minutes", org__name="Acme Corp")
    assert busy.value is not None and busy.value > 90
    assert AuditLog.objects.filter(action="alert_rule.create").count() == 2 * len(DEMO_RULES)
    assert "open alerts" in output


@pytest.mark.django_db
def test_running_it_twice_keeps_one_set_of_alert_rules(seed):
    seed()
    rules = set(AlertRule.objects.values_list("org_id", "name"))
    # A rule deleted by a person comes back; the others are left as they are.
    AlertRule.objects.filter(name="Antivirus missing", org__name="Globex").delete()

    seed()

    assert set(AlertRule.objects.values_list("org_id", "name")) == rules
    assert AlertRule.objects.count() == 2 * len(DEMO_RULES)


@pytest.mark.django_db
def test_it_gives_every_organization_a_script_library_with_past_runs_and_a_schedule(seed):
    output = seed(devices=60)

    names = {demo.name for demo in DEMO_SCRIPTS}
    for org in Organization.objects.all():
        scripts = Script.objects.filter(org=org)
        assert set(scripts.values_list("name", flat=True)) == names
        assert ScriptRun.objects.filter(org=org).exists(), org.name
        schedule = ScriptSchedule.objects.get(org=org)
        assert schedule.enabled and schedule.next_run_at is not None
    cleanup = Script.objects.filter(name="Disk cleanup").first()
    assert cleanup.parameters[0]["name"] == "minFreeGb" and cleanup.parameters[0]["type"] == "int"
    finished = DeviceCommand.objects.filter(script_run__isnull=False, status__in=["completed", "failed"])
    assert finished.filter(result__exitCode=0).exists() and finished.exclude(result__exitCode=0).exists()
    assert AuditLog.objects.filter(action="script.create").count() == 2 * len(DEMO_SCRIPTS)
    assert "library scripts" in output


@pytest.mark.django_db
def test_running_it_twice_keeps_one_script_library(seed):
    seed()
    before = (Script.objects.count(), ScriptRun.objects.count(), ScriptSchedule.objects.count())

    seed()

    assert (Script.objects.count(), ScriptRun.objects.count(), ScriptSchedule.objects.count()) == before
