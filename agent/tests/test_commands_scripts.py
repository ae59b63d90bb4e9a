"""Script commands (rmm_agent.commands): real interpreters on this machine run the script's bytes as sent, with its
parameters in the environment; what cannot run here is refused with a message that says why."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from rmm_agent.commands import CommandExecutor
from rmm_agent.commands.scripts import MissingInterpreter, interpreter_command
from rmm_agent.config import LocalConfig
from rmm_agent.state import StateDir

METACHARACTERS = '"; rm -rf / $(id) `x` \'\\" && echo pwned | tee /tmp/x > /dev/null; %PATH% ${HOME} \\n \t end'


class Agent:
    """A CommandExecutor over a real state directory, driven the way the run loop drives it."""

    def __init__(self, tmp_path: Path, **config) -> None:
        self.state = StateDir(tmp_path / "state")
        self.woken = threading.Event()
        self.executor = CommandExecutor(
            state=self.state, config=LocalConfig(**config), refresh_inventory=lambda: None, on_result=self.woken.set
        )

    def run(self, command_type: str, payload: dict | None = None, *, wait: float = 10.0) -> dict:
        command_id = str(uuid.uuid4())
        self.executor.submit({"id": command_id, "type": command_type, "payload": payload or {}})
        deadline = time.monotonic() + wait
        while command_id not in self.state.outbox:
            assert time.monotonic() < deadline, "no result in time"
            self.woken.wait(0.05)
            self.woken.clear()
        return self.state.outbox.pending()[command_id]

    def script(self, language: str, content: str, *, timeout: int = 10, env: dict | None = None) -> dict:
        payload: dict = {"language": language, "content": content, "timeoutSeconds": timeout}
        if env is not None:
            payload["env"] = env
        return self.run("script", payload)


@pytest.fixture
def agent(tmp_path):
    agent = Agent(tmp_path)
    yield agent
    agent.executor.shutdown(timeout=5)


@pytest.mark.parametrize("language", ["bash", "sh"])
def test_a_shell_script_reports_its_output_and_exit_code(agent, language):
    result = agent.script(language, "echo hello; exit 3")

    assert result["status"] == "completed"
    assert result["exitCode"] == 3
    assert result["stdout"] == "hello\n"
    assert result["stderr"] == ""
    assert result["error"] is None
    assert isinstance(result["durationMs"], int)
    assert 0 <= result["durationMs"] < 5000
    assert set(result) == {"status", "exitCode", "stdout", "stderr", "durationMs", "error"}


def test_stderr_is_captured_apart_from_stdout(agent):
    result = agent.script("sh", "echo out; echo err >&2")

    assert (result["stdout"], result["stderr"]) == ("out\n", "err\n")


@pytest.mark.skipif(shutil.which("python3") is None, reason="no python3 on PATH")
def test_a_python_script_runs_on_the_machines_python3_not_the_agents(agent):
    result = agent.script("python", "import sys\nprint('python', sys.version_info[0])\nprint(sys.prefix)\n")

    assert result["status"] == "completed", result
    assert result["exitCode"] == 0
    first, prefix = result["stdout"].splitlines()
    assert first == "python 3"
    # The tests run in the agent's virtual environment; the script gets the machine's Python, not that one.
    venv_on_path = os.path.join(sys.prefix, "bin") in os.environ.get("PATH", "").split(os.pathsep)
    if sys.prefix != sys.base_prefix and not venv_on_path:
        assert prefix != sys.prefix


@pytest.mark.skipif(shutil.which("python3") is None, reason="no python3 on PATH")
def test_a_python_script_runs_byte_for_byte(agent):
    # CRLF line ends, trailing spaces and tabs, non-ASCII text, no newline at the end: all reach the interpreter.
    content = "import sys  \r\nsys.stdout.buffer.write(open(__file__, 'rb').read())\t \r\n# déjà vu ✓   \r\n#"

    result = agent.script("python", content)

    assert result["status"] == "completed", result
    assert result["stdout"] == content


def test_a_shell_script_runs_byte_for_byte(agent):
    content = 'cat "$0"   \n# trailing spaces and tabs \t\n# ünïcödé\n\n\n# no newline at the end  '

    result = agent.script("sh", content)

    assert result["stdout"] == content


def test_a_parameter_with_shell_metacharacters_arrives_verbatim(agent):
    result = agent.script("bash", "printf '%s' \"$RMM_PARAM_X\"", env={"RMM_PARAM_X": METACHARACTERS})

    assert result["status"] == "completed", result
    assert result["exitCode"] == 0
    assert result["stdout"] == METACHARACTERS


def test_the_script_text_is_not_a_template(agent):
    # A parameter's name written in the script is left as the script wrote it: nothing is substituted.
    result = agent.script("sh", "echo '{RMM_PARAM_X} %RMM_PARAM_X%'", env={"RMM_PARAM_X": "value"})

    assert result["stdout"] == "{RMM_PARAM_X} %RMM_PARAM_X%\n"


def test_the_agents_own_environment_is_passed_on(agent, monkeypatch):
    monkeypatch.setenv("RMM_TEST_INHERITED", "from the agent")

    result = agent.script("sh", 'printf "%s|%s" "$RMM_TEST_INHERITED" "$RMM_PARAM_Y"', env={"RMM_PARAM_Y": "y"})

    assert result["stdout"] == "from the agent|y"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"A=B": "x"}, "cannot be an environment variable's name"),
        ({"": "x"}, "cannot be an environment variable's name"),
        ({"A\x00B": "x"}, "cannot be an environment variable's name"),
        ({"X": 3}, "the value of X must be text"),
        ({"X": None}, "the value of X must be text"),
        ({"X": "a\x00b"}, "the value of X must be text without NUL"),
        (["X"], "env must be an object"),
    ],
)
def test_an_invalid_environment_is_refused_and_nothing_runs(agent, tmp_path, env, message):
    witness = tmp_path / "ran"

    result = agent.script("sh", f"touch '{witness}'", env=env)

    assert result["status"] == "failed"
    assert result["exitCode"] is None
    assert message in result["error"]
    assert not witness.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"language": "perl", "content": "print 1"}, "unknown script language: 'perl'"),
        ({"language": "sh"}, "content is missing"),
        ({"language": "sh", "content": "echo", "timeoutSeconds": 0}, "timeoutSeconds must be a whole number"),
        ({"language": "sh", "content": "echo", "timeoutSeconds": True}, "timeoutSeconds must be a whole number"),
        ({"language": "sh", "content": "echo", "timeoutSeconds": "10"}, "timeoutSeconds must be a whole number"),
        ({"language": "sh", "content": "echo\x00"}, "NUL"),
    ],
)
def test_a_malformed_payload_is_refused(agent, payload, message):
    result = agent.run("script", payload)

    assert result["status"] == "failed"
    assert message in result["error"]


@pytest.mark.skipif(sys.platform == "win32", reason="cmd exists on Windows")
def test_cmd_on_this_machine_fails_naming_the_missing_interpreter(agent):
    result = agent.script("cmd", "echo hello")

    assert result["status"] == "failed"
    assert result["exitCode"] is None
    assert result["error"] == "no interpreter for cmd scripts on this machine: cmd.exe exists only on Windows"


@pytest.mark.skipif(shutil.which("pwsh") is not None, reason="PowerShell is installed here")
def test_powershell_without_pwsh_fails_naming_it(agent):
    result = agent.script("powershell", "Write-Output hello")

    assert result["status"] == "failed"
    assert result["error"] == "no interpreter for powershell scripts on this machine: pwsh is not on PATH"


def test_stdin_is_the_null_device(agent):
    # A script that reads its input would otherwise wait for ever.
    result = agent.script("sh", "cat; echo read-all", timeout=3)

    assert result["status"] == "completed"
    assert result["stdout"] == "read-all\n"


def test_the_script_runs_in_the_work_directory_from_a_private_file_removed_afterwards(tmp_path):
    agent = Agent(tmp_path, command_workdir=str(tmp_path / "work"))
    try:
        result = agent.script("sh", 'pwd; stat -c %a "$0"; stat -c %a "$(dirname "$0")"')
    finally:
        agent.executor.shutdown(timeout=5)

    workdir, file_mode, directory_mode = result["stdout"].splitlines()
    assert os.path.realpath(workdir) == os.path.realpath(tmp_path / "work")
    assert file_mode == "600"
    assert directory_mode == "700"
    assert list((tmp_path / "work").iterdir()) == []


def test_the_default_work_directory_is_in_the_state_directory(agent):
    result = agent.script("sh", "pwd")

    assert os.path.realpath(result["stdout"].strip()) == os.path.realpath(agent.state.path / "work")


# interpreters per platform (Windows resolved against a made-up PATH: this machine is not Windows) ---------------


def lookup(found: dict[str, str]):
    return found.get


def test_windows_python_is_the_py_launcher_then_python():
    assert interpreter_command(
        "python", windows=True, which=lookup({"py": r"C:\Windows\py.exe", "python": r"C:\Python312\python.exe"})
    ) == [r"C:\Windows\py.exe", "-3"]
    assert interpreter_command("python", windows=True, which=lookup({"python": r"C:\Python312\python.exe"})) == [
        r"C:\Python312\python.exe"
    ]


def test_windows_store_python_alias_is_not_an_interpreter():
    stub = r"C:\Users\svc\AppData\Local\Microsoft\WindowsApps\python.exe"

    with pytest.raises(MissingInterpreter, match="neither py nor python is on PATH"):
        interpreter_command("python", windows=True, which=lookup({"python": stub}))


def test_windows_powershell_and_cmd_commands():
    powershell = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"

    assert interpreter_command("powershell", windows=True, which=lookup({"powershell.exe": powershell})) == [
        powershell,
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-File",
    ]
    assert interpreter_command(
        "cmd", windows=True, which=lookup({}), environ={"ComSpec": r"C:\Windows\system32\cmd.exe"}
    ) == [r"C:\Windows\system32\cmd.exe", "/d", "/c"]


def test_sh_is_not_looked_for_on_windows():
    with pytest.raises(MissingInterpreter, match="/bin/sh does not exist"):
        interpreter_command("sh", windows=True, which=lookup({"sh": r"C:\Git\bin\sh.exe"}))


def test_posix_powershell_is_pwsh_and_python_is_python3():
    assert interpreter_command("powershell", windows=False, which=lookup({"pwsh": "/usr/bin/pwsh"})) == [
        "/usr/bin/pwsh",
        "-NoProfile",
        "-NonInteractive",
        "-File",
    ]
    assert interpreter_command("python", windows=False, which=lookup({"python3": "/usr/bin/python3"})) == [
        "/usr/bin/python3"
    ]
    with pytest.raises(MissingInterpreter, match="python3 is not on PATH"):
        interpreter_command("python", windows=False, which=lookup({"python": "/usr/bin/python"}))
