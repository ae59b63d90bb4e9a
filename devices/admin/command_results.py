"""A command's result as a technician reads it: its status, exit code and duration, then stdout and stderr as
preformatted text, on the command's page and on the device page's recent commands.

An agent reports ``{exitCode, stdout, stderr, durationMs, error}`` (agent-api.md; ``devices.agent_api.schemas.
CommandResult``), at most 1 MiB per stream; the sweep that times out a silent command stores the same keys with an
``error``. Everything reported is escaped: stdout is whatever the script printed.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from devices.models import DeviceCommand
from rmm.console import MISSING, status_badge

# What the page says while there is no result yet.
_WAITING: dict[str, str] = {
    DeviceCommand.Status.PENDING: "Waiting for the agent to fetch it (at its next heartbeat).",
    DeviceCommand.Status.SENT: "Sent to the agent; waiting for its result.",
    DeviceCommand.Status.CANCELLED: "Cancelled before the agent fetched it; it never ran.",
    DeviceCommand.Status.EXPIRED: "Expired before the agent fetched it; it never ran.",
}

# Result keys shown in the summary line, not again in a non-script result's key/value view.
_SUMMARY_KEYS = ("exitCode", "durationMs")
_STREAMS = (("stdout", "Output (stdout)"), ("stderr", "Errors (stderr)"))
# Keys an agent may set to say it cut a stream short (today's agent sends none; a newer one may).
_TRUNCATION_KEYS = ("truncated", "stdoutTruncated", "stderrTruncated")
_LABELS = {"error": "Error", "stdout": "Output (stdout)", "stderr": "Errors (stderr)"}


def duration_words(delta: dt.timedelta | float | None) -> str:
    """``timedelta(seconds=75)`` (or seconds as a number) → ``"1 min 15 s"``; under ten seconds with tenths or, under
    a second, in milliseconds."""
    if delta is None:
        return MISSING
    seconds = delta.total_seconds() if isinstance(delta, dt.timedelta) else float(delta)
    if seconds < 0:
        return MISSING
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def command_duration(command: DeviceCommand) -> dt.timedelta | None:
    """From when the agent got the command (or, never sent, when it was queued) to when it finished; None while
    it is not finished."""
    if command.completed_at is None:
        return None
    return command.completed_at - (command.sent_at or command.created_at)


def _pre(text: str, css_class: str, limit: int | None) -> SafeString:
    shown = text if limit is None or len(text) <= limit else text[:limit]
    cut = ""
    if shown is not text:
        cut = format_html(
            '<p class="command-truncated">Showing the first {} of {} characters; the full text is on the '
            "command's page.</p>",
            f"{limit:,}",
            f"{len(text):,}",
        )
    return format_html('<pre class="command-stream {}">{}</pre>{}', css_class, shown, cut)


def _value(value: Any, limit: int | None) -> SafeString | str:
    if isinstance(value, str):
        return _pre(value, "command-value", limit) if "\n" in value or len(value) > 120 else value
    if isinstance(value, dict | list):
        return _pre(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True), "command-value", limit)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _label(key: str) -> str:
    if key in _LABELS:
        return _LABELS[key]
    words = "".join(f" {c.lower()}" if c.isupper() else c for c in key).replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def command_output(command: DeviceCommand, *, limit: int | None = None) -> SafeString:
    """The command's result, readable: a summary (status badge, exit code, duration), the error if any, then
    stdout and stderr each in an escaped ``<pre>`` for a script; a key/value list of what the agent reported for the
    other types. ``limit`` cuts each text to that many characters, saying so (the device page shows many
    commands; the command's own page shows everything). A notice says when the agent reports it truncated the
    output."""
    result = command.result
    exit_code = result.get("exitCode") if isinstance(result, dict) else None
    duration = duration_words(command_duration(command))
    ran_ms = result.get("durationMs") if isinstance(result, dict) else None
    if isinstance(ran_ms, int) and not isinstance(ran_ms, bool):
        duration = f"{duration} ({duration_words(ran_ms / 1000)} on the device)"
    summary = format_html(
        '<dl class="command-summary">'
        "<dt>Status</dt><dd>{}</dd><dt>Exit code</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd></dl>",
        status_badge(command.status, command.get_status_display()),
        MISSING if exit_code is None else exit_code,
        duration,
    )
    parts: list[SafeString] = [summary]
    if result is None:
        waiting = _WAITING.get(command.status, "The agent reported no result.")
        parts.append(format_html('<p class="command-waiting">{}</p>', waiting))
    elif not isinstance(result, dict):
        parts.append(_pre(json.dumps(result, indent=2, ensure_ascii=False), "command-value", limit))
    else:
        if result.get("error"):
            parts.append(format_html('<p class="command-error">{}</p>', result["error"]))
        if any(result.get(key) for key in _TRUNCATION_KEYS):
            parts.append(
                mark_safe(
                    '<p class="command-truncated">The agent truncated this output: it printed more than it '
                    "could send.</p>"
                )
            )
        if command.type == DeviceCommand.Type.SCRIPT:
            for key, title in _STREAMS:
                text = result.get(key)
                if isinstance(text, str) and text:
                    parts.append(format_html('<h4 class="command-stream-title">{}</h4>', title))
                    parts.append(_pre(text, f"command-{key}", limit))
                else:
                    parts.append(
                        format_html(
                            '<h4 class="command-stream-title">{}</h4><p class="command-empty">(empty)</p>', title
                        )
                    )
        else:
            shown = [
                (key, value)
                for key, value in result.items()
                if key not in (*_SUMMARY_KEYS, *_TRUNCATION_KEYS, "error") and value not in (None, "", [], {})
            ]
            if shown:
                rows = format_html_join("", "<dt>{}</dt><dd>{}</dd>", ((_label(k), _value(v, limit)) for k, v in shown))
                parts.append(format_html('<dl class="command-result">{}</dl>', rows))
            elif not result.get("error"):
                parts.append(mark_safe('<p class="command-empty">The agent reported nothing more.</p>'))
    return format_html(
        '<div class="command-output" data-command-status="{}">{}</div>',
        command.status,
        format_html_join("", "{}", ((part,) for part in parts)),
    )


def command_title(command: DeviceCommand) -> str:
    """``"reboot on host-01"``: what ran where, for titles and breadcrumbs (the device's name, never its id). Reads
    ``command.device``: load it with the command."""
    return f"{command.get_type_display().lower()} on {command.device.hostname}"


def command_payload(command: DeviceCommand) -> SafeString | str:
    """What was asked, readable: a script's language, timeout, environment and text (escaped, in a ``<pre>``); an
    update's version; nothing for the commands that take no payload."""
    payload = command.payload if isinstance(command.payload, dict) else {}
    if not payload:
        return MISSING
    if command.type != DeviceCommand.Type.SCRIPT:
        rows = format_html_join(
            "", "<dt>{}</dt><dd>{}</dd>", ((_label(k), _value(v, None)) for k, v in payload.items())
        )
        return format_html('<dl class="command-payload">{}</dl>', rows)
    env = payload.get("env")
    if not isinstance(env, dict):
        env = {}
    facts = [("Language", payload.get("language") or MISSING)]
    timeout = payload.get("timeoutSeconds")
    facts.append(("Timeout", MISSING if timeout is None else duration_words(timeout)))
    summary = format_html_join("", "<dt>{}</dt><dd>{}</dd>", facts)
    variables = format_html_join("", "<li><code>{}</code> = <code>{}</code></li>", sorted(env.items()))
    return format_html(
        '<dl class="command-payload">{}{}</dl><pre class="command-stream command-script">{}</pre>',
        summary,
        format_html("<dt>Environment</dt><dd><ul>{}</ul></dd>", variables) if env else "",
        payload.get("content") or "",
    )
