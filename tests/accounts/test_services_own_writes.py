"""A guard for "one home for every rule" in the tenancy and accounts apps: their doors (the technician API's
views and serializers, the admin, the management commands) write nothing themselves. Memberships, invitations,
people, roles, tokens, the second factor, organizations within their partner's limit, sites' deletion and
enrollment keys are written by accounts.services and orgs.services, which check the rules and record the audit
row; a door that calls ``.save()``, ``.update()``, ``.set()`` … or ``audit.record`` itself is reported here with
its file and line.

What this does not see: plain field edits that have no rule beyond the model's own validation (a site's name, an
organization's settings, a partner's limits) are saved by the shared bases, ``rmm.api.ScopedViewSet`` and
Django's ``ModelAdmin``, which write the same audit action names (``accounts.audit.action_for``)."""

from __future__ import annotations

import ast
from pathlib import Path

import accounts
import orgs

WRITES = {
    "save",
    "update",
    "delete",
    "create",
    "create_user",
    "bulk_create",
    "bulk_update",
    "get_or_create",
    "update_or_create",
    "set",
    "add",
    "remove",
    "clear",
}


def doors() -> list[Path]:
    found = []
    for app in (accounts, orgs):
        root = Path(app.__file__).parent
        found += [*root.glob("api/*.py"), root / "admin.py", *root.glob("management/commands/*.py")]
    return sorted(path for path in found if path.exists())


def writes_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, owner = node.func.attr, node.func.value
        if name in WRITES or (name == "record" and isinstance(owner, ast.Name) and owner.id == "audit"):
            found.append(f"{path.relative_to(path.parents[2])}:{node.lineno}: .{name}(...)")
    return found


def test_the_doors_of_accounts_and_orgs_are_found():
    names = {f"{path.parent.name}/{path.name}" for path in doors()}
    assert {"accounts/admin.py", "orgs/admin.py", "api/access.py", "api/views.py", "commands/grant_access.py"} <= names


def test_no_door_of_accounts_or_orgs_writes_a_model_or_an_audit_row_itself():
    found = [write for path in doors() for write in writes_in(path)]

    assert found == [], "call the service in accounts/services.py or orgs/services.py instead:\n" + "\n".join(found)
