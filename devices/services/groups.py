"""Device groups: dynamic rules evaluated into materialised membership and kept fresh, static membership,
pinning, previews, and commands to a whole group.

How a dynamic group stays current (filter-rules.md):

- **When the group is saved** (rule or site changed): ``refresh_group`` evaluates the rule from scratch and applies
  the difference in one statement.
- **When a device changes**: triggers (migration 0006) queue the device in ``device_group_refresh_queue`` with what
  changed, in the rule language's words (``osVersion``, ``tags``, ``siteId``, ``software``, ``hardware``, ``disks``,
  ``network``; ``*`` for a new device). ``process_refresh_queue`` (``manage.py refresh_groups``, every few seconds)
  takes a batch, and for each dynamic group of the devices' organizations whose ``fields_used`` the change can
  affect, re-evaluates the rule **for those devices only** (``id IN (...)``). A heartbeat that changes nothing but
  last_seen_* queues nothing; a group that does not use the changed facts is not evaluated at all.
- **Time-based conditions** (``lastSeenAt``, ``daysSinceLastSeen``, ``enrolledAt`` with ``withinLast``, and the
  ``metrics.*`` of the latest sample, which changes every minute on every device) become true or false with no
  write to queue: ``sweep_time_based_groups`` re-evaluates those groups every GROUP_TIME_SWEEP_SECONDS.
- **A safety net**: ``refresh_all_groups`` re-evaluates every dynamic group every GROUP_RECONCILE_SECONDS.

Every membership change, by a rule or a person, writes a row of ``device_group_membership_log``. Pinned members of
a dynamic group stay when they stop matching; manual adds to a dynamic group are refused.

A person's changes (``create_group``, ``update_group``, ``delete_group``, ``add_members`` … ``unpin_members``,
``queue_group_commands``) are the only writers of groups and their memberships for the API and the admin alike:
each checks its rules (``check_group``: a group is never its own ancestor, its site and parent are of its
organization, …), writes, and records one audit row named ``device_group.*`` (``accounts.models.AuditAction``).
Refusals are domain errors (``rmm.domain_errors``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices import rules
from devices.models import Device, DeviceGroup, DeviceGroupMembership, DeviceGroupMembershipLog
from devices.services.commands import check_command
from orgs.models import Organization, Site
from rmm import authz
from rmm.domain_errors import Conflict, DomainError, Invalid

logger = logging.getLogger("devices.groups")

MAX_GROUP_COMMANDS = 10_000
RULE_INVALID_MESSAGE = "The filter rule is not valid."
PREVIEW_SAMPLE_SIZE = 50
# pg_try_advisory_xact_lock key: one queue drainer at a time (two would evaluate the same devices twice).
_DRAIN_LOCK = 0x726D6D_67727073  # "rmm" "grps"

# What the refresh queue says changed, for each rule field (a field missing here is never queued: time-based).
_INVENTORY_SOURCES = {"hardware", "network", "disks", "software"}


class RuleTimedOut(Invalid):
    """A rule took longer than GROUP_RULE_TIMEOUT_MS to evaluate (400 ``rule_timeout``)."""

    def __init__(self) -> None:
        super().__init__(
            f"The rule took longer than {settings.GROUP_RULE_TIMEOUT_MS / 1000:g} s to evaluate; make it narrower "
            "(fewer 'contains' and 'matches' conditions over software, for example).",
            code="rule_timeout",
        )


class InvalidRule(Invalid):
    """A filter rule that breaks the grammar (filter-rules.md) or names a site of another organization: 400
    ``validation_error`` whose ``fields`` are the paths of the offending nodes, not request fields."""

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__(RULE_INVALID_MESSAGE, fields=fields)


@dataclass
class MembershipChanges:
    added: int = 0
    removed: int = 0


@dataclass
class RefreshReport:
    """What one pass of ``process_refresh_queue`` did."""

    queued_rows: int = 0
    devices: int = 0
    evaluations: int = 0
    added: int = 0
    removed: int = 0
    failed_groups: list[uuid.UUID] = field(default_factory=list)
    busy: bool = False  # another process was draining the queue

    def __str__(self) -> str:
        text = f"{self.devices} changed devices, {self.evaluations} group evaluations"
        text += f", {self.added} members added, {self.removed} removed"
        if self.failed_groups:
            text += f", {len(self.failed_groups)} groups failed"
        return text + (" (another process is draining the queue)" if self.busy else "")


# --- evaluation ------------------------------------------------------------------------------------------------


def matching_devices(*, org_id, site_id=None, rule: dict, now: dt.datetime | None = None) -> QuerySet[Device]:
    """The devices of one organization (and site) the rule matches: one query, parameters bound."""
    devices = Device.objects.filter(rules.compile_rule(rule, now=now or timezone.now()), org_id=org_id)
    if site_id is not None:
        devices = devices.filter(site_id=site_id)
    return devices


@contextlib.contextmanager
def statement_timeout(milliseconds: int | None = None) -> Iterator[None]:
    """Run the block in a savepoint whose statements may take at most ``milliseconds`` each; a statement that
    takes longer raises ``RuleTimedOut`` and the savepoint is rolled back (the outer transaction carries on)."""
    milliseconds = milliseconds or settings.GROUP_RULE_TIMEOUT_MS
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
                [f"{milliseconds}ms"],
            )
            previous = cursor.fetchone()[0]
        try:
            yield
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "57014":  # query_canceled: the timeout fired
                raise RuleTimedOut() from exc
            raise
        with connection.cursor() as cursor:
            # SET LOCAL outlives a released savepoint: put the caller's timeout back.
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


_APPLY = """
WITH matching AS MATERIALIZED ({matching}),
added AS (
    INSERT INTO device_group_memberships (id, device_id, group_id, org_id, is_pinned, added_by, added_at)
    SELECT rmm_uuid7(), m.id, %s, %s, false, 'dynamic_rule', %s FROM matching m
    ON CONFLICT (device_id, group_id) DO NOTHING
    RETURNING device_id
), removed AS (
    DELETE FROM device_group_memberships dm
     WHERE dm.group_id = %s AND NOT dm.is_pinned {only_candidates}
       -- NOT IN (a hashed subplan) rather than NOT EXISTS: right after a group's first evaluation the memberships
       -- table has no statistics yet, and the anti-join was then planned as a nested loop over the CTE, seconds per
       -- group at 14,000 devices (bench/RESULTS.md). matching.id is never NULL, so NOT IN means what it says.
       AND dm.device_id NOT IN (SELECT id FROM matching)
    RETURNING device_id
), logged AS (
    INSERT INTO device_group_membership_log (id, group_id, device_id, org_id, change, reason, at)
    SELECT rmm_uuid7(), %s, device_id, %s, 'added', 'rule', %s FROM added
    UNION ALL
    SELECT rmm_uuid7(), %s, device_id, %s, 'removed', 'rule', %s FROM removed
)
SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM removed)
"""


def _apply_rule(
    *, group_id, org_id, site_id, rule: Any, now: dt.datetime, device_ids: list | None = None
) -> MembershipChanges:
    """Make the group's rule members (of ``device_ids``, or of the whole organization) exactly the devices the
    rule matches, pinned members excepted: one statement, which also writes the membership log."""
    devices = matching_devices(org_id=org_id, site_id=site_id, rule=rule, now=now)
    if device_ids is not None:
        devices = devices.filter(id__in=device_ids)
    matching_sql, matching_params = devices.order_by().values("id").query.sql_with_params()
    only_candidates = "AND dm.device_id = ANY(%s)" if device_ids is not None else ""
    params = [
        *matching_params,
        group_id,
        org_id,
        now,
        group_id,
        *([list(device_ids)] if device_ids is not None else []),
        group_id,
        org_id,
        now,
        group_id,
        org_id,
        now,
    ]
    with statement_timeout(), connection.cursor() as cursor:
        cursor.execute(_APPLY.format(matching=matching_sql, only_candidates=only_candidates), params)
        added, removed = cursor.fetchone()
    return MembershipChanges(added=added, removed=removed)


def refresh_group(group: DeviceGroup, *, now: dt.datetime | None = None) -> MembershipChanges:
    """Re-evaluate a dynamic group from scratch (after its rule or site changed, or in a sweep); a static group
    is left as it is."""
    if group.type != DeviceGroup.Type.DYNAMIC:
        return MembershipChanges()
    return _apply_rule(
        group_id=group.pk,
        org_id=group.org_id,
        site_id=group.site_id,
        rule=group.filter_rules,
        now=now or timezone.now(),
    )


# What a saved group's membership depends on: its rule and its site (its name, parent or type do not matter).
_MEMBERSHIP_INPUTS = {"filter_rules", "site"}


def group_saved(group: DeviceGroup, *, changed: Iterable[str] | None = None) -> MembershipChanges:
    """After a group is created (``changed`` None) or changed (the names of the fields that changed): evaluate its
    rule when its membership can be different now. The API and the admin both call this."""
    if changed is not None and not _MEMBERSHIP_INPUTS & set(changed):
        return MembershipChanges()
    return refresh_group(group)


# --- a person's changes to a group itself -------------------------------------------------------------------------

INVALID_FIELDS_MESSAGE = "The request has invalid fields."
CYCLE_MESSAGE = "A group cannot sit under itself or one of its own subgroups."
# The fields a person sets on a group (the model's names; the API's are their camelCase with an Id suffix).
GROUP_FIELDS = ("org", "site", "name", "type", "parent", "filter_rules")


def is_own_ancestor(group: DeviceGroup, parent: DeviceGroup | None) -> bool:
    """Would ``parent`` as ``group``'s parent make ``group`` its own ancestor (A1 → A2 → A1)? Walks up from the
    parent through the stored chain (one query a level: nesting is shallow), which ends even if already broken."""
    if group.pk is None or parent is None:
        return False
    seen: set = set()
    node_id: uuid.UUID | None = parent.pk
    while node_id is not None and node_id not in seen:
        if node_id == group.pk:
            return True
        seen.add(node_id)
        node_id = DeviceGroup.objects.filter(pk=node_id).values_list("parent_id", flat=True).first()
    return False


def check_group(*, group: DeviceGroup | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The rules of a group as a person saves it: ``group`` as stored (None for a new one) with ``changes`` (by
    model field name) applied. Answers every field's value after the change, the organization taken from the site
    when only a site is given, the type ``static`` unless said, and ``fields_used`` of a new or changed rule.

    Raises ``Invalid`` (400, fields named as the API names them, as a form maps them back): a group does not change
    organization or type; its site and parent are of its organization; it is never its own ancestor; its name is
    unique in its organization; a dynamic group has a valid rule (``check_rule``) and a static group none. The API
    and the admin's form both call this, before ``create_group`` / ``update_group`` call it again.
    """
    unknown = set(changes) - set(GROUP_FIELDS)
    if unknown:
        raise ValueError(f"Not fields a person sets on a group: {sorted(unknown)}")
    problems: dict[str, list[str]] = {}
    org: Organization | None = changes.get("org", group.org if group else None)
    site: Site | None = changes.get("site", group.site if group else None)
    group_type = changes.get("type") or (group.type if group else DeviceGroup.Type.STATIC)
    if group is not None:
        if "org" in changes and changes["org"] is not None and changes["org"].pk != group.org_id:
            problems["orgId"] = ["A group cannot move to another organization."]
        if "type" in changes and changes["type"] and changes["type"] != group.type:
            problems["type"] = ["A group's type cannot change; create a new group instead."]
    if org is None and site is not None:
        org = site.org
    if org is None:
        problems["orgId"] = ["Give the group's organization (orgId) or its site (siteId)."]
    elif site is not None and site.org_id != org.pk:
        problems["siteId"] = ["This site belongs to another organization."]
    parent = changes.get("parent", group.parent if group else None)
    if parent is not None and org is not None:
        if parent.org_id != org.pk:
            problems["parentId"] = ["The parent group belongs to another organization."]
        elif group is not None and is_own_ancestor(group, parent):
            problems["parentId"] = [CYCLE_MESSAGE]
    name = changes.get("name")
    if name is not None and org is not None:
        same_name = DeviceGroup.objects.filter(org_id=org.pk, name=name)
        if group is not None:
            same_name = same_name.exclude(pk=group.pk)
        if same_name.exists():
            problems["name"] = ["This organization already has a group with this name."]
    rule = changes.get("filter_rules", group.filter_rules if group else None)
    if group_type == DeviceGroup.Type.DYNAMIC and rule is None:
        problems["filterRules"] = ["A dynamic group needs a rule."]
    if group_type == DeviceGroup.Type.STATIC and rule is not None:
        problems["filterRules"] = ["Only dynamic groups have a rule; a static group's members are added by hand."]
    if problems:
        raise Invalid(INVALID_FIELDS_MESSAGE, fields=problems)
    values: dict[str, Any] = {
        "org": org,
        "site": site,
        "name": name if name is not None else (group.name if group else ""),
        "type": group_type,
        "parent": parent,
        "filter_rules": rule,
    }
    if org is not None and group_type == DeviceGroup.Type.DYNAMIC and (group is None or "filter_rules" in changes):
        check_rule(rule, org_id=org.pk)
        values["fields_used"] = rules.fields_used(rule)
    return values


def create_group(
    *,
    actor,
    name: str,
    org: Organization | None = None,
    site: Site | None = None,
    type: str | None = None,  # the field's name in the API and the model
    parent: DeviceGroup | None = None,
    filter_rules: dict | None = None,
    ip: str | None = None,
) -> DeviceGroup:
    """Create a group (``check_group``'s rules), evaluate a dynamic group's rule at once, and write a
    ``device_group.create`` audit row. Answers the group as saved."""
    changes = {"org": org, "site": site, "name": name, "type": type, "parent": parent, "filter_rules": filter_rules}
    values = check_group(group=None, changes=changes)
    with transaction.atomic():
        group = DeviceGroup.objects.create(**values)
        group_saved(group)
        audit.record(action=AuditAction.DEVICE_GROUP_CREATE, actor_user=actor, target=group, ip=ip)
    return group


def update_group(*, group: DeviceGroup, changes: Mapping[str, Any], actor, ip: str | None = None) -> DeviceGroup:
    """Change a group's name, site, parent or rule (``changes`` by model field name; leave out what does not
    change) under ``check_group``'s rules, re-evaluate a dynamic group when its rule or site changed, and write a
    ``device_group.update`` audit row naming the fields given. Answers the group as saved."""
    with transaction.atomic():
        if "parent" in changes:
            # Two people re-parenting two groups at once (A1 under A2, A2 under A1) would each see no cycle: lock the
            # organization's groups so that the second waits, then walks the chain the first one committed.
            list(DeviceGroup.objects.select_for_update().filter(org_id=group.org_id).order_by("pk").values("pk"))
        locked = DeviceGroup.objects.select_for_update().get(pk=group.pk)
        values = check_group(group=locked, changes=changes)
        for name, value in values.items():
            setattr(locked, name, value)
        locked.save()
        group_saved(locked, changed=changes)
        audit.record(
            action=AuditAction.DEVICE_GROUP_UPDATE,
            actor_user=actor,
            target=locked,
            details={"changed": sorted(changes)},
            ip=ip,
        )
    return locked


def delete_group(*, group: DeviceGroup, actor, ip: str | None = None) -> None:
    """Delete a group and its memberships (no device is touched; its subgroups lose their parent), with a
    ``device_group.delete`` audit row."""
    with transaction.atomic():
        audit.record(
            action=AuditAction.DEVICE_GROUP_DELETE, actor_user=actor, target=group, details={"name": group.name}, ip=ip
        )
        group.delete()


def _change_keys(fields_used: Iterable[str], *, site_bound: bool) -> set[str]:
    """What, among the refresh queue's words, can change the outcome of a rule using ``fields_used``."""
    keys = set()
    for name in fields_used:
        source = name.split(".", 1)[0]
        keys.add(source if source in _INVENTORY_SOURCES else name)
    if site_bound:
        keys.add("siteId")  # a device leaving the group's site leaves the group
    return keys


_DRAIN = """
DELETE FROM device_group_refresh_queue
 WHERE id IN (SELECT id FROM device_group_refresh_queue ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING device_id, org_id, changed
"""


def process_refresh_queue(*, batch_size: int = 5000, now: dt.datetime | None = None) -> RefreshReport:
    """Drain the refresh queue: for each batch of changed devices, re-evaluate (for those devices only) the dynamic
    groups of their organizations whose rules use what changed. Each batch is one transaction with its queue rows,
    so a crash loses nothing; a group whose rule times out is logged and left to the next sweep."""
    report = RefreshReport()
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_DRAIN_LOCK])
            if not cursor.fetchone()[0]:
                report.busy = True
                return report
            cursor.execute(_DRAIN, [batch_size])
            rows = cursor.fetchall()
            if not rows:
                return report
            report.queued_rows += len(rows)
            changed: dict[uuid.UUID, dict[uuid.UUID, set[str]]] = defaultdict(lambda: defaultdict(set))
            for device_id, org_id, what in rows:
                changed[org_id][device_id].update(what)
            report.devices += sum(len(devices) for devices in changed.values())
            _refresh_changed(changed, now=now or timezone.now(), report=report)
        if len(rows) < batch_size:
            return report


def _refresh_changed(changed: dict, *, now: dt.datetime, report: RefreshReport) -> None:
    groups = DeviceGroup.objects.filter(type=DeviceGroup.Type.DYNAMIC, org_id__in=list(changed)).values_list(
        "id", "org_id", "site_id", "filter_rules", "fields_used"
    )
    for group_id, org_id, site_id, rule, fields_used in groups:
        keys = _change_keys(fields_used, site_bound=site_id is not None)
        device_ids = [device for device, what in changed[org_id].items() if "*" in what or what & keys]
        if not device_ids:
            continue
        try:
            result = _apply_rule(
                group_id=group_id, org_id=org_id, site_id=site_id, rule=rule, now=now, device_ids=device_ids
            )
        except RuleTimedOut:
            logger.warning("group %s: its rule timed out while refreshing %d devices", group_id, len(device_ids))
            report.failed_groups.append(group_id)
            continue
        report.evaluations += 1
        report.added += result.added
        report.removed += result.removed


def _refresh_groups(groups: QuerySet[DeviceGroup], *, now: dt.datetime | None) -> RefreshReport:
    report = RefreshReport()
    now = now or timezone.now()
    for group in groups.filter(type=DeviceGroup.Type.DYNAMIC).only("id", "org_id", "site_id", "type", "filter_rules"):
        try:
            with transaction.atomic():
                result = refresh_group(group, now=now)
        except RuleTimedOut:
            logger.warning("group %s: its rule timed out", group.pk)
            report.failed_groups.append(group.pk)
            continue
        report.evaluations += 1
        report.added += result.added
        report.removed += result.removed
    return report


def sweep_time_based_groups(*, now: dt.datetime | None = None) -> RefreshReport:
    """Re-evaluate the groups whose rules change truth with the clock or every heartbeat (no write queues them)."""
    return _refresh_groups(DeviceGroup.objects.filter(fields_used__overlap=sorted(rules.TIME_BASED_FIELDS)), now=now)


def refresh_all_groups(*, now: dt.datetime | None = None) -> RefreshReport:
    """Re-evaluate every dynamic group from scratch: the safety net behind the queue and the sweep."""
    return _refresh_groups(DeviceGroup.objects.all(), now=now)


def check_rule(rule, *, org_id) -> None:
    """Validate a filter rule for an organization: ``Invalid`` (400 ``validation_error``) whose ``fields`` are the
    paths of the offending nodes (``conditions[1].conditions[0].operator``); a siteId value must be a site of the
    organization."""
    try:
        rules.validate_rule(rule)
    except rules.RuleError as exc:
        raise InvalidRule({path or "filterRules": messages for path, messages in exc.errors.items()}) from None
    site_values = dict(_site_conditions(rule))
    if site_values:
        known = {str(pk) for pk in Site.objects.filter(org_id=org_id).values_list("id", flat=True)}
        foreign = {
            path: [f"Not a site of this organization: {', '.join(sorted(set(values) - known))}."]
            for path, values in site_values.items()
            if set(values) - known
        }
        if foreign:
            raise InvalidRule(foreign)


def _site_conditions(node, path: str = ""):
    """(path of the value, [site ids]) of every siteId condition of a valid rule."""
    if "conditions" in node:
        for index, child in enumerate(node["conditions"]):
            yield from _site_conditions(child, f"{path}.conditions[{index}]" if path else f"conditions[{index}]")
    elif node.get("field") == "siteId":
        value = node.get("value")
        values = value if isinstance(value, list) else [value]
        yield (f"{path}.value" if path else "value"), [str(v).lower() for v in values]


# --- previews ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[Device]


def check_preview(*, org: Organization, site: Site | None, rule) -> None:
    """The rules of a preview's input: the site (if any) is of the organization, and the rule is valid for it."""
    if site is not None and site.org_id != org.pk:
        raise Invalid(INVALID_FIELDS_MESSAGE, fields={"siteId": ["This site belongs to another organization."]})
    check_rule(rule, org_id=org.pk)


def preview(*, user, org_id, site_id=None, rule: dict) -> Preview:
    """How many devices the caller may see does the rule match, and the first PREVIEW_SAMPLE_SIZE by hostname."""
    devices = authz.visible(user, "devices:read", matching_devices(org_id=org_id, site_id=site_id, rule=rule))
    with statement_timeout():
        count = devices.count()
        sample = list(devices.select_related("site").order_by("hostname", "id")[:PREVIEW_SAMPLE_SIZE])
    return Preview(count=count, sample=sample)


# --- people's changes to membership -----------------------------------------------------------------------------


def _refuse(
    message: str, *, code: str = "validation_error", field: str = "deviceIds", error: type[DomainError] = Invalid
) -> NoReturn:
    raise error(message, code=code, fields={field: [message]} if field else None)


def _audit_members(action: AuditAction, group: DeviceGroup, device_ids: list, actor, ip: str | None) -> None:
    if device_ids:
        audit.record(
            action=action, actor_user=actor, target=group, ip=ip, details={"deviceIds": [str(pk) for pk in device_ids]}
        )


def _log(group: DeviceGroup, device_ids: Iterable, change: str, actor) -> None:
    now = timezone.now()
    DeviceGroupMembershipLog.objects.bulk_create(
        DeviceGroupMembershipLog(
            group_id=group.pk,
            device_id=device_id,
            org_id=group.org_id,
            change=change,
            reason=DeviceGroupMembershipLog.Reason.MANUAL,
            actor_user=actor if getattr(actor, "pk", None) else None,
            at=now,
        )
        for device_id in device_ids
    )


def add_members(*, group: DeviceGroup, devices: list[Device], actor, ip: str | None = None) -> list[uuid.UUID]:
    """Add devices to a static group; answers the ids actually added (members already in are skipped). Writes a
    ``device_group.members_add`` audit row when any was added.

    Every device must belong to the group's organization (and site, for a site-bound group); a dynamic group's
    members come from its rule, so adding to one is refused.
    """
    if group.type == DeviceGroup.Type.DYNAMIC:
        _refuse(
            "A dynamic group's members come from its rule: change the rule, or pin a member to keep it.",
            code="dynamic_group",
            error=Conflict,
        )
    outside = [str(d.pk) for d in devices if d.org_id != group.org_id or (group.site_id and d.site_id != group.site_id)]
    if outside:
        where = "site" if group.site_id else "organization"
        _refuse(f"Not in the group's {where}: {', '.join(outside)}.")
    with transaction.atomic():
        existing = set(
            DeviceGroupMembership.objects.filter(group_id=group.pk, device_id__in=[d.pk for d in devices]).values_list(
                "device_id", flat=True
            )
        )
        new = [d for d in dict.fromkeys(devices) if d.pk not in existing]
        now = timezone.now()
        DeviceGroupMembership.objects.bulk_create(
            [
                DeviceGroupMembership(
                    device_id=d.pk,
                    group_id=group.pk,
                    org_id=group.org_id,
                    added_by=DeviceGroupMembership.AddedBy.MANUAL,
                    added_at=now,
                )
                for d in new
            ],
            ignore_conflicts=True,
        )
        _log(group, [d.pk for d in new], DeviceGroupMembershipLog.Change.ADDED, actor)
        _audit_members(AuditAction.DEVICE_GROUP_MEMBERS_ADD, group, [d.pk for d in new], actor, ip)
    return [d.pk for d in new]


def remove_members(*, group: DeviceGroup, device_ids: list[uuid.UUID], actor, ip: str | None = None) -> list[uuid.UUID]:
    """Remove devices from a static group; answers the ids removed (``device_group.members_remove``)."""
    if group.type == DeviceGroup.Type.DYNAMIC:
        _refuse(
            "A dynamic group's members come from its rule: change the rule, or unpin a pinned member.",
            code="dynamic_group",
            error=Conflict,
        )
    with transaction.atomic():
        memberships = DeviceGroupMembership.objects.filter(group_id=group.pk, device_id__in=device_ids)
        removed = list(memberships.values_list("device_id", flat=True))
        memberships.delete()
        _log(group, removed, DeviceGroupMembershipLog.Change.REMOVED, actor)
        _audit_members(AuditAction.DEVICE_GROUP_MEMBERS_REMOVE, group, removed, actor, ip)
    return removed


def pin_members(*, group: DeviceGroup, device_ids: list[uuid.UUID], actor, ip: str | None = None) -> list[uuid.UUID]:
    """Pin members of a dynamic group: they stay in it when they stop matching. Answers the ids newly pinned
    (``device_group.members_pin``)."""
    _require_dynamic(group)
    with transaction.atomic():
        memberships = DeviceGroupMembership.objects.select_for_update().filter(
            group_id=group.pk, device_id__in=device_ids
        )
        found = {m.device_id: m for m in memberships}
        missing = [str(device_id) for device_id in device_ids if device_id not in found]
        if missing:
            _refuse(f"Not members of this group (only members can be pinned): {', '.join(missing)}.")
        pinned = [device_id for device_id, m in found.items() if not m.is_pinned]
        DeviceGroupMembership.objects.filter(group_id=group.pk, device_id__in=pinned).update(is_pinned=True)
        _log(group, pinned, DeviceGroupMembershipLog.Change.PINNED, actor)
        _audit_members(AuditAction.DEVICE_GROUP_MEMBERS_PIN, group, pinned, actor, ip)
    return pinned


def unpin_members(*, group: DeviceGroup, device_ids: list[uuid.UUID], actor, ip: str | None = None) -> list[uuid.UUID]:
    """Unpin members of a dynamic group; those the rule no longer matches leave it at once. Answers the ids
    unpinned (``device_group.members_unpin``)."""
    _require_dynamic(group)
    with transaction.atomic():
        memberships = DeviceGroupMembership.objects.filter(group_id=group.pk, device_id__in=device_ids, is_pinned=True)
        unpinned = list(memberships.values_list("device_id", flat=True))
        memberships.update(is_pinned=False)
        _log(group, unpinned, DeviceGroupMembershipLog.Change.UNPINNED, actor)
        _audit_members(AuditAction.DEVICE_GROUP_MEMBERS_UNPIN, group, unpinned, actor, ip)
        if unpinned:
            _apply_rule(
                group_id=group.pk,
                org_id=group.org_id,
                site_id=group.site_id,
                rule=group.filter_rules,
                now=timezone.now(),
                device_ids=unpinned,
            )
    return unpinned


def _require_dynamic(group: DeviceGroup) -> None:
    if group.type != DeviceGroup.Type.DYNAMIC:
        _refuse(
            "Only members of a dynamic group are pinned; a static group's members stay until removed.",
            code="static_group",
            error=Conflict,
        )


# --- commands to a group ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupCommands:
    commands: list[tuple[uuid.UUID, uuid.UUID]]  # (command id, device id)
    skipped: int  # members the caller may not run commands on, or decommissioned


_QUEUE_MANY = """
INSERT INTO device_commands (id, device_id, org_id, type, payload, status, created_by_id, created_at, updated_at,
                             expires_at)
SELECT rmm_uuid7(), d.id, d.org_id, %s, %s::jsonb, 'pending', %s, %s, %s, %s
  FROM devices d
 WHERE d.id = ANY(%s)
RETURNING id, device_id
"""


def queue_group_commands(
    *, group: DeviceGroup, user, type: str, payload: dict | None, expires_in_seconds: int | None, ip: str | None
) -> GroupCommands:
    """Queue one command for every member the caller may run commands on (``devices:execute`` in reach, not
    decommissioned), all in one transaction, at most MAX_GROUP_COMMANDS; writes one ``device_group.commands``
    audit row (not one ``command.queue`` per device: a group may have 10,000)."""
    payload = {} if payload is None else payload
    expires_in_seconds = check_command(type=type, payload=payload, expires_in_seconds=expires_in_seconds)
    with transaction.atomic():
        members = Device.objects.filter(group_memberships__group_id=group.pk, org_id=group.org_id)
        targets = authz.visible(user, "devices:execute", members).exclude(status=Device.Status.DECOMMISSIONED)
        device_ids = list(targets.order_by().values_list("id", flat=True)[: MAX_GROUP_COMMANDS + 1])
        if len(device_ids) > MAX_GROUP_COMMANDS:
            raise Invalid(
                f"A command goes to at most {MAX_GROUP_COMMANDS:,} devices at once; this group has more.",
                code="too_many_devices",
            )
        if not device_ids:
            raise Conflict("The group has no member you may run commands on.", code="no_devices")
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                _QUEUE_MANY,
                [
                    type,
                    json.dumps(payload),
                    user.pk if getattr(user, "pk", None) else None,
                    now,
                    now,
                    now + dt.timedelta(seconds=expires_in_seconds),
                    device_ids,
                ],
            )
            commands = cursor.fetchall()
        skipped = members.count() - len(commands)
        audit.record(
            action=AuditAction.DEVICE_GROUP_COMMANDS,
            actor_user=user,
            target=group,
            ip=ip,
            details={"type": type, "queued": len(commands), "skipped": skipped},
        )
    return GroupCommands(commands=commands, skipped=skipped)


class GroupRefresher:
    """What a periodic process runs: the queue every time, the time sweep and the full reconcile when due."""

    def __init__(self) -> None:
        self._swept_at: float | None = None
        self._reconciled_at: float | None = None

    def run(self) -> str:
        report = [f"groups: {process_refresh_queue()}"]
        now = time.monotonic()
        if self._reconciled_at is None or now - self._reconciled_at >= settings.GROUP_RECONCILE_SECONDS:
            report.append(f"all groups: {refresh_all_groups()}")
            self._reconciled_at = self._swept_at = now
        elif self._swept_at is None or now - self._swept_at >= settings.GROUP_TIME_SWEEP_SECONDS:
            report.append(f"time-based groups: {sweep_time_based_groups()}")
            self._swept_at = now
        return "; ".join(report)
