"""A ``script`` command's payload, the interpreter that runs its language here, and its file on disk.

The script's text is written byte for byte (UTF-8, no newline conversion) to a file of its own that only the agent's
user can read, and the interpreter is given the file's path. Parameters arrive as environment variables (``env``,
scripts.md): they are set for the process and never substituted into the text.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

LANGUAGES = ("powershell", "cmd", "bash", "sh", "python")
# The server's own bound for timeoutSeconds (devices.services.commands.MAX_SCRIPT_TIMEOUT_SECONDS).
MAX_TIMEOUT_SECONDS = 24 * 3600
# A script command without timeoutSeconds: the server times a sent command without one out after an hour
# (COMMAND_SENT_TIMEOUT_SECONDS); stopping five minutes earlier leaves time to post the result before that.
DEFAULT_TIMEOUT_SECONDS = 3600 - 300

# cmd.exe runs only .cmd/.bat files and powershell.exe -File only .ps1 files; the others are named for the reader.
_SUFFIXES = {"powershell": ".ps1", "cmd": ".cmd", "bash": ".sh", "sh": ".sh", "python": ".py"}


class PayloadError(ValueError):
    """A script payload the agent will not run; the message says what is wrong with it."""


class MissingInterpreter(Exception):
    """No interpreter for the script's language on this machine; the message names the one that is missing."""


@dataclass
class ScriptPayload:
    """A ``script`` command's payload, checked."""

    language: str
    content: str
    timeout_seconds: int
    env: dict[str, str] = field(default_factory=dict)


def parse_script_payload(payload: dict) -> ScriptPayload:
    """The payload ``{language, content, timeoutSeconds, env?}`` checked, or PayloadError.

    ``env`` must map text to text, and a name must be something an environment can hold: not empty, without "="
    or NUL (a value neither). Nothing is corrected: a command the server let through with a bad field is refused
    whole, not run in a different way than the technician wrote it.
    """
    language = payload.get("language")
    if language not in LANGUAGES:
        raise PayloadError(f"unknown script language: {language!r} (one of {', '.join(LANGUAGES)})")
    content = payload.get("content")
    if not isinstance(content, str):
        raise PayloadError("the script's content is missing or not text")
    if "\x00" in content:
        raise PayloadError("the script's content holds a NUL character")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("the script's content is not valid text (a lone surrogate)") from None
    timeout = payload.get("timeoutSeconds", DEFAULT_TIMEOUT_SECONDS)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_SECONDS
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        raise PayloadError(f"timeoutSeconds must be a whole number from 1 to {MAX_TIMEOUT_SECONDS}: {timeout!r}")
    env = payload.get("env")
    if env is None:
        env = {}
    if not isinstance(env, dict):
        raise PayloadError("env must be an object of environment variable names and text values")
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name or "\x00" in name:
            raise PayloadError(f"env: {name!r} cannot be an environment variable's name")
        if not isinstance(value, str) or "\x00" in value:
            raise PayloadError(f"env: the value of {name} must be text without NUL characters")
    return ScriptPayload(language=language, content=content, timeout_seconds=timeout, env=dict(env))


Which = Callable[[str], Optional[str]]


def _windows_python(which: Which) -> list[str] | None:
    launcher = which("py")
    if launcher:
        return [launcher, "-3"]
    python = which("python")
    # Windows 10 and 11 put a "python" on PATH that only opens the Microsoft Store (and exits 9009 without a
    # console): it is not an interpreter.
    if python and "windowsapps" not in python.lower():
        return [python]
    return None


def interpreter_command(
    language: str,
    *,
    windows: bool = sys.platform == "win32",
    which: Which = shutil.which,
    environ: dict[str, str] | None = None,
) -> list[str]:
    """The command that runs a script of ``language`` here; the script file's path goes after it.

    Python is the system's ``python3`` (Windows: the ``py -3`` launcher, else ``python``), never the interpreter the
    agent itself runs on: that one is the agent's own virtual environment, not the machine's Python. Raises
    MissingInterpreter naming what is missing.
    """
    environ = os.environ.copy() if environ is None else environ
    if language == "bash":
        bash = which("bash")
        if bash:
            return [bash]
        raise MissingInterpreter("no interpreter for bash scripts on this machine: bash is not on PATH")
    if language == "sh":
        if not windows and os.path.exists("/bin/sh"):
            return ["/bin/sh"]
        raise MissingInterpreter("no interpreter for sh scripts on this machine: /bin/sh does not exist")
    if language == "python":
        if windows:
            command = _windows_python(which)
            missing = "neither py nor python is on PATH"
        else:
            python3 = which("python3")
            command = [python3] if python3 else None
            missing = "python3 is not on PATH"
        if command:
            return command
        raise MissingInterpreter(f"no interpreter for python scripts on this machine: {missing}")
    if language == "powershell":
        if windows:
            system_root = environ.get("SystemRoot", r"C:\Windows")
            builtin = system_root + r"\System32\WindowsPowerShell\v1.0\powershell.exe"
            powershell = which("powershell.exe") or (builtin if os.path.exists(builtin) else None)
            if powershell:
                return [powershell, "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
            raise MissingInterpreter("no interpreter for powershell scripts on this machine: powershell.exe not found")
        pwsh = which("pwsh")
        if pwsh:
            return [pwsh, "-NoProfile", "-NonInteractive", "-File"]
        raise MissingInterpreter("no interpreter for powershell scripts on this machine: pwsh is not on PATH")
    if language == "cmd":
        if windows:
            cmd = environ.get("ComSpec") or which("cmd.exe")
            if cmd:
                # /d: no AutoRun commands from the registry run before the script.
                return [cmd, "/d", "/c"]
        raise MissingInterpreter("no interpreter for cmd scripts on this machine: cmd.exe exists only on Windows")
    raise MissingInterpreter(f"no interpreter for {language} scripts")


def write_script(workdir: Path, language: str, content: str) -> Path:
    """Write a script's text byte for byte to a new file of its own in ``workdir``; the caller removes it.

    The file is created 0600 with O_EXCL under a random name (mkstemp), so it is private even when the work
    directory is shared; a work directory the agent creates is 0700.
    """
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix="script-", suffix=_SUFFIXES[language], dir=workdir)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content.encode("utf-8"))
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)
