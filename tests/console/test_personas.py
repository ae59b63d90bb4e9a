"""The console offers a person exactly what the API lets them do (issue 16, point 6).

For every persona, each action the console can offer is paired with the API call that does the same thing. The API
call is made for real (in a savepoint that is rolled back, so every call meets the same world) and its status says
whether the API allows it: 2xx allowed, 401/403/404 refused, 400/409 "allowed, but not in this state or with this
body". The console's offer is read off the rendered pages:

- the device page, the alert page and the group page: the elements carrying ``data-console-action``;
- the device, alert and command lists: the values of the action menu, and the command list's "add" link.

A page's offer must match the API on that object: offered when the API answers 2xx, not offered when it refuses.
(400/409 answers leave the page free: the page may hide "approve" on a device that is not quarantined.) A list's
action is offered exactly when the API allows it on at least one object of the world.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from alerts.models import Alert
from devices.models import Device, DeviceCommand
from devices.services import status as device_status
from scripts.models import Script, ScriptVersion
from tests import factories
from tests.conftest import build_persona
from tests.doors import admin_as, admin_url, api_as

pytestmark = pytest.mark.django_db

PERSONAS = ["superuser", "partner_admin", "partner_technician", "viewer", "org_admin", "org_user", "outsider"]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


# What each console action does through the API; {device}, {script}, {group}, {alert}, {command} are filled in.
DEVICE_CALLS = {
    "run_command": Call("post", "/api/v1/devices/{device}/commands", {"type": "reboot", "payload": {}}),
    "reboot": Call("post", "/api/v1/devices/{device}/commands", {"type": "reboot", "payload": {}}),
    "run_script": Call("post", "/api/v1/scripts/{script}/run", {"deviceIds": ["{device}"], "parameters": {}}),
    "quarantine": Call("post", "/api/v1/devices/{device}/quarantine", {"reason": "suspicious"}),
    "approve": Call("post", "/api/v1/devices/{device}/approve"),
    "start_maintenance": Call("patch", "/api/v1/devices/{device}", {"status": "maintenance"}),
    "end_maintenance": Call("patch", "/api/v1/devices/{device}", {"status": "online"}),
    "request_token_rotation": Call("post", "/api/v1/devices/{device}/rotate-token"),
    "decommission": Call("delete", "/api/v1/devices/{device}"),
    "add_tag": Call("patch", "/api/v1/devices/{device}", {"tags": ["console-test"]}),
    "remove_tag": Call("patch", "/api/v1/devices/{device}", {"tags": []}),
    "add_to_group": Call("post", "/api/v1/groups/{group}/devices", {"deviceIds": ["{device}"]}),
}
# The device list's action menu: every device action but reboot (a command type of run_command there).
LIST_ACTIONS = sorted(set(DEVICE_CALLS) - {"reboot"})
# The device page's buttons: the list's actions that act on one device and reboot; tags and groups are edited on
# the page's form and the group pages.
PAGE_ACTIONS = sorted(set(DEVICE_CALLS) - {"add_tag", "remove_tag", "add_to_group"})
COMMAND_CALLS = {
    "cancel_command": Call("post", "/api/v1/commands/{command}/cancel"),
    # Re-running queues the same command again: what POST devices/{id}/commands does.
    "rerun_command": Call("post", "/api/v1/devices/{device}/commands", {"type": "reboot", "payload": {}}),
}
ALERT_CALLS = {
    "acknowledge": Call("post", "/api/v1/alerts/{alert}/acknowledge", {}),
    "resolve": Call("post", "/api/v1/alerts/{alert}/resolve", {}),
}
GROUP_CALLS = {
    "run_on_group": Call("post", "/api/v1/groups/{group}/commands", {"type": "reboot", "payload": {}}),
}

ALLOWED, REFUSED, EITHER = "allowed", "refused", "either"


def verdict(status: int) -> str:
    if 200 <= status < 300:
        return ALLOWED
    if status in (401, 403, 404):
        return REFUSED
    assert status in (400, 409), f"the API answered {status}"
    return EITHER


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, list):
        return [fill(item, names) for item in value]
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    return value


def api_verdict(user, call: Call, **names: Any) -> str:
    """What the API answers ``user`` for ``call``, in a savepoint rolled back afterwards."""
    texts = {key: str(value) for key, value in names.items()}
    with transaction.atomic():
        response = getattr(api_as(user), call.method)(fill(call.path, texts), fill(call.body, texts), format="json")
        transaction.set_rollback(True)
    return verdict(response.status_code)


ACTION_ATTRIBUTE = re.compile(r'data-console-action="([a-z_]+)"')
OPTION = re.compile(r'<option value="([a-z_]+)"')


def page_offers(client, url: str) -> set[str]:
    response = client.get(url)
    if response.status_code != 200:
        return set()
    return set(ACTION_ATTRIBUTE.findall(response.content.decode()))


def list_offers(client, url: str) -> set[str]:
    response = client.get(url)
    if response.status_code != 200:
        return set()
    page = response.content.decode()
    menu = re.search(r'<select name="action".*?</select>', page, re.S)
    return set(OPTION.findall(menu.group(0))) if menu else set()


def mismatches(offered: set[str], verdicts: dict[str, str]) -> dict[str, str]:
    """Actions the page gets wrong: offered but refused by the API, or allowed by the API but not offered."""
    wrong = {}
    for action, said in verdicts.items():
        if said == ALLOWED and action not in offered:
            wrong[action] = "the API allows it, the console does not offer it"
        elif said == REFUSED and action in offered:
            wrong[action] = "the console offers it, the API refuses it"
    return wrong


# The state a device must be in for a page's action to apply (the page need not offer "approve" on a device that
# is not quarantined, though the API answers 2xx to some such no-ops); every other action applies to an online one.
APPLIES_TO = {"approve": "quarantined", "end_maintenance": "maintenance"}


def _script(**owner) -> Script:
    script = Script.objects.create(
        **owner, name="Disk cleanup", language="bash", os_types=["linux", "windows", "macos"], content="true\n"
    )
    ScriptVersion.objects.create(
        script=script, version=1, content=script.content, language=script.language, timeout_seconds=300
    )
    return script


def _alert(device: Device) -> Alert:
    return Alert.objects.create(
        org_id=device.org_id,
        site_id=device.site_id,
        device=device,
        severity="warning",
        status=Alert.Status.OPEN,
        title=f"Offline on {device.hostname}",
    )


def _command(device: Device) -> DeviceCommand:
    return DeviceCommand.objects.create(device=device, org=device.org, type="reboot", created_at=timezone.now())


@dataclass
class Target:
    """A device with the objects an action on it names: its partner's library script and its site's group."""

    device: Device
    script: Script
    group: Any

    def names(self) -> dict[str, Any]:
        return {"device": self.device.pk, "script": self.script.pk, "group": self.group.pk}


@pytest.fixture
def scene(world):
    """Site A1's devices online, quarantined and in maintenance; the first device of every other site (partner B's
    too, so that "allowed somewhere" is asked of every tenant); a library script per partner, each site's static
    group, an open alert and a pending command on a1-1 and on b1-1."""
    online, quarantined = world.devices[world.site_a1]
    in_maintenance = factories.device(world.site_a1, hostname="a1-maint")
    device_status.quarantine(device=quarantined, reason="seen scanning", actor=None)
    device_status.update_device(device=in_maintenance, actor=None, status=Device.Status.MAINTENANCE)
    scripts = {partner.pk: _script(partner=partner) for partner in (world.partner_a, world.partner_b)}
    groups = {group.site_id: group for group in world.groups.values() if group.site_id}

    def target(device: Device) -> Target:
        device = Device.objects.select_related("org").get(pk=device.pk)
        return Target(device=device, script=scripts[device.org.partner_id], group=groups[device.site_id])

    state = {
        "online": target(online),
        "quarantined": target(quarantined),
        "maintenance": target(in_maintenance),
    }
    elsewhere = [target(world.devices[site][0]) for site in (world.site_a2, world.site_a2_main, world.site_b1)]
    b1 = world.devices[world.site_b1][0]
    return {
        "state": state,
        "everywhere": [*state.values(), *elsewhere],
        "alerts": [_alert(online), _alert(b1)],
        "commands": [_command(online), _command(b1)],
    }


@pytest.fixture(params=PERSONAS)
def persona(request, world, roles):
    return build_persona(request.param, world, roles)


def test_the_device_page_offers_what_the_api_allows_on_that_device(scene, persona):
    client = admin_as(persona)
    wrong = {}
    for state, target in scene["state"].items():
        verdicts = {action: api_verdict(persona, DEVICE_CALLS[action], **target.names()) for action in PAGE_ACTIONS}
        offered = page_offers(client, admin_url(Device, "change", target.device.pk)) & set(PAGE_ACTIONS)
        for action, why in mismatches(offered, verdicts).items():
            # An action allowed but not offered is a fault only on a device in the state it applies to.
            if verdicts[action] == REFUSED or APPLIES_TO.get(action, "online") == state:
                wrong[f"{state} device: {action}"] = why
    assert wrong == {}


def test_the_device_page_offers_cancel_and_rerun_as_the_api_allows(scene, persona):
    online, command = scene["state"]["online"].device, scene["commands"][0]
    names = {"command": command.pk, "device": online.pk}
    verdicts = {action: api_verdict(persona, call, **names) for action, call in COMMAND_CALLS.items()}
    offered = page_offers(admin_as(persona), admin_url(Device, "change", online.pk))
    assert mismatches(offered & set(COMMAND_CALLS), verdicts) == {}


def test_the_device_list_offers_an_action_exactly_when_the_api_allows_it_on_some_device(scene, persona):
    allowed_somewhere = {
        action
        for action in LIST_ACTIONS
        if any(api_verdict(persona, DEVICE_CALLS[action], **t.names()) != REFUSED for t in scene["everywhere"])
    }
    offered = list_offers(admin_as(persona), admin_url(Device, "changelist")) & set(LIST_ACTIONS)
    assert offered == allowed_somewhere


def test_the_alert_page_and_list_offer_acknowledge_and_resolve_as_the_api_allows(scene, persona):
    client = admin_as(persona)
    allowed_somewhere = set()
    for alert in scene["alerts"]:
        verdicts = {action: api_verdict(persona, call, alert=alert.pk) for action, call in ALERT_CALLS.items()}
        assert mismatches(page_offers(client, admin_url(Alert, "change", alert.pk)), verdicts) == {}
        allowed_somewhere |= {action for action, said in verdicts.items() if said != REFUSED}
    assert list_offers(client, admin_url(Alert, "changelist")) & set(ALERT_CALLS) == allowed_somewhere


def test_the_command_list_offers_queueing_cancel_and_rerun_as_the_api_allows(scene, persona):
    client = admin_as(persona)
    may_queue = any(
        api_verdict(persona, COMMAND_CALLS["rerun_command"], device=command.device_id) != REFUSED
        for command in scene["commands"]
    )
    may_cancel = any(
        api_verdict(persona, COMMAND_CALLS["cancel_command"], command=command.pk) != REFUSED
        for command in scene["commands"]
    )
    page = client.get(admin_url(DeviceCommand, "changelist"))
    add_url = admin_url(DeviceCommand, "add")
    offers_add = page.status_code == 200 and add_url in page.content.decode()
    offered = list_offers(client, admin_url(DeviceCommand, "changelist"))
    assert {"add": offers_add, "cancel": "cancel" in offered, "rerun": "rerun" in offered} == {
        "add": may_queue,
        "cancel": may_cancel,
        "rerun": may_queue,
    }
    assert (client.get(add_url).status_code == 200) == may_queue


def test_the_group_page_offers_run_on_group_as_the_api_allows(scene, persona):
    for target in scene["everywhere"]:
        verdicts = {action: api_verdict(persona, call, group=target.group.pk) for action, call in GROUP_CALLS.items()}
        offered = page_offers(admin_as(persona), admin_url(type(target.group), "change", target.group.pk))
        assert mismatches(offered & set(GROUP_CALLS), verdicts) == {}, target.group.name


def test_the_comparison_sees_an_offer_the_api_refuses(scene, world, roles):
    """The comparison itself can fail: a page offering a button the API refuses is caught."""
    viewer = build_persona("viewer", world, roles)
    online = scene["state"]["online"].device
    verdicts = {"quarantine": api_verdict(viewer, DEVICE_CALLS["quarantine"], device=online.pk)}
    assert verdicts == {"quarantine": REFUSED}
    assert mismatches({"quarantine"}, verdicts) == {"quarantine": "the console offers it, the API refuses it"}
    missing = mismatches(set(), {"quarantine": ALLOWED})
    assert missing == {"quarantine": "the API allows it, the console does not offer it"}
