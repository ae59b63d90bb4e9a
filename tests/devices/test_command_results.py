"""A command's result rendered for people (devices.admin.command_results.command_output)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from devices.admin.command_results import command_output, duration_words
from devices.models import DeviceCommand
from devices.services.commands import queue_command

pytestmark = pytest.mark.django_db


@pytest.fixture
def device(world):
    return world.devices[world.site_a1][0]


def finish(command: DeviceCommand, *, status="completed", result, seconds=3.0) -> DeviceCommand:
    sent = timezone.now() - dt.timedelta(seconds=seconds + 5)
    DeviceCommand.objects.filter(pk=command.pk).update(
        status=status, sent_at=sent, completed_at=sent + dt.timedelta(seconds=seconds), result=result
    )
    command.refresh_from_db()
    return command


def script(device) -> DeviceCommand:
    return queue_command(device=device, type="script", payload={"language": "bash", "content": "ls"})


def test_a_scripts_result_shows_status_exit_code_duration_and_both_streams_preformatted(device):
    command = finish(
        script(device),
        status="failed",
        result={"exitCode": 3, "stdout": "line 1\nline 2\n", "stderr": "oops\n", "durationMs": 812, "error": None},
        seconds=75,
    )

    html = command_output(command)

    assert 'data-command-status="failed"' in html
    assert '<span class="status status-failed">Failed</span>' in html
    assert "<dt>Exit code</dt><dd>3</dd>" in html
    assert "<dd>1 min 15 s (812 ms on the device)</dd>" in html
    assert '<pre class="command-stream command-stdout">line 1\nline 2\n</pre>' in html
    assert '<pre class="command-stream command-stderr">oops\n</pre>' in html
    assert "{" not in html  # not raw JSON


def test_what_the_script_printed_is_escaped(device):
    command = finish(script(device), result={"exitCode": 0, "stdout": "<script>alert(1)</script>", "stderr": ""})

    html = command_output(command)

    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<p class="command-empty">(empty)</p>' in html  # stderr


def test_an_error_is_shown_and_a_missing_exit_code_is_a_dash(device):
    command = finish(
        script(device),
        status="timeout",
        result={"exitCode": None, "stdout": None, "stderr": None, "durationMs": None, "error": "No result in time."},
    )

    html = command_output(command)

    assert '<p class="command-error">No result in time.</p>' in html
    assert "<dt>Exit code</dt><dd>\N{EN DASH}</dd>" in html


def test_the_agents_truncation_is_noticed(device):
    command = finish(script(device), result={"exitCode": 0, "stdout": "x" * 10, "truncated": True})

    assert "The agent truncated this output" in command_output(command)
    plain = finish(script(device), result={"exitCode": 0, "stdout": "x" * 10})
    assert "truncated" not in command_output(plain)


def test_a_limit_cuts_each_stream_and_says_so(device):
    command = finish(script(device), result={"exitCode": 0, "stdout": "x" * 5000, "stderr": "y" * 10})

    html = command_output(command, limit=1000)

    assert "x" * 1000 + "</pre>" in html and "x" * 1001 not in html
    assert "Showing the first 1,000 of 5,000 characters" in html
    assert "y" * 10 + "</pre>" in html


def test_a_pending_command_says_it_waits_for_the_agent(device):
    html = command_output(script(device))

    assert '<span class="status status-pending">Pending</span>' in html
    assert "Waiting for the agent to fetch it" in html
    assert "<dt>Duration</dt><dd>\N{EN DASH}</dd>" in html


def test_a_reboots_result_is_a_key_value_list_not_json(device):
    command = queue_command(device=device, type="reboot", payload={})
    command = finish(
        command, result={"exitCode": 0, "stdout": "Rebooting in 1 minute", "stderr": "", "durationMs": 40, "uptime": 9}
    )

    html = command_output(command)

    assert "<dt>Output (stdout)</dt><dd>Rebooting in 1 minute</dd>" in html
    assert "<dt>Uptime</dt><dd>9</dd>" in html
    assert "stderr" not in html  # empty values are left out
    assert "<dt>Exit code</dt><dd>0</dd>" in html


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.25, "250 ms"),
        (2.5, "2.5 s"),
        (42, "42 s"),
        (75, "1 min 15 s"),
        (3 * 3600 + 120, "3 h 2 min"),
        (None, "\N{EN DASH}"),
    ],
)
def test_durations_read_as_words(seconds, words):
    assert duration_words(seconds) == words
