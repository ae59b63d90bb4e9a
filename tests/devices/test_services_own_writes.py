"""A guard for "one home for every rule": the devices app's doors (the technician API, the admin, the management
commands) write nothing themselves. Every write of a device, a group, a membership or a command, and every audit
row, goes through devices.services, where the rules are; a door that calls ``.save()``, ``.update()`` … or
``audit.record`` directly is reported here with its file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import devices

DEVICES = Path(devices.__file__).parent
DOORS = sorted([*DEVICES.glob("api/*.py"), *DEVICES.glob("admin/*.py"), *DEVICES.glob("management/commands/*.py")])

WRITES = {"save", "update", "delete", "create", "bulk_create", "bulk_update", "get_or_create", "update_or_create"}


def writes_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        owner = node.func.value
        if name in WRITES or (name == "record" and isinstance(owner, ast.Name) and owner.id == "audit"):
            found.append(f"{path.relative_to(DEVICES.parent)}:{node.lineno}: .{name}(...)")
    return found


def test_the_doors_of_the_devices_app_are_found():
    assert DEVICES / "admin" / "device.py" in DOORS and DEVICES / "api" / "views.py" in DOORS


def test_no_door_of_the_devices_app_writes_a_model_or_an_audit_row_itself():
    found = [write for path in DOORS for write in writes_in(path)]

    assert found == [], "call the service in devices/services/ instead:\n" + "\n".join(found)
