"""The script library: what a script may be (``clean_script``, called from ``Script.clean()``), its parameters and
their values, and the one place scripts are saved and archived (the API, the admin and the demo call it).

A script's parameters reach the agent as environment variables (``RMM_PARAM_<NAME>``), never in the script's text:
``validate_parameter_values`` checks the values of one run or schedule against the definitions and
``parameter_env`` turns them into the command's ``env``.

A change to what runs (content, parameters, language, timeout, success exit codes) bumps ``version`` and writes an
immutable ``ScriptVersion``; a change to name, description, category or OS types does not (runs name the version
they ran, and those fields do not change what ran).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import audit
from accounts.models import AuditAction
from devices.services.commands import MAX_ENV_BYTES, MAX_ENV_VARIABLES
from orgs.models import Organization
from rmm import authz
from rmm.domain_errors import Conflict, Invalid
from rmm.names import camel
from scripts.models import (
    MAX_SCRIPT_BYTES,
    Script,
    ScriptLanguage,
    ScriptOsType,
    ScriptSchedule,
    ScriptVersion,
)

INVALID_MESSAGE = "The script has invalid fields."

PARAMETER_TYPES = ("string", "int", "bool", "choice")
PARAMETER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
PARAMETER_KEYS = ("name", "type", "required", "default", "choices", "description")
# Each parameter is one environment variable of the command, whose env holds at most MAX_ENV_VARIABLES.
MAX_PARAMETERS = MAX_ENV_VARIABLES
MAX_CHOICES = 100
MAX_CHOICE_CHARS = 200
MAX_DESCRIPTION_CHARS = 1000
MAX_STRING_VALUE_BYTES = 8 * 1024
ENV_PREFIX = "RMM_PARAM_"
# The int parameters and exit codes fit the database's and the agents' integers.
INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)

# The OS types a language runs on when the author names none.
DEFAULT_OS_TYPES: dict[str, list[str]] = {
    ScriptLanguage.POWERSHELL: [ScriptOsType.WINDOWS],
    ScriptLanguage.CMD: [ScriptOsType.WINDOWS],
    ScriptLanguage.BASH: [ScriptOsType.LINUX, ScriptOsType.MACOS],
    ScriptLanguage.SH: [ScriptOsType.LINUX, ScriptOsType.MACOS],
    ScriptLanguage.PYTHON: [ScriptOsType.WINDOWS, ScriptOsType.MACOS, ScriptOsType.LINUX],
}

# What runs: a change to any of these is a new version.
VERSIONED_FIELDS = ("content", "language", "parameters", "timeout_seconds", "success_exit_codes")
# A model field's name in the API (relations are sent as ids), for the scripts' and schedules' errors.
_API_NAMES = {
    "__all__": "nonFieldErrors",
    "org": "orgId",
    "partner": "partnerId",
    "script": "scriptId",
    "site": "siteId",
    "device_group": "deviceGroupId",
}


# --- parameter definitions --------------------------------------------------------------------------------------


def usable_in(script: Script, org: Organization) -> bool:
    """A script runs in its own organization, or (a partner's library) in every organization of its partner."""
    if script.org_id is not None:
        return script.org_id == org.pk
    return script.partner_id == org.partner_id


def runnable_scripts(user, *, orgs: Iterable[Organization]) -> QuerySet[Script]:
    """The library scripts ``user`` may run (``scripts:execute``), not archived, that can run in one of ``orgs``
    (``usable_in``, as a query): what the console offers on its "run a script" pages."""
    orgs = list(orgs)
    usable = Q(org_id__in={org.pk for org in orgs}) | Q(partner_id__in={org.partner_id for org in orgs})
    return authz.visible(user, "scripts:execute", Script.objects.filter(usable, archived_at__isnull=True))


def validate_parameter_definitions(value: object) -> list[dict]:
    """The ``parameters`` of a script, checked and normalised (``required`` always present, keys in a fixed order).

    Raises ``ValidationError`` whose keys are paths: ``parameters`` for the whole list, ``parameters[1].name``,
    ``parameters[0].choices[2]`` for one entry's key.
    """
    errors: dict[str, list[str]] = {}

    def error(path: str, message: str) -> None:
        errors.setdefault(path, []).append(message)

    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError({"parameters": ["Must be a list of parameters."]})
    if len(value) > MAX_PARAMETERS:
        raise ValidationError({"parameters": [f"At most {MAX_PARAMETERS} parameters."]})
    normalised: list[dict] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(value):
        at = f"parameters[{index}]"
        if not isinstance(entry, dict):
            error(at, "Must be an object with a name and a type.")
            continue
        for key in entry:
            if key not in PARAMETER_KEYS:
                error(f"{at}.{key}", f"Not a field of a parameter (use {', '.join(PARAMETER_KEYS)}).")
        name = entry.get("name")
        if not isinstance(name, str) or not PARAMETER_NAME.fullmatch(name):
            error(
                f"{at}.name",
                "Must start with a letter and hold only letters, digits and underscores (at most 64 characters).",
            )
            name = None
        elif name.upper() in seen:
            error(
                f"{at}.name",
                f"Same name as parameters[{seen[name.upper()]}] (names are compared ignoring case: each becomes "
                f"the environment variable {ENV_PREFIX}{name.upper()}).",
            )
        else:
            seen[name.upper()] = index
        kind = entry.get("type")
        if kind not in PARAMETER_TYPES:
            error(f"{at}.type", f"Must be one of: {', '.join(PARAMETER_TYPES)}.")
            kind = None
        required = entry.get("required", False)
        if not isinstance(required, bool):
            error(f"{at}.required", "Must be true or false.")
        description = entry.get("description", "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
            error(f"{at}.description", f"Must be text of at most {MAX_DESCRIPTION_CHARS} characters.")
        choices = entry.get("choices")
        if kind == "choice":
            choices_ok = _check_choices(choices, f"{at}.choices", error)
        else:
            choices_ok = False
            if choices is not None and kind is not None:
                error(f"{at}.choices", "Only a parameter of type choice has choices.")
        clean: dict[str, Any] = {"name": name, "type": kind, "required": required}
        has_default = "default" in entry and entry["default"] is not None
        if has_default and kind is not None and (kind != "choice" or choices_ok):
            problem, default = _check_value(clean | {"choices": choices}, entry["default"])
            if problem:
                error(f"{at}.default", problem)
            else:
                clean["default"] = default
        if kind == "choice":
            clean["choices"] = choices
        if description:
            clean["description"] = description
        normalised.append(clean)
    if errors:
        raise ValidationError(errors)
    return normalised


def _check_choices(choices: object, at: str, error) -> bool:
    if not isinstance(choices, list) or not choices:
        error(at, "A choice parameter needs a non-empty list of choices.")
        return False
    if len(choices) > MAX_CHOICES:
        error(at, f"At most {MAX_CHOICES} choices.")
        return False
    ok = True
    for position, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice or len(choice) > MAX_CHOICE_CHARS or "\x00" in choice:
            error(f"{at}[{position}]", f"Must be text of 1 to {MAX_CHOICE_CHARS} characters.")
            ok = False
        elif choices.index(choice) != position:
            error(f"{at}[{position}]", "Listed twice.")
            ok = False
    return ok


def _check_value(definition: dict, value: object) -> tuple[str | None, object]:
    """(problem, value as stored): ints from JSON integers or strings of digits (admin forms send text), bools from
    true/false (or their text), a choice among the choices, a string of at most 8 KiB without NUL."""
    kind = definition["type"]
    if kind == "int":
        if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]{1,19}\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return "Must be a whole number.", None
        if not INT64[0] <= value <= INT64[1]:
            return "Must be a whole number that fits in 64 bits.", None
        return None, value
    if kind == "bool":
        if isinstance(value, str) and value in ("true", "false"):
            value = value == "true"
        if not isinstance(value, bool):
            return "Must be true or false.", None
        return None, value
    if kind == "choice":
        choices = definition.get("choices") or []
        if not isinstance(value, str) or value not in choices:
            return f"Must be one of: {', '.join(choices)}.", None
        return None, value
    if not isinstance(value, str):
        return "Must be text.", None
    if "\x00" in value:
        return "Must not contain NUL characters.", None
    if len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_VALUE_BYTES:
        return f"At most {MAX_STRING_VALUE_BYTES // 1024} KiB.", None
    return None, value


# --- parameter values -------------------------------------------------------------------------------------------


def validate_parameter_values(definitions: list[dict], values: object) -> dict[str, object]:
    """The values of one run or schedule, checked against a script's parameter ``definitions``: unknown names
    refused, required ones present, defaults filled in, each of its type. A ``null`` value counts as not given (and
    so does an empty text for an int, as a blank form field sends). Raises ``Invalid`` with
    ``fields={"parameters.<name>": [...]}``."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Invalid.field("parameters", "Must be an object of parameter names and values.")
    by_name = {definition["name"]: definition for definition in definitions}
    fields: dict[str, list[str]] = {}
    for name in values:
        if name not in by_name:
            known = ", ".join(by_name) or "none"
            fields[f"parameters.{name}"] = [f"Not a parameter of this script (its parameters: {known})."]
    clean: dict[str, object] = {}
    for name, definition in by_name.items():
        value = values.get(name)
        if value == "" and definition["type"] == "int":
            value = None
        if value is None:
            if "default" in definition:
                clean[name] = definition["default"]
            elif definition.get("required"):
                fields[f"parameters.{name}"] = ["Required."]
            continue
        problem, checked = _check_value(definition, value)
        if problem:
            fields[f"parameters.{name}"] = [problem]
        else:
            clean[name] = checked
    if not fields:
        env = parameter_env(definitions, clean)
        if sum(len(key.encode()) + len(text.encode("utf-8", "surrogatepass")) for key, text in env.items()) > (
            MAX_ENV_BYTES
        ):
            fields["parameters"] = [f"Together the values must stay under {MAX_ENV_BYTES // 1024} KiB."]
    if fields:
        raise Invalid("The parameters are not valid for this script.", fields=fields)
    return clean


def parameter_env(definitions: list[dict], values: dict[str, object]) -> dict[str, str]:
    """The command's environment for these (validated) values: ``RMM_PARAM_<NAME upper-cased>`` → text; bools as
    ``true``/``false``, ints in decimal, strings exactly as given."""
    env: dict[str, str] = {}
    for definition in definitions:
        name = definition["name"]
        if name not in values:
            continue
        value = values[name]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[f"{ENV_PREFIX}{name.upper()}"] = text
    return env


# --- the script itself ------------------------------------------------------------------------------------------


def default_os_types(language: str) -> list[str]:
    """The OS types a script of ``language`` runs on when its author names none."""
    return [str(os_type) for os_type in DEFAULT_OS_TYPES.get(language, [])]


def clean_script(script: Script) -> None:
    """``Script.clean()``: raise ``ValidationError`` keyed by field when ``script`` breaks a rule of the library.

    Exactly one owner; a name not blank and unique in its library; content not blank, without NUL, at most 256 KiB
    of UTF-8 (kept byte for byte: nothing is trimmed); valid OS types (a ``cmd`` script runs on Windows only);
    success exit codes not empty. Parameter definitions are normalised in place; their errors are listed under
    ``parameters`` as ``"parameters[1].name: …"`` (``save_script`` turns each into its own path-named field, and
    the admin shows them on the parameters field).
    """
    errors: dict[str, list[str]] = {}

    def error(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if (script.org_id is None) == (script.partner_id is None):
        error("org", "A script belongs to exactly one of an organization or a partner (its library).")
    if isinstance(script.name, str) and script.name and not script.name.strip():
        error("name", "The name cannot be blank.")
    elif script.name and (script.org_id or script.partner_id):
        same_name = Script.objects.filter(name=script.name).exclude(pk=script.pk)
        if script.org_id is not None:
            same_name = same_name.filter(org_id=script.org_id)
        else:
            same_name = same_name.filter(partner=script.partner, org__isnull=True)
        if same_name.exists():
            error("name", "This library already has a script of that name.")
    content = script.content
    if isinstance(content, str) and content:
        if not content.strip():
            error("content", "The script cannot be blank.")
        elif "\x00" in content:
            error("content", "The script cannot contain NUL characters.")
        elif len(content.encode("utf-8", "surrogatepass")) > MAX_SCRIPT_BYTES:
            error("content", f"At most {MAX_SCRIPT_BYTES // 1024} KiB of UTF-8 text.")
    os_types = script.os_types
    if not isinstance(os_types, list) or any(os_type not in ScriptOsType.values for os_type in os_types):
        error("os_types", f"Each must be one of: {', '.join(ScriptOsType.values)}.")
    else:
        script.os_types = [os_type for os_type in ScriptOsType.values if os_type in os_types]
        if script.language == ScriptLanguage.CMD and set(script.os_types) - {ScriptOsType.WINDOWS}:
            error("os_types", "A cmd script runs on Windows only.")
    codes = script.success_exit_codes
    if not isinstance(codes, list) or not codes:
        error("success_exit_codes", "List at least one exit code that means success.")
    elif any(isinstance(code, bool) or not isinstance(code, int) or not INT32[0] <= code <= INT32[1] for code in codes):
        error("success_exit_codes", "Each must be a whole number that fits in 32 bits.")
    else:
        script.success_exit_codes = sorted(set(codes))
    try:
        script.parameters = validate_parameter_definitions(script.parameters)
    except ValidationError as exc:
        for path, messages in exc.message_dict.items():
            errors.setdefault("parameters", []).extend(f"{path}: {message}" for message in messages)
    if errors:
        raise ValidationError(errors)


def validation_fields(error: ValidationError) -> dict[str, list[str]]:
    """A script's or a schedule's ValidationError → the API's field names; a parameter's messages
    (``parameters[1].name: …``, ``parameters.days: …``) are keyed by their own path."""
    fields: dict[str, list[str]] = {}
    for name, messages in error.message_dict.items():
        for message in messages:
            if name == "parameters" and message.startswith("parameters") and ": " in message:
                path, text = message.split(": ", 1)
                fields.setdefault(path, []).append(text)
            else:
                fields.setdefault(_API_NAMES.get(name, camel(name)), []).append(message)
    return fields


def _state(script: Script) -> dict[str, Any]:
    """What an audit row records of a script: everything but the content, which is recorded by size and digest."""
    content = script.content or ""
    return {
        "name": script.name,
        "description": script.description,
        "category": script.category,
        "language": script.language,
        "osTypes": list(script.os_types),
        "parameters": script.parameters,
        "timeoutSeconds": script.timeout_seconds,
        "successExitCodes": list(script.success_exit_codes),
        "contentBytes": len(content.encode("utf-8", "surrogatepass")),
        "contentSha256": hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest(),
    }


def _runs_differently(stored: Script, script: Script) -> bool:
    return any(getattr(stored, name) != getattr(script, name) for name in VERSIONED_FIELDS)


def save_script(*, script: Script, actor, ip: str | None = None) -> Script:
    """Create or update ``script`` as the caller filled it in.

    Validates (``full_clean``), refuses any change to an archived script (``Conflict`` ``script_archived``) and a
    change of owner, fills ``os_types`` from the language when empty, and bumps ``version`` (writing its
    ``ScriptVersion``) when what runs changed; a new script is version 1. Writes ``script.create`` /
    ``script.update``. Raises ``Invalid`` with the API's field names (``content``, ``parameters[1].name``).
    """
    with transaction.atomic():
        stored = None
        if not script._state.adding:
            stored = Script.objects.select_for_update().filter(pk=script.pk).first()
        if stored is not None:
            if stored.archived_at is not None:
                raise Conflict("This script is archived; it can no longer be changed.", code="script_archived")
            if (stored.org_id, stored.partner_id) != (script.org_id, script.partner_id):
                raise Invalid.field("orgId", "A script stays in the library it was created in.")
        if not script.os_types:
            script.os_types = default_os_types(script.language)
        try:
            # The constraints are checked by clean_script with field-named messages (and by the database).
            script.full_clean(validate_constraints=False)
        except ValidationError as exc:
            raise Invalid(INVALID_MESSAGE, fields=validation_fields(exc)) from None
        now = timezone.now()
        if stored is None:
            script.version = 1
            script.archived_at = None
            if script.created_by_id is None and getattr(actor, "pk", None):
                script.created_by = actor
            new_version = True
        else:
            script.archived_at = stored.archived_at
            script.created_by_id = stored.created_by_id
            new_version = _runs_differently(stored, script)
            script.version = stored.version + 1 if new_version else stored.version
        script.updated_at = now
        script.save()
        if new_version:
            ScriptVersion.objects.create(
                script=script,
                version=script.version,
                content=script.content,
                language=script.language,
                parameters=script.parameters,
                timeout_seconds=script.timeout_seconds,
                success_exit_codes=script.success_exit_codes,
                created_by=actor if getattr(actor, "pk", None) else None,
                created_at=now,
            )
        after = _state(script)
        details: dict[str, Any] = {"name": script.name, "version": script.version}
        if stored is None:
            action = AuditAction.SCRIPT_CREATE
            details["script"] = after
        else:
            action = AuditAction.SCRIPT_UPDATE
            details["changes"] = audit.changes(_state(stored), after)
        audit.record(action=action, actor_user=actor, org_id=script.org_id, target=script, details=details, ip=ip)
    return script


def archive_script(*, script: Script, actor, ip: str | None = None) -> Script:
    """Archive ``script``: it can no longer run or change, its schedules are disabled, its versions and runs stay.
    Writes ``script.archive``. Archiving an archived script changes nothing (and writes nothing)."""
    with transaction.atomic():
        stored = Script.objects.select_for_update().get(pk=script.pk)
        if stored.archived_at is not None:
            script.archived_at = stored.archived_at
            return script
        now = timezone.now()
        Script.objects.filter(pk=script.pk).update(archived_at=now, updated_at=now)
        disabled = ScriptSchedule.objects.filter(script_id=script.pk, enabled=True).update(
            enabled=False, updated_at=now
        )
        script.archived_at = now
        script.updated_at = now
        audit.record(
            action=AuditAction.SCRIPT_ARCHIVE,
            actor_user=actor,
            org_id=script.org_id,
            target=script,
            details={"name": stored.name, "version": stored.version, "schedulesDisabled": disabled},
            ip=ip,
        )
    return script
