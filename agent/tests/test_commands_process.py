"""Running a process tree (rmm_agent.commands.process) with real processes: the timeout kills every process the run
started, output is bounded at the protocol's 1 MiB in valid UTF-8, and nothing a script leaves behind hangs the
agent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from rmm_agent.commands.executor import outcome_result
from rmm_agent.commands.process import (
    EOF_GRACE_SECONDS,
    STREAM_LIMIT_BYTES,
    BoundedCapture,
    output_text,
    run_process,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the scripts here are POSIX shell")

MARKER = re.compile(r"\n\[output truncated by the agent: (\d+) bytes more\]\Z")


def bash(script: str, *, timeout: float = 10, abort: threading.Event | None = None, cwd: str = "/"):
    return run_process(["bash", "-c", script], cwd=cwd, env=dict(os.environ), timeout_seconds=timeout, abort=abort)


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for init to reap it does not run)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_gone(pids: list[int], seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not gone(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if not gone(pid)]


def pids_in(output: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"^(\w+) (\d+)$", output, re.MULTILINE)}


# the timeout ------------------------------------------------------------------------------------------------------


def test_the_timeout_kills_the_whole_tree_with_the_children_that_left_the_group():
    # A process of the same user that the run did not start.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    script = (
        "echo main $$\n"
        "sleep 60 & echo child $!\n"
        # setsid: a new session and process group, so killing the run's group does not reach it.
        "setsid sleep 60 & echo escaped $!\n"
        # The subshell exits at once: its setsid child is re-parented to init and is nobody's descendant any more.
        "(setsid sleep 60 & echo orphan $!)\n"
        "bash -c 'sleep 60 & echo grandchild $!; wait' &\n"
        "sleep 0.3; echo started\n"
        "sleep 60\n"
    )
    try:
        outcome = bash(script, timeout=1.5)

        assert outcome.timed_out
        assert outcome.exit_code is None
        assert 1400 <= outcome.duration_ms < 4000
        pids = pids_in(outcome.stdout)
        assert set(pids) == {"main", "child", "escaped", "orphan", "grandchild"}
        assert "started" in outcome.stdout  # the output so far is kept
        assert wait_until_gone(list(pids.values())) == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_run_that_ends_in_time_is_not_marked_timed_out():
    outcome = bash("sleep 0.2; echo done", timeout=5)

    assert not outcome.timed_out
    assert outcome.exit_code == 0
    assert outcome.stdout == "done\n"
    assert 200 <= outcome.duration_ms < 2000


def test_abort_kills_the_tree_and_says_so():
    abort = threading.Event()
    threading.Timer(0.5, abort.set).start()

    started = time.monotonic()
    outcome = bash("sleep 30 & echo child $!; sleep 30", timeout=60, abort=abort)

    assert outcome.aborted and not outcome.timed_out
    assert outcome.exit_code is None
    assert time.monotonic() - started < 3
    assert wait_until_gone(list(pids_in(outcome.stdout).values())) == []


def test_a_process_killed_from_outside_reports_the_signal():
    outcome = bash("kill -9 $$")

    assert outcome.exit_code == -signal.SIGKILL


# output -----------------------------------------------------------------------------------------------------------


def test_output_over_the_limit_is_cut_with_a_marker_counting_what_is_left_out():
    started = time.monotonic()
    outcome = bash("head -c 3000000 /dev/zero | tr '\\0' a")

    assert time.monotonic() - started < 5
    assert outcome.exit_code == 0
    assert len(outcome.stdout.encode("utf-8")) <= STREAM_LIMIT_BYTES
    more = MARKER.search(outcome.stdout)
    assert more is not None
    shown = outcome.stdout[: more.start()]
    assert set(shown) == {"a"}
    assert len(shown) + int(more.group(1)) == 3_000_000
    assert len(shown) > STREAM_LIMIT_BYTES - 100  # only the marker's room is given up


def test_both_streams_are_drained_at_once():
    # 3 MB to stderr before anything to stdout: a reader of stdout alone would leave the child blocked on stderr.
    outcome = bash("head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 3000000 /dev/zero | tr '\\0' o", timeout=10)

    assert not outcome.timed_out
    assert outcome.exit_code == 0
    for text, letter in ((outcome.stdout, "o"), (outcome.stderr, "e")):
        assert len(text.encode("utf-8")) <= STREAM_LIMIT_BYTES
        more = MARKER.search(text)
        assert more is not None
        assert set(text[: more.start()]) == {letter}


def test_multibyte_characters_at_the_cut_stay_whole():
    # "é" is two bytes and "✓" three: 1 MiB falls inside a character for one of the two odd offsets.
    for character, prefix in (("é", "x"), ("✓", "xy"), ("✓", "x"), ("😀", "xyz")):
        outcome = bash(
            f"printf '{prefix}'; for i in $(seq 1 5); do head -c 300000 /dev/zero; done | tr '\\0' '.' "
            f"| sed 's/./{character}/g'"
        )

        encoded = outcome.stdout.encode("utf-8")  # raises if a character were cut (a lone surrogate cannot be)
        assert len(encoded) <= STREAM_LIMIT_BYTES
        more = MARKER.search(outcome.stdout)
        assert more is not None
        shown = outcome.stdout[: more.start()]
        assert "\ufffd" not in shown
        assert shown.startswith(prefix)
        assert set(shown[len(prefix) :]) == {character}
        total = len(prefix) + 1_500_000 * len(character.encode("utf-8"))
        assert len(shown.encode("utf-8")) + int(more.group(1)) == total


def test_binary_output_on_both_streams_keeps_the_result_under_the_servers_request_limit():
    # JSON writes each control character as six bytes: 1 MiB of them on each stream would be a 12 MiB result
    # body, which the server (5 MiB, DATA_UPLOAD_MAX_MEMORY_SIZE) would refuse however often it is posted.
    outcome = bash("head -c 3000000 /dev/zero | tr '\\0' '\\1' >&2; head -c 3000000 /dev/zero | tr '\\0' '\\2'")
    result = outcome_result(outcome, timeout_seconds=10)

    body = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(body) < 5 * 1024 * 1024
    for text, character in ((outcome.stdout, "\x02"), (outcome.stderr, "\x01")):
        assert len(text.encode("utf-8")) <= STREAM_LIMIT_BYTES
        more = MARKER.search(text)
        assert more is not None
        shown = text[: more.start()]
        assert set(shown) == {character}
        assert len(shown) + int(more.group(1)) == 3_000_000


def test_bytes_that_are_not_utf8_and_nul_become_replacement_characters():
    outcome = bash("printf 'a\\377b\\000c'")

    assert outcome.stdout == "a\ufffdb\ufffdc"


def test_output_text_keeps_within_the_limit_when_replacements_grow_the_text():
    # 1,000 invalid bytes fit the raw limit but become 3,000 bytes of U+FFFD.
    text = output_text(b"\xff" * 1000, 1000, limit=1024)

    assert len(text.encode("utf-8")) <= 1024
    more = MARKER.search(text)
    assert more is not None
    shown = text[: more.start()]
    assert set(shown) == {"\ufffd"}
    assert len(shown) + int(more.group(1)) == 1000


def test_output_text_leaves_a_fitting_output_whole():
    assert output_text("déjà vu\n".encode(), len("déjà vu\n".encode()), limit=1024) == "déjà vu\n"


def test_a_capture_keeps_its_limit_and_counts_the_rest():
    capture = BoundedCapture(limit=200)
    for _ in range(10):
        capture.feed(b"z" * 100)

    text = capture.seal()
    capture.feed(b"late")  # a reader left behind: sealed captures take nothing more

    more = MARKER.search(text)
    assert more is not None
    assert len(text.encode()) <= 200
    assert len(text[: more.start()]) + int(more.group(1)) == 1000
    assert capture.total == 1000


# what a script leaves behind --------------------------------------------------------------------------------------


def test_a_background_grandchild_holding_stdout_does_not_hang_the_run():
    started = time.monotonic()
    outcome = bash("sleep 30 & echo pid $!; echo done")
    elapsed = time.monotonic() - started
    pid = pids_in(outcome.stdout)["pid"]
    try:
        assert outcome.exit_code == 0
        assert outcome.stdout.endswith("done\n")
        assert outcome.duration_ms < 1000  # the script's own run, not the wait for the pipe
        assert elapsed < EOF_GRACE_SECONDS + 2
        # A script may start a service on purpose: what outlives a normal exit is left running.
        assert not gone(pid)
    finally:
        os.kill(pid, signal.SIGKILL)


def test_a_program_that_cannot_start_is_an_error():
    from rmm_agent.commands.process import ProcessStartError

    with pytest.raises(ProcessStartError, match="could not start /nonexistent/program"):
        run_process(["/nonexistent/program"], cwd="/", env={}, timeout_seconds=1)
