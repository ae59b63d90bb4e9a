"""The operator's local config file (rmm_agent.config): defaults, a full file, and the refusals that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmm_agent.config import ConfigError, ConfigFile, LocalConfig, RegistryKey


def write_config(directory: Path, content: object) -> Path:
    path = directory / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_a_missing_file_gives_the_defaults(tmp_path):
    config = LocalConfig.load(tmp_path / "config.json")

    assert config == LocalConfig()
    assert config.allow_power_actions is False
    assert config.config_files == [
        ConfigFile(path="/etc/ssh/sshd_config", keys=["PermitRootLogin", "PasswordAuthentication", "Port"])
    ]
    assert config.registry_keys == []
    assert config.inventory_check_seconds == 4 * 3600
    assert config.max_backoff_seconds == 300
    assert config.max_concurrent_commands == 4
    assert config.command_workdir is None
    assert config.update_command is None
    assert config.ca_file is None


def test_the_defaults_are_not_shared_between_instances():
    first = LocalConfig()
    first.config_files.append(ConfigFile(path="/etc/x", keys=["a"]))

    assert len(LocalConfig().config_files) == 1


def test_an_empty_object_gives_the_defaults(tmp_path):
    assert LocalConfig.load(write_config(tmp_path, {})) == LocalConfig()


def test_a_full_file_sets_every_setting(tmp_path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    path = write_config(
        tmp_path,
        {
            "allowPowerActions": True,
            "configFiles": [{"path": "/etc/ssh/sshd_config", "keys": ["Port"]}, {"path": "/etc/x.conf", "keys": ["a"]}],
            "registryKeys": [
                {"path": "HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU", "values": []},
                {"path": "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa", "values": ["LmCompatibilityLevel"]},
            ],
            "inventoryCheckSeconds": 3600,
            "maxBackoffSeconds": 120,
            "maxConcurrentCommands": 2,
            "commandWorkdir": "/srv/rmm-agent/work",
            "updateCommand": ["/usr/bin/pip", "install", "rmm-agent=={version}"],
            "caFile": str(ca_file),
        },
    )

    config = LocalConfig.load(path)

    assert config.allow_power_actions is True
    assert config.config_files == [
        ConfigFile(path="/etc/ssh/sshd_config", keys=["Port"]),
        ConfigFile(path="/etc/x.conf", keys=["a"]),
    ]
    assert config.registry_keys == [
        RegistryKey(path="HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU", values=[]),
        RegistryKey(path="HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa", values=["LmCompatibilityLevel"]),
    ]
    assert config.inventory_check_seconds == 3600
    assert config.max_backoff_seconds == 120
    assert config.max_concurrent_commands == 2
    assert config.command_workdir == "/srv/rmm-agent/work"
    assert config.update_command == ["/usr/bin/pip", "install", "rmm-agent=={version}"]
    assert config.ca_file == str(ca_file)


def test_an_empty_config_files_list_reports_no_config_state(tmp_path):
    assert LocalConfig.load(write_config(tmp_path, {"configFiles": []})).config_files == []


def test_an_unknown_key_is_refused_naming_it_and_the_file(tmp_path):
    path = write_config(tmp_path, {"allowPowerAction": True})

    with pytest.raises(ConfigError) as caught:
        LocalConfig.load(path)

    assert str(path) in str(caught.value)
    assert "'allowPowerAction'" in str(caught.value)
    assert "allowPowerActions" in str(caught.value)  # the known keys are listed, so the typo is easy to see


def test_an_unknown_key_inside_a_config_file_entry_is_refused(tmp_path):
    path = write_config(tmp_path, {"configFiles": [{"path": "/etc/x", "key": ["a"]}]})

    with pytest.raises(ConfigError, match=r"configFiles\[0\]: unknown key 'key'"):
        LocalConfig.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"allowPowerActions": "yes"}, "allowPowerActions must be true or false"),
        ({"allowPowerActions": 1}, "allowPowerActions must be true or false"),
        ({"maxBackoffSeconds": "300"}, "maxBackoffSeconds must be a whole number"),
        ({"maxBackoffSeconds": 30.5}, "maxBackoffSeconds must be a whole number"),
        ({"maxBackoffSeconds": True}, "maxBackoffSeconds must be a whole number"),
        ({"maxBackoffSeconds": 0}, "maxBackoffSeconds must be between 1 and"),
        ({"maxConcurrentCommands": 0}, "maxConcurrentCommands must be between 1 and 64"),
        ({"inventoryCheckSeconds": 5}, "inventoryCheckSeconds must be between 60 and"),
        ({"configFiles": {"path": "/etc/x"}}, "configFiles must be a list of objects"),
        ({"configFiles": ["/etc/x"]}, r"configFiles\[0\] must be an object"),
        ({"configFiles": [{"path": "/etc/x"}]}, r"configFiles\[0\]: keys is required"),
        ({"configFiles": [{"path": "", "keys": ["a"]}]}, r"configFiles\[0\].path must be a non-empty string"),
        ({"configFiles": [{"path": "/etc/x", "keys": "a"}]}, r"configFiles\[0\].keys must be a list"),
        ({"configFiles": [{"path": "/etc/x", "keys": []}]}, r"configFiles\[0\].keys must not be empty"),
        ({"registryKeys": [{"path": "HKLM\\X", "values": [1]}]}, r"registryKeys\[0\].values must be a list"),
        ({"updateCommand": "pip install rmm-agent"}, "updateCommand must be a list of non-empty strings"),
        ({"updateCommand": []}, "updateCommand must not be empty"),
        ({"commandWorkdir": 5}, "commandWorkdir must be a path"),
        ({"commandWorkdir": "work"}, "commandWorkdir must be an absolute path"),
        ({"caFile": "/nonexistent/ca.pem"}, "caFile: /nonexistent/ca.pem is not a file"),
    ],
)
def test_a_wrong_type_is_refused_naming_the_key_and_the_file(tmp_path, content, message):
    path = write_config(tmp_path, content)

    with pytest.raises(ConfigError, match=message) as caught:
        LocalConfig.load(path)

    assert str(caught.value).startswith(f"{path}: ")


def test_a_file_that_is_not_json_is_refused_with_the_line(tmp_path):
    path = write_config(tmp_path, '{\n  "allowPowerActions": true,\n}\n')

    with pytest.raises(ConfigError, match=r"config.json: not valid JSON: .* line 3"):
        LocalConfig.load(path)


def test_a_file_that_is_not_an_object_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="must be a JSON object"):
        LocalConfig.load(write_config(tmp_path, [1, 2]))


def test_nulls_are_accepted_where_a_setting_is_optional(tmp_path):
    config = LocalConfig.load(write_config(tmp_path, {"commandWorkdir": None, "updateCommand": None, "caFile": None}))

    assert (config.command_workdir, config.update_command, config.ca_file) == (None, None, None)
