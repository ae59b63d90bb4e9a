"""Every operation of the technician API's OpenAPI document (/api/schema/; the agent protocol aside, see ``schema``),
fuzzed with schemathesis as a partner technician and as a partner admin, each with a real API token (issue 10: an
outside run of ~14,700 such requests found 500s that hand-written tests had missed).

Each operation is one test per persona. Schemathesis draws requests from the document, valid ones and (its negative
mode) ones that break it, in three phases: the document's examples, a deterministic coverage phase (boundaries,
missing and wrongly typed values) and a fuzzing phase of ``SCHEMATHESIS_MAX_EXAMPLES`` random requests. They go
through the WSGI application itself, inside the test's transaction. Three in four of the ids they carry (in the
path, the query and the body) are replaced by real ids of partner A's tenant of the world (tests/conftest.py), so
the fuzz reaches the code behind the 404 and behind "no such organization" too.

Every request runs in a savepoint rolled back after it: a case that deletes the persona's own token, user or
organization, or that revokes its token through logout, cannot make the cases after it meaningless, and every case
starts from the same world.

What every answer must satisfy:

- never a 5xx (the failure names the exception and the innermost frame of this project that raised it);
- an error answer under /api/ is JSON with the three keys of the one error shape ``{"error", "message", "fields"}``;
- status code, content type, headers and body as the document says (schemathesis' conformance checks).

Bounded and reproducible: a fixed seed and no example database, so CI sends the same requests every run. About
1.5 minutes of CPU for the 2 x 92 operations with the default of 10 examples. To hunt longer or elsewhere:
``SCHEMATHESIS_MAX_EXAMPLES=200 SCHEMATHESIS_SEED=7 pytest tests/test_schemathesis.py -k 'GET and devices'``;
``SCHEMATHESIS_PHASES=fuzzing`` runs one phase only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import sys
import traceback
from pathlib import Path

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation

from accounts.auth import issue_api_token
from accounts.models import ApiToken, AuditLog, OrganizationUser, PartnerUser, Permission, Role, User
from alerts.models import Alert, AlertRule, MaintenanceWindow, Notification, NotificationChannel
from devices.models import Device, DeviceCommand, DeviceGroup, DeviceGroupMembership
from orgs.models import EnrollmentKey, Organization, Partner, Site
from rmm.wsgi import application
from scripts.models import Script, ScriptRun, ScriptSchedule
from scripts.services.library import save_script
from scripts.services.runs import start_run

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
SEED = int(os.environ.get("SCHEMATHESIS_SEED", "10"))
PHASES = os.environ.get("SCHEMATHESIS_PHASES", "examples,coverage,fuzzing").split(",")
PERSONAS = ["partner_technician", "partner_admin"]
PROJECT_ROOT = Path(__file__).resolve().parent.parent

config = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            # No example database: a run replays nothing an earlier run stored, so every run sends the same requests.
            "database": "none",
            "mode": "all",
            # Every request carries the persona's real token; schemathesis' own random credentials would only ever
            # reach the 401, which test_permission_matrix.py asserts route by route.
            "with-security-parameters": False,
        },
        "checks": {
            # These two judge requests, not answers. The filters read an empty or blank value (?orgId=, ?orgId=%1E)
            # as no filter, as django-filter does, where the document's `format` calls the value invalid; and a
            # request the document allows may rightly get 400 for what a schema cannot say (a cursor this API did
            # not give out, an orgId of no organization in reach).
            "negative_data_rejection": {"enabled": False},
            "positive_data_acceptance": {"enabled": False},
            # Sends every 2xx request again without and with wrong credentials: three more requests per case for
            # what test_permission_matrix.py already asserts, and wrong tokens count against the address's limit.
            "ignored_auth": {"enabled": False},
            # Replaced by no_server_error_with_its_cause below, which also says where the crash happened.
            "not_a_server_error": {"enabled": False},
        },
        "phases": {phase: {"enabled": phase in PHASES} for phase in ("examples", "coverage", "fuzzing")},
    }
)
# The agent protocol (tag "agent") is left out: as a technician every agent operation but enrollment only reaches
# its 401, and its 26 tests added ~40 % to this file's CPU time. Agent bodies have their own tests of malformed input
# (tests/agent/test_malformed_agent_input.py, test_bad_bodies.py) and of answers against the document
# (tests/agent/test_answers_match_the_document.py).
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=config).exclude(tag="agent")


# --- checks ---------------------------------------------------------------------------------------------------------


class CrashRecorder:
    """The exception of the last request that crashed, from Django's ``got_request_exception``."""

    def __init__(self):
        self.exc_info = None

    def __call__(self, sender, request=None, **kwargs):
        self.exc_info = sys.exc_info()

    def describe(self) -> str:
        if self.exc_info is None:
            return "no exception (the 5xx was answered on purpose)"
        exc_type, exc, tb = self.exc_info
        frames = [
            frame
            for frame in traceback.extract_tb(tb)
            if frame.filename.startswith(str(PROJECT_ROOT)) and "/.venv/" not in frame.filename
        ]
        if not frames:
            return f"{exc_type.__name__}: {exc}"
        innermost = frames[-1]
        where = f"{Path(innermost.filename).relative_to(PROJECT_ROOT)}:{innermost.lineno} in {innermost.name}"
        return f"{exc_type.__name__} in {where}: {exc}"


crashes = CrashRecorder()


@schemathesis.check
def no_server_error_with_its_cause(ctx, response, case):
    """schemathesis' ``not_a_server_error``, saying which exception and which frame of ours."""
    if response.status_code >= 500:
        raise AssertionError(f"{response.status_code} answer: {crashes.describe()}")
    return None


@schemathesis.check
def errors_have_the_one_shape(ctx, response, case):
    """An error answer under /api/ is a JSON object with error, message and fields (an object)."""
    if response.status_code < 400 or not case.formatted_path.startswith("/api/"):
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"the error answer is {content_type!r}, not JSON"
    try:
        body = response.json()
    except ValueError as exc:
        raise AssertionError(f"the error answer is not JSON: {response.text[:200]!r}") from exc
    assert isinstance(body, dict), f"the error answer is not an object: {body!r}"
    missing = {"error", "message", "fields"} - set(body)
    assert not missing, f"the error answer lacks {sorted(missing)}: {body!r}"
    assert isinstance(body["fields"], dict), f"the error answer's fields is not an object: {body!r}"
    return None


# --- real ids in the path -------------------------------------------------------------------------------------------

# The first segment of a path that takes an id → the model whose id it takes.
COLLECTIONS = {
    "alert-rules": AlertRule,
    "alerts": Alert,
    "api-tokens": ApiToken,
    "audit-log": AuditLog,
    "commands": DeviceCommand,
    "devices": Device,
    "enrollment-keys": EnrollmentKey,
    "groups": DeviceGroup,
    "maintenance-windows": MaintenanceWindow,
    "notification-channels": NotificationChannel,
    "notifications": Notification,
    "organization-users": OrganizationUser,
    "orgs": Organization,
    "partner-users": PartnerUser,
    "partners": Partner,
    "permissions": Permission,
    "roles": Role,
    "script-runs": ScriptRun,
    "script-schedules": ScriptSchedule,
    "scripts": Script,
    "sites": Site,
    "users": User,
}
_COLLECTION = re.compile(r"^/api/v1/([^/]+)/\{id\}")


def _in_tenant(model, partner: Partner):
    """The model's rows in ``partner``'s tenant (rows of no tenant, e.g. permissions and users, all): another
    tenant's rows would only reach the 404 that random ids reach already and test_permission_matrix.py asserts."""
    rows = model.objects.all()
    if model is Partner:
        return rows.filter(pk=partner.pk)
    if model is Organization:
        return rows.filter(partner=partner)
    if any(field.name == "org" for field in model._meta.get_fields()):
        return rows.filter(org__partner=partner)
    return rows


def _stable_key(row) -> tuple[str, ...]:
    """What a row is, not its id: UUIDv7 ids made in the same millisecond sort differently from run to run."""
    return (str(row), *(str(getattr(row, name)) for name in ("org", "device", "user") if hasattr(row, name)))


# A query parameter or body field that names objects → the collection of ids it takes (a list field takes a list).
REFERENCES = {
    "actor": "users",
    "actorDevice": "devices",
    "alertId": "alerts",
    "channelId": "notification-channels",
    "channels": "notification-channels",
    "deviceGroupId": "groups",
    "deviceId": "devices",
    "deviceIds": "devices",
    "groupId": "groups",
    "orgId": "orgs",
    "organizationIds": "orgs",
    "parentId": "groups",
    "partnerId": "partners",
    "roleId": "roles",
    "ruleId": "alert-rules",
    "scheduleId": "script-schedules",
    "scriptId": "scripts",
    "siteId": "sites",
    "siteIds": "sites",
    "userId": "users",
}


def with_real_ids(case, ids: dict[str, list[str]]) -> None:
    """Put real ids into three in four of the path ids, query parameters and body fields that name objects: a random
    UUID reaches only the 404 or the 400 of an unknown reference, a real one the code behind them.

    Each choice is made by a hash of the request schemathesis drew, so it is as reproducible as the draw and works
    in every phase (a hypothesis draw of our own would need ``@schema.given``, which turns the coverage phase off).
    What schemathesis broke on purpose (negative mode) stays broken: a path it made invalid, and any query or body
    value that is not a UUID (or a list of them)."""
    drawn = repr((case.path_parameters, case.query, case.body))

    def pick(name: str, pool: list[str], many: bool):
        digest = hashlib.sha256(f"{name}:{drawn}".encode()).digest()
        if not pool or digest[0] % 4 == 0:
            return None
        chosen = pool[digest[1] % len(pool)]
        return [chosen, pool[digest[2] % len(pool)]][: 1 + digest[3] % 2] if many else chosen

    match = _COLLECTION.match(case.path)
    path = case.meta.components.get(ParameterLocation.PATH) if case.meta else None
    chosen = pick("id", ids.get(match.group(1), []), many=False) if match else None
    if chosen and (path is None or path.mode.is_positive):
        case.path_parameters["id"] = chosen
    for values in (case.query, case.body):
        if not isinstance(values, dict):
            continue
        for name in values.keys() & REFERENCES.keys():
            value = values[name]
            many = isinstance(value, list)
            if (value and all(map(_is_uuid, value))) if many else _is_uuid(value):
                values[name] = pick(name, ids[REFERENCES[name]], many) or value


def _is_uuid(value) -> bool:
    return isinstance(value, str) and _UUID.fullmatch(value) is not None


_UUID = re.compile(r"[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}")


# --- the test -------------------------------------------------------------------------------------------------------


@pytest.fixture
def wsgi_in_the_test_transaction():
    """Django closes the database connection when a request finishes; here the requests share the test's
    transaction, as Django's own test client arranges it. Crashes are recorded for the failure message."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    signals.got_request_exception.connect(crashes)
    try:
        yield
    finally:
        signals.got_request_exception.disconnect(crashes)
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture(params=PERSONAS)
def token(request, world) -> str:
    """A real API token of the persona, minted by the project's own token code."""
    raw, _ = issue_api_token(user=request.getfixturevalue(request.param), name="schemathesis", lifetime=None)
    return raw


@pytest.fixture
def ids(world, token) -> dict[str, list[str]]:
    """Partner A's ids by collection, once the world has what the fuzz should reach: groups with more members than
    one page of ``limit=1`` and a command for every device."""
    for group in world.groups.values():
        members = world.devices_in(group.site) if group.site else world.devices_in(world.site_a1, world.site_a2)
        DeviceGroupMembership.objects.bulk_create(
            DeviceGroupMembership(group=group, device=device, org=group.org) for device in members
        )
    DeviceCommand.objects.bulk_create(
        DeviceCommand(device=device, org=device.org, type=DeviceCommand.Type.REBOOT) for device in world.all_devices
    )
    _alerting(world)
    _scripting(world)
    return {
        name: [str(row.pk) for row in sorted(_in_tenant(model, world.partner_a), key=_stable_key)]
        for name, model in COLLECTIONS.items()
    }


def _alerting(world) -> None:
    """Partner A's alerting rows: a rule with an e-mail channel (an e-mail test send goes to Django's test outbox,
    never to the network), an open alert of every device of org A with its outbox row, and a weekly window."""
    channel = NotificationChannel.objects.create(
        org=world.org_a, name="Ops", kind="email", config={"to": ["ops@a.example"]}
    )
    rule = AlertRule.objects.create(org=world.org_a, name="Offline", condition={"kind": "offline", "minutes": 15})
    rule.channels.set([channel])
    for device in world.devices_in(world.site_a1, world.site_a2):
        alert = Alert.objects.create(
            org=world.org_a, site_id=device.site_id, device=device, rule=rule, severity="warning", title="offline"
        )
        Notification.objects.create(channel=channel, org=world.org_a, alert=alert, event="alert.opened", payload={})
    MaintenanceWindow.objects.create(
        org=world.org_a,
        site=world.site_a1,
        name="Patch night",
        starts_at=dt.datetime(2030, 1, 6, 1, 30, tzinfo=dt.UTC),
        ends_at=dt.datetime(2030, 1, 6, 3, 30, tzinfo=dt.UTC),
        recurrence="weekly",
        weekdays=[6],
        timezone="Europe/Berlin",
    )


def _scripting(world) -> None:
    """Partner A's scripts rows: a script of org A with an int parameter (version 2 after an edit), one of the
    partner's library, a run on site A1's devices (one skipped: quarantined) with a finished command, a schedule."""
    days = [{"name": "days", "type": "int", "required": False, "default": 7}]
    script = save_script(
        script=Script(org=world.org_a, name="Cleanup", language="python", content="print(1)\n", parameters=days),
        actor=None,
    )
    script.content = "print(2)\n"
    save_script(script=script, actor=None)
    save_script(script=Script(partner=world.partner_a, name="Inventory", language="bash", content="ls\n"), actor=None)
    a1, a2 = world.devices[world.site_a1]
    Device.objects.filter(pk=a2.pk).update(status=Device.Status.QUARANTINED)
    run = start_run(script=script, actor=None, trigger="api", device_ids=[a1.pk, a2.pk])
    DeviceCommand.objects.filter(script_run_id=run.pk).update(
        status="completed", result={"exitCode": 0, "stdout": "ok", "stderr": "", "durationMs": 5, "error": None}
    )
    Device.objects.filter(pk=a2.pk).update(status=a2.status)
    ScriptSchedule.objects.create(org=world.org_a, script=script, site=world.site_a1, cron="0 3 * * *", name="Nightly")


@schema.parametrize()
# The fixtures are built once per operation and persona, not once per request, on purpose: every request runs in its
# own savepoint. Speed health checks would fail a run on a loaded CI machine whose answers were all right.
@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    deadline=None,
)
def test_every_operation_answers_without_a_server_error_and_as_documented(
    case, token, ids, wsgi_in_the_test_transaction
):
    with_real_ids(case, ids)
    crashes.exc_info = None
    savepoint = transaction.savepoint()
    try:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {token}"},
            additional_checks=[no_server_error_with_its_cause, errors_have_the_one_shape],
        )
    finally:
        transaction.savepoint_rollback(savepoint)
