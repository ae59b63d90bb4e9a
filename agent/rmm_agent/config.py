"""The operator's local settings for the agent: a small JSON file, parsed strictly.

The server's configuration (heartbeat interval, …) comes over the wire; this file holds what only the machine's
owner may decide (whether reboot/shutdown commands may run, which config files and registry keys are reported, how
the agent updates itself). A typo must not silently do nothing, so an unknown key or a value of the wrong type
refuses to start with a message naming the key and the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The local config file cannot be used; the message names the file and the key."""


@dataclass
class ConfigFile:
    """A config file whose keys the agent reports (config-state inventory)."""

    path: str
    keys: list[str]


@dataclass
class RegistryKey:
    """Windows only: a registry key whose values the agent reports (registry-state inventory)."""

    path: str
    values: list[str]  # value names; [] = every value of the key


def default_config_files() -> list[ConfigFile]:
    """The config-state reported when the operator configures nothing: the SSH daemon's riskiest switches."""
    return [ConfigFile(path="/etc/ssh/sshd_config", keys=["PermitRootLogin", "PasswordAuthentication", "Port"])]


@dataclass
class LocalConfig:
    """The operator's local settings (see agent/README.md, "Config file")."""

    allow_power_actions: bool = False
    config_files: list[ConfigFile] = field(default_factory=default_config_files)
    registry_keys: list[RegistryKey] = field(default_factory=list)
    inventory_check_seconds: int = 4 * 3600
    max_backoff_seconds: int = 300
    max_concurrent_commands: int = 4
    command_workdir: str | None = None
    update_command: list[str] | None = None
    ca_file: str | None = None
    # "http://host:port" or "http://user:password@host:port"; None = the environment's (HTTPS_PROXY, NO_PROXY).
    # Out of the repr: it may hold the proxy's password.
    proxy: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: Path) -> LocalConfig:
        """Read the JSON file at `path`; a missing file gives the defaults. Raises ConfigError."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read: {exc}") from exc
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "config") -> LocalConfig:
        """Build a LocalConfig from the file's parsed JSON (camelCase keys); `source` names it in errors."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: must be a JSON object")
        unknown = sorted(set(raw) - set(_PARSERS))
        if unknown:
            known = ", ".join(sorted(_PARSERS))
            raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known keys: {known})")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            attribute, parse = _PARSERS[key]
            values[attribute] = parse(value, f"{source}: {key}")
        return cls(**values)


# Each parser gets the value and a prefix "<file>: <key>" and returns the attribute's value or raises ConfigError.
def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false")
    return value


def _integer(minimum: int, maximum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, where: str) -> int:
        # bool is an int to Python but `true` is not a number to the person who wrote the file.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number")
        if not minimum <= value <= maximum:
            raise ConfigError(f"{where} must be between {minimum} and {maximum}")
        return value

    return parse


def _absolute_path_or_null(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a path (a string) or null")
    # The service's working directory is not the operator's shell's: a relative path would mean something else.
    if not os.path.isabs(value):
        raise ConfigError(f"{where} must be an absolute path, not {value!r}")
    return value


def _ca_file(value: Any, where: str) -> str | None:
    path = _absolute_path_or_null(value, where)
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"{where}: {path} is not a file")
    return path


def _proxy(value: Any, where: str) -> str | None:
    if value is None:
        return None
    # The client owns what a usable proxy URL is; imported here so that loading a config without one stays light.
    from rmm_agent.client import parse_proxy

    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a URL like http://proxy.example.com:3128, or null")
    try:
        parse_proxy(value)
    except ValueError as error:
        raise ConfigError(f"{where} {error}") from None
    return value.strip()


def _string_list(value: Any, where: str, *, allow_empty: bool) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"{where} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise ConfigError(f"{where} must not be empty")
    return list(value)


def _update_command(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    return _string_list(value, where, allow_empty=False)


def _objects(value: Any, where: str, item_keys: dict[str, str]) -> list[dict[str, Any]]:
    """A list of objects with exactly `item_keys` (key → what its value must be, for the message)."""
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of objects")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}[{index}] must be an object")
        unknown = sorted(set(item) - set(item_keys))
        if unknown:
            raise ConfigError(f"{where}[{index}]: unknown key {unknown[0]!r} (known keys: {', '.join(item_keys)})")
        missing = [key for key in item_keys if key not in item]
        if missing:
            raise ConfigError(f"{where}[{index}]: {missing[0]} is required ({item_keys[missing[0]]})")
        if not isinstance(item["path"], str) or not item["path"]:
            raise ConfigError(f"{where}[{index}].path must be a non-empty string")
    return value


def _config_files(value: Any, where: str) -> list[ConfigFile]:
    items = _objects(value, where, {"path": "the file's path", "keys": "a list of key names"})
    return [
        ConfigFile(path=item["path"], keys=_string_list(item["keys"], f"{where}[{index}].keys", allow_empty=False))
        for index, item in enumerate(items)
    ]


def _registry_keys(value: Any, where: str) -> list[RegistryKey]:
    items = _objects(value, where, {"path": "the key's path", "values": "a list of value names, [] for all"})
    return [
        RegistryKey(
            path=item["path"], values=_string_list(item["values"], f"{where}[{index}].values", allow_empty=True)
        )
        for index, item in enumerate(items)
    ]


# The file's key → (LocalConfig attribute, parser). The one list of what the file may contain.
_PARSERS: dict[str, Any] = {
    "allowPowerActions": ("allow_power_actions", _boolean),
    "configFiles": ("config_files", _config_files),
    "registryKeys": ("registry_keys", _registry_keys),
    # At least a minute: the check reads every package database; at most a week.
    "inventoryCheckSeconds": ("inventory_check_seconds", _integer(60, 7 * 24 * 3600)),
    "maxBackoffSeconds": ("max_backoff_seconds", _integer(1, 24 * 3600)),
    "maxConcurrentCommands": ("max_concurrent_commands", _integer(1, 64)),
    "commandWorkdir": ("command_workdir", _absolute_path_or_null),
    "updateCommand": ("update_command", _update_command),
    "caFile": ("ca_file", _ca_file),
    "proxy": ("proxy", _proxy),
}
