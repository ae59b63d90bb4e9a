"""Every list of the technician API runs the same number of queries for 3 rows as for 23 (issue 5): an N+1 in a
view, a serializer or the reach computation fails here.

Each case grows its list with rows that carry what its serializer reads (roles with permissions, memberships with
users, roles, organizations and sites, audit rows with actors, commands with their author) and asks as a persona
through a real API token, so authentication and the reach are counted on every request, as in production.
The meta-test at the end fails when a list route of the OpenAPI document has no case here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient

from accounts import auth
from accounts.models import AuditLog, OrganizationUser, PartnerUser, Permission, Role, RolePermission, User
from alerts.models import Alert, AlertRule, MaintenanceWindow, Notification, NotificationChannel
from devices.models import (
    Device,
    DeviceCommand,
    DeviceConfigEntry,
    DeviceDisk,
    DeviceGroup,
    DeviceHardware,
    DeviceNetworkConnection,
    DeviceNetworkInterface,
    DeviceRegistryEntry,
    DeviceSoftware,
)
from devices.services import groups
from orgs.models import EnrollmentKey, Organization, Partner, Site
from scripts.models import Script, ScriptRun, ScriptSchedule
from scripts.services.library import save_script
from scripts.services.runs import start_run
from tests.conftest import World

pytestmark = pytest.mark.django_db

FEW, MORE = 3, 20


@dataclass
class Grower:
    """What a case needs to add rows to its list: the world, the requester, roles and permissions, one device."""

    world: World
    user: User
    roles: dict[str, Role]
    permissions: dict[str, Permission]
    device: Device
    group: DeviceGroup  # "A1 servers", a static group of site A1
    script: Script | None = None  # for the scripts lists: a bash script of org A
    run: ScriptRun | None = None  # its run on a1-1 (queued) and a1-2 (Windows: skipped)

    def path(self, case: Case) -> str:
        """``case.path`` with this grower's device, group, script and run."""
        return case.path.format(
            device=self.device.pk,
            group=self.group.pk,
            script=self.script.pk if self.script else None,
            run=self.run.pk if self.run else None,
        )

    def new_user(self, n: int, kind: str) -> User:
        return User.objects.create_user(f"{kind}-{n}@a.example", "correct horse battery staple", name=f"{kind} {n}")


@dataclass(frozen=True)
class Case:
    path: str  # "{device}" is replaced by a device of site A1, "{group}" by the static group of site A1,
    # "{script}" and "{run}" by the grower's script and run
    persona: str
    grow: Callable[[Grower, int], object]  # adds row number n, visible to the persona in this list
    queries: int  # per request, whatever the number of rows

    def __str__(self) -> str:
        return (
            self.path.removeprefix("/api/v1/")
            .replace("{device}", "{id}")
            .replace("{group}", "{id}")
            .replace("{script}", "{id}")
            .replace("{run}", "{id}")
        )


def _permission(g: Grower, n: int) -> None:
    Permission.objects.create(resource=f"extra{n}", action="read", description=f"Extra resource {n}")


def _role(g: Grower, n: int) -> None:
    role = Role.objects.create(name=f"Custom {n}", scope=Role.Scope.PARTNER, partner=g.world.partner_a)
    RolePermission.objects.bulk_create(
        RolePermission(role=role, permission=g.permissions[name])
        for name in ("devices:read", "devices:execute", "sites:read")
    )


def _user(g: Grower, n: int) -> None:
    user = g.new_user(n, "person")
    if n % 2:
        membership = OrganizationUser.objects.create(org=g.world.org_a, user=user, role=g.roles["Org User"])
        membership.sites.set([g.world.site_a1])
    else:
        PartnerUser.objects.create(
            partner=g.world.partner_a, user=user, role=g.roles["Partner Technician"], org_access="all"
        )


def _partner_user(g: Grower, n: int) -> None:
    membership = PartnerUser.objects.create(
        partner=g.world.partner_a,
        user=g.new_user(n, "tech"),
        role=g.roles["Partner Technician" if n % 2 else "Partner Viewer"],
        org_access="selected",
    )
    membership.selected_organizations.set([g.world.org_a, g.world.org_a2])


def _organization_user(g: Grower, n: int) -> None:
    membership = OrganizationUser.objects.create(
        org=g.world.org_a, user=g.new_user(n, "staff"), role=g.roles["Org User" if n % 2 else "Org Admin"]
    )
    membership.sites.set([g.world.site_a1, g.world.site_a2])


def _api_token(g: Grower, n: int) -> None:
    auth.issue_api_token(user=g.user, name=f"script {n}", lifetime=None)


def _audit_row(g: Grower, n: int) -> None:
    AuditLog.objects.create(
        org=g.world.org_a,
        actor_user=g.user,
        actor_device=g.device,
        action="device.update",
        target_type="device",
        target_id=str(g.device.pk),
        details={"changed": ["tags"], "n": n},
        ip="192.0.2.7",
    )


def _command(g: Grower, n: int) -> None:
    DeviceCommand.objects.create(
        device=g.device,
        org_id=g.device.org_id,
        type=DeviceCommand.Type.SCRIPT,
        payload={"language": "bash", "content": f"echo {n}"},
        created_by=g.user,
        result={"exitCode": 0, "stdout": str(n)},
    )


def _inventory(model, **fields_for: Callable[[int], object]) -> Callable[[Grower, int], None]:
    def grow(g: Grower, n: int) -> None:
        model.objects.create(
            device=g.device, org_id=g.device.org_id, **{name: make(n) for name, make in fields_for.items()}
        )

    return grow


def _partner(g: Grower, n: int) -> None:
    # The requester joins each new partner: the reach grows with the list and must stay constant in queries too.
    partner = Partner.objects.create(name=f"Partner {n}", slug=f"partner-{n}")
    Organization.objects.create(partner=partner, name=f"Customer of {n}", slug="customer")
    PartnerUser.objects.create(partner=partner, user=g.user, role=g.roles["Partner Viewer"], org_access="all")


def _organization(g: Grower, n: int) -> None:
    Organization.objects.create(partner=g.world.partner_a, name=f"Customer {n}", slug=f"customer-{n}")


def _site(g: Grower, n: int) -> None:
    Site.objects.create(org=g.world.org_a, name=f"Branch {n}", address={"city": f"Town {n}"})


def _enrollment_key(g: Grower, n: int) -> None:
    raw = f"grown-key-{n}"
    EnrollmentKey.objects.create(
        org=g.world.org_a,
        site=g.world.site_a2,
        name=f"Rollout {n}",
        key_prefix=raw[:8],
        key_hash=hashlib.sha256(raw.encode()).hexdigest(),
        max_usage=10,
        created_by=g.user,
    )


def _device(g: Grower, n: int, site: Site | None = None) -> None:
    device = Device.objects.create(
        org=g.world.org_a,
        site=site or g.world.site_a2,
        agent_id=hashlib.sha256(f"grown-{n}".encode()).hexdigest(),
        hostname=f"grown-{n}",
        os_type=Device.OsType.WINDOWS,
        tags=["grown"],
    )
    DeviceHardware.objects.create(device=device, org=device.org, serial_number=f"SN-{n}")


def _group(g: Grower, n: int) -> None:
    group = DeviceGroup.objects.create(org=g.world.org_a, site=g.world.site_a1, name=f"Group {n}", parent=g.group)
    groups.add_members(group=group, devices=g.world.devices[g.world.site_a1], actor=g.user)


def _group_member(g: Grower, n: int) -> None:
    _device(g, n, site=g.world.site_a1)
    groups.add_members(group=g.group, devices=[Device.objects.get(hostname=f"grown-{n}")], actor=g.user)


def _alert_rule(g: Grower, n: int) -> None:
    rule = AlertRule.objects.create(org=g.world.org_a, name=f"Rule {n}", condition={"kind": "offline", "minutes": 15})
    rule.channels.set([_email_channel(g, n)])


def _email_channel(g: Grower, n: int) -> NotificationChannel:
    return NotificationChannel.objects.create(
        org=g.world.org_a, name=f"Ops {n}", kind="email", config={"to": [f"ops{n}@a.example"]}
    )


def _alert(g: Grower, n: int) -> None:
    rule = AlertRule.objects.create(org=g.world.org_a, name=f"Rule {n}", condition={"kind": "offline", "minutes": 5})
    Alert.objects.create(
        org=g.world.org_a, site=g.world.site_a1, device=g.device, rule=rule, severity="warning", title=f"Alert {n}"
    )


def _maintenance_window(g: Grower, n: int) -> None:
    start = timezone.now() + dt.timedelta(days=n)
    MaintenanceWindow.objects.create(
        org=g.world.org_a,
        site=g.world.site_a1,
        name=f"Window {n}",
        starts_at=start,
        ends_at=start + dt.timedelta(hours=1),
    )


def _notification(g: Grower, n: int) -> None:
    Notification.objects.create(channel=_email_channel(g, n), org=g.world.org_a, event="channel.test", payload={"n": n})


def _script(g: Grower, n: int) -> None:
    save_script(
        script=Script(org=g.world.org_a, name=f"Library {n}", language="bash", content=f"echo {n}\n"), actor=g.user
    )


def _script_version(g: Grower, n: int) -> None:
    assert g.script is not None
    g.script.content = f"echo version {n}\n"
    save_script(script=g.script, actor=g.user)


def _script_run(g: Grower, n: int) -> None:
    assert g.script is not None
    start_run(script=g.script, actor=g.user, trigger="api", device_ids=[g.device.pk])


def _run_result(g: Grower, n: int) -> None:
    # A device of its own (Windows: named in the answer) with a finished command of the run.
    assert g.run is not None
    _device(g, n, site=g.world.site_a1)
    DeviceCommand.objects.create(
        device=Device.objects.get(hostname=f"grown-{n}"),
        org_id=g.world.org_a.pk,
        type=DeviceCommand.Type.SCRIPT,
        script_run=g.run,
        status=DeviceCommand.Status.COMPLETED,
        result={"exitCode": n % 2, "stdout": str(n), "stderr": "", "durationMs": n, "error": None},
    )


def _script_schedule(g: Grower, n: int) -> None:
    assert g.script is not None
    ScriptSchedule.objects.create(org=g.world.org_a, script=g.script, name=f"Nightly {n}", cron=f"{n % 60} 3 * * *")


CASES = [
    Case("/api/v1/permissions", "partner_technician", _permission, queries=2),
    Case("/api/v1/roles", "partner_admin", _role, queries=8),
    Case("/api/v1/users", "partner_admin", _user, queries=7),
    Case("/api/v1/partner-users", "partner_admin", _partner_user, queries=8),
    Case("/api/v1/organization-users", "org_admin", _organization_user, queries=8),
    Case("/api/v1/api-tokens", "org_user", _api_token, queries=2),
    Case("/api/v1/audit-log", "viewer", _audit_row, queries=7),
    Case("/api/v1/devices/{device}/commands", "partner_technician", _command, queries=8),
    Case(
        "/api/v1/devices/{device}/disks",
        "org_user",
        _inventory(DeviceDisk, mount_point=lambda n: f"/mnt/{n}", device_name=lambda n: f"/dev/sd{n}"),
        queries=8,
    ),
    Case(
        "/api/v1/devices/{device}/network-interfaces",
        "org_user",
        _inventory(DeviceNetworkInterface, interface_name=lambda n: f"eth{n}", ip_address=lambda n: f"10.0.0.{n}"),
        queries=8,
    ),
    Case(
        "/api/v1/devices/{device}/software",
        "org_user",
        _inventory(DeviceSoftware, name=lambda n: f"Tool {n}", version=lambda n: f"1.{n}"),
        queries=8,
    ),
    Case(
        "/api/v1/devices/{device}/registry-entries",
        "org_user",
        _inventory(DeviceRegistryEntry, registry_path=lambda n: rf"HKLM\Software\Tool{n}", value_name=str),
        queries=8,
    ),
    Case(
        "/api/v1/devices/{device}/config-entries",
        "org_user",
        _inventory(DeviceConfigEntry, file_path=lambda n: f"/etc/tool{n}.conf", config_key=lambda n: "port"),
        queries=8,
    ),
    Case(
        "/api/v1/devices/{device}/connections",
        "org_user",
        _inventory(
            DeviceNetworkConnection, protocol=lambda n: "tcp", local_addr=lambda n: "192.0.2.10", local_port=int
        ),
        queries=8,
    ),
    Case("/api/v1/partners", "partner_admin", _partner, queries=7),
    Case("/api/v1/orgs", "partner_admin", _organization, queries=7),
    Case("/api/v1/sites", "org_admin", _site, queries=7),
    Case("/api/v1/enrollment-keys", "org_admin", _enrollment_key, queries=7),
    Case("/api/v1/devices", "partner_technician", _device, queries=7),
    Case("/api/v1/groups", "org_user", _group, queries=7),
    Case("/api/v1/groups/{group}/devices", "org_user", _group_member, queries=8),
    # Each grown member is added with a log row ("added", by the persona).
    Case("/api/v1/groups/{group}/membership-log", "org_user", _group_member, queries=8),
    Case("/api/v1/alert-rules", "org_admin", _alert_rule, queries=8),  # + the rules' channels, one query
    Case("/api/v1/alerts", "org_user", _alert, queries=7),
    Case("/api/v1/maintenance-windows", "org_user", _maintenance_window, queries=7),
    Case("/api/v1/notification-channels", "org_admin", _email_channel, queries=7),
    Case("/api/v1/notifications", "partner_technician", _notification, queries=7),
    Case("/api/v1/scripts", "org_admin", _script, queries=7),
    Case("/api/v1/scripts/{script}/versions", "org_user", _script_version, queries=8),
    Case("/api/v1/script-runs", "partner_technician", _script_run, queries=8),  # + the page's progress, one query
    # + the run's version (its success exit codes) and the skipped devices' names, one query each
    Case("/api/v1/script-runs/{run}/results", "org_admin", _run_result, queries=10),
    Case("/api/v1/script-schedules", "org_admin", _script_schedule, queries=7),
]


def listed(response) -> list[dict]:
    assert response.status_code == 200, response.content
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def make_grower(request, world: World, case: Case) -> Grower:
    """The grower of ``case`` for its persona, with the script and run the scripts lists need."""
    grower = Grower(
        world,
        request.getfixturevalue(case.persona),
        request.getfixturevalue("roles"),
        request.getfixturevalue("permissions"),
        world.devices[world.site_a1][0],
        world.groups["A1 servers"],
    )
    if "script" in case.path:
        grower.script = save_script(
            script=Script(org=world.org_a, name="Cleanup", language="bash", content="echo hi\n"), actor=None
        )
        grower.run = start_run(
            script=grower.script, actor=None, trigger="api", device_ids=[d.pk for d in world.devices[world.site_a1]]
        )
    return grower


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_list_runs_as_many_queries_for_many_rows_as_for_few(request, world, case, django_assert_max_num_queries):
    grower = make_grower(request, world, case)
    raw, _token = auth.issue_api_token(user=grower.user, name="query counts", lifetime=None)
    client = APIClient(headers={"Authorization": f"Bearer {raw}"})
    path = grower.path(case)
    for n in range(FEW):
        case.grow(grower, n)
    client.get(path)  # the token's first use stamps last_used_at (once a minute): keep that write out of the count

    with django_assert_max_num_queries(case.queries):
        few = listed(client.get(path))
    for n in range(FEW, FEW + MORE):
        case.grow(grower, n)
    with django_assert_max_num_queries(case.queries):
        many = listed(client.get(path))

    assert len(many) == len(few) + MORE


def test_every_list_route_has_a_query_count_case():
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    components = document["components"]["schemas"]

    def is_list(operation) -> bool:
        schema = operation["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
        while "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[1]]
        return schema.get("type") == "array" or "results" in schema.get("properties", {})

    lists = {
        path for path, operations in document["paths"].items() if "get" in operations and is_list(operations["get"])
    }
    assert lists == {
        case.path.replace("{device}", "{id}")
        .replace("{group}", "{id}")
        .replace("{script}", "{id}")
        .replace("{run}", "{id}")
        for case in CASES
    }
