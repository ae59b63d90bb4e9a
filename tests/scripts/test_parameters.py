"""Script parameters: their definitions (validate_parameter_definitions), the values of one run
(validate_parameter_values) and the environment the agent receives (parameter_env)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from rmm.domain_errors import Invalid
from scripts.services.library import parameter_env, validate_parameter_definitions, validate_parameter_values

DEFINITIONS = [
    {"name": "path", "type": "string", "required": True},
    {"name": "days", "type": "int", "required": False, "default": 7},
    {"name": "force", "type": "bool", "required": False},
    {"name": "mode", "type": "choice", "required": False, "choices": ["quick", "full"], "default": "quick"},
]


def definition_errors(value) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as refused:
        validate_parameter_definitions(value)
    return refused.value.message_dict


def value_errors(values, definitions=DEFINITIONS) -> dict[str, list[str]]:
    with pytest.raises(Invalid) as refused:
        validate_parameter_values(definitions, values)
    return refused.value.fields


# --- definitions ---


def test_good_definitions_are_normalised_with_required_always_present():
    assert validate_parameter_definitions([{"name": "Path", "type": "string"}]) == [
        {"name": "Path", "type": "string", "required": False}
    ]
    assert validate_parameter_definitions(DEFINITIONS) == DEFINITIONS
    assert validate_parameter_definitions(None) == []


@pytest.mark.parametrize(
    ("definitions", "paths"),
    [
        ({"name": "x"}, {"parameters"}),
        ([{"name": "x", "type": "string"}, "x"], {"parameters[1]"}),
        ([{"name": "1st", "type": "string"}], {"parameters[0].name"}),
        ([{"name": "a-b", "type": "string"}], {"parameters[0].name"}),
        ([{"name": "a" * 65, "type": "string"}], {"parameters[0].name"}),
        ([{"type": "string"}], {"parameters[0].name"}),
        ([{"name": "x", "type": "float"}], {"parameters[0].type"}),
        ([{"name": "x", "type": "string", "required": "yes"}], {"parameters[0].required"}),
        ([{"name": "x", "type": "string", "secret": True}], {"parameters[0].secret"}),
        ([{"name": "x", "type": "string"}, {"name": "X", "type": "int"}], {"parameters[1].name"}),
        ([{"name": "x", "type": "choice"}], {"parameters[0].choices"}),
        ([{"name": "x", "type": "choice", "choices": []}], {"parameters[0].choices"}),
        ([{"name": "x", "type": "choice", "choices": ["a", 2]}], {"parameters[0].choices[1]"}),
        ([{"name": "x", "type": "choice", "choices": ["a", "a"]}], {"parameters[0].choices[1]"}),
        ([{"name": "x", "type": "string", "choices": ["a"]}], {"parameters[0].choices"}),
        ([{"name": "x", "type": "int", "default": "seven"}], {"parameters[0].default"}),
        ([{"name": "x", "type": "bool", "default": 1}], {"parameters[0].default"}),
        ([{"name": "x", "type": "choice", "choices": ["a"], "default": "b"}], {"parameters[0].default"}),
        ([{"name": "x", "type": "string", "default": "a\x00b"}], {"parameters[0].default"}),
        ([{"name": f"p{n}", "type": "string"} for n in range(65)], {"parameters"}),
    ],
)
def test_bad_definitions_are_refused_with_the_path_of_each_problem(definitions, paths):
    assert set(definition_errors(definitions)) == paths


def test_several_problems_are_all_reported():
    errors = definition_errors([{"name": "ok", "type": "int", "default": True}, {"name": "", "type": "x"}])
    assert set(errors) == {"parameters[0].default", "parameters[1].name", "parameters[1].type"}


# --- values ---


def test_defaults_fill_what_is_not_given_and_optional_parameters_without_default_stay_out():
    values = validate_parameter_values(DEFINITIONS, {"path": "/var/log"})
    assert values == {"path": "/var/log", "days": 7, "mode": "quick"}


def test_a_required_parameter_must_be_given():
    assert value_errors({}) == {"parameters.path": ["Required."]}
    assert set(value_errors({"path": None})) == {"parameters.path"}
    assert set(value_errors(None)) == {"parameters.path"}


def test_an_unknown_parameter_is_refused():
    assert set(value_errors({"path": "/", "colour": "red"})) == {"parameters.colour"}


def test_values_must_be_an_object():
    assert set(value_errors(["/var/log"])) == {"parameters"}


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        ("path", "", ""),
        ("path", "  spaced  \r\n", "  spaced  \r\n"),
        ("days", 30, 30),
        ("days", -2, -2),
        ("days", "30", 30),  # an admin form sends text
        ("force", True, True),
        ("force", False, False),
        ("force", "false", False),
        ("mode", "full", "full"),
    ],
)
def test_each_type_accepts_its_values(name, value, stored):
    values = validate_parameter_values(DEFINITIONS, {"path": "/", name: value})
    assert values[name] == stored and type(values[name]) is type(stored)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("path", 5),
        ("path", "a\x00b"),
        ("path", "x" * (8 * 1024 + 1)),
        ("days", 7.5),
        ("days", True),
        ("days", "seven"),
        ("days", 2**63),
        ("force", 1),
        ("force", "yes"),
        ("mode", "Full"),
        ("mode", 1),
    ],
)
def test_each_type_refuses_what_is_not_its_value(name, value):
    assert set(value_errors({"path": "/", name: value})) == {f"parameters.{name}"}


def test_values_together_must_fit_the_commands_environment():
    definitions = [{"name": f"p{n}", "type": "string", "required": True} for n in range(9)]
    assert set(value_errors({f"p{n}": "x" * 8000 for n in range(9)}, definitions)) == {"parameters"}


# --- environment ---


def test_the_environment_names_each_parameter_upper_cased_with_text_values():
    values = validate_parameter_values(
        DEFINITIONS, {"path": " C:\\Temp\\ ; rm -rf / #", "days": 3, "force": False, "mode": "full"}
    )
    assert parameter_env(DEFINITIONS, values) == {
        "RMM_PARAM_PATH": " C:\\Temp\\ ; rm -rf / #",
        "RMM_PARAM_DAYS": "3",
        "RMM_PARAM_FORCE": "false",
        "RMM_PARAM_MODE": "full",
    }
    assert parameter_env([{"name": "Dry_run", "type": "bool", "required": True}], {"Dry_run": True}) == {
        "RMM_PARAM_DRY_RUN": "true"
    }
