"""Running one process tree to its end, its timeout or the agent's stop, with a bounded capture of its output.

Every command that starts a program (a script, a power action, an update) goes through ``run_process``: the
program gets its own session (POSIX) or process group (Windows), stdin from the null device, and both output pipes
are drained by two threads so the child never blocks on a full pipe, however much it writes. At most
``STREAM_LIMIT_BYTES`` of each stream are kept (the protocol's limit for a result's stdout and stderr).

When the time is up, the whole tree is killed: the process group, every descendant psutil finds (a child that
called setsid leaves the group but keeps its parent), and every process that still carries this run's marker in its
environment (a grandchild whose parent already exited is re-parented to init and no longer a descendant; Jenkins
finds the processes of a build the same way).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

# The protocol's limit for a result's stdout and stderr, each, in UTF-8 bytes (agent-api.md, "Commands").
STREAM_LIMIT_BYTES = 1024 * 1024
# After the main process exits, how long a pipe that a background grandchild still holds open is read before the
# run ends without its end of file (the grandchild may live for days: a service a script started).
EOF_GRACE_SECONDS = 2.0
# The environment variable that marks every process of one run, so the processes that escaped the tree are found.
RUN_MARKER_VARIABLE = "RMM_AGENT_RUN_ID"

_READ_SIZE = 64 * 1024
# How often a waiting run looks at its abort event (the exit of the process itself is seen within 50 ms:
# Popen.wait polls at that pace).
_ABORT_POLL_SECONDS = 0.5
_WINDOWS = sys.platform == "win32"


class ProcessStartError(Exception):
    """The program could not be started at all (not found, not executable, a bad working directory)."""


@dataclass
class ProcessOutcome:
    """How a run ended: its exit code (None when it was killed), its output as text, and how long it took."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False  # killed because its time was up
    aborted: bool = False  # killed because the agent is stopping


def truncation_marker(more_bytes: int) -> str:
    """The line appended to an output cut at the protocol's limit."""
    return f"\n[output truncated by the agent: {more_bytes} bytes more]"


def json_size(text: str) -> int:
    """The bytes ``text`` takes as a JSON string in a result body (UTF-8, quotes left out)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2


def output_text(raw: bytes, total: int, limit: int = STREAM_LIMIT_BYTES, json_limit: int | None = None) -> str:
    """The first bytes of an output as text whose UTF-8 encoding is at most ``limit`` bytes, and whose JSON
    string at most ``json_limit`` (default: twice ``limit``).

    ``raw`` is the start of the output and ``total`` the size of all of it. Bytes that are not UTF-8 become U+FFFD,
    and so do NUL characters (the server cannot store them, and a result holding one would be refused whole). An
    output that does not fit is cut on a character boundary and ends with ``truncation_marker`` telling how many
    bytes of the output are not shown.

    The JSON bound is for the server's request size limit (DATA_UPLOAD_MAX_MEMORY_SIZE, 5 MiB): JSON writes a
    control character as six bytes (\\u0001), so 1 MiB of binary output could make a 6 MiB stream, and a result
    over the limit would be refused for ever. Two streams of at most 2 MiB of JSON each always fit.
    """
    json_limit = 2 * limit if json_limit is None else json_limit
    if total == len(raw):
        text = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
        if len(text.encode("utf-8")) <= limit and json_size(text) <= json_limit:
            return text
    # The marker's number is at most ``total``: reserving room for that many digits is always enough.
    longest_marker = truncation_marker(total)
    budget = max(0, limit - len(longest_marker.encode("utf-8")))
    json_budget = max(0, json_limit - json_size(longest_marker))

    def shown_within(end: int) -> tuple[str, int] | None:
        """The text of raw[:end] and how many raw bytes it stands for, if it fits both budgets."""
        # final=False leaves a character cut by ``end`` out of the text rather than turning it into U+FFFD.
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text = decoder.decode(raw[:end], final=False).replace("\x00", "\ufffd")
        if len(text.encode("utf-8")) > budget or json_size(text) > json_budget:
            return None
        return text, end - len(decoder.getstate()[0])

    # Valid UTF-8 text without many control characters fits at the first try. Replaced bytes grow (one byte
    # becomes three), control characters grow in JSON, and then the longest prefix that fits is searched for.
    end = min(len(raw), budget)
    fitted = shown_within(end)
    if fitted is None:
        low, high = 0, end
        while low < high:
            middle = (low + high + 1) // 2
            if shown_within(middle) is None:
                high = middle - 1
            else:
                low = middle
        fitted = shown_within(low)
        assert fitted is not None  # an empty prefix always fits
    text, shown = fitted
    return text + truncation_marker(total - shown)


class BoundedCapture:
    """One output stream of a run: keeps its first ``limit`` bytes, counts the rest, and takes no more once sealed
    (a reader left behind on Windows may still be reading when the result is made)."""

    def __init__(self, limit: int = STREAM_LIMIT_BYTES) -> None:
        self.limit = limit
        self.total = 0
        self._kept = bytearray()
        self._sealed = False
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        """Count a chunk read from the pipe, and keep what fits."""
        with self._lock:
            if self._sealed:
                return
            self.total += len(chunk)
            room = self.limit - len(self._kept)
            if room > 0:
                self._kept += chunk[:room]

    def seal(self) -> str:
        """Take no more output; the output so far as text (``output_text``)."""
        with self._lock:
            self._sealed = True
            raw, total = bytes(self._kept), self.total
        return output_text(raw, total, self.limit)


def _drain(pipe: IO[bytes], capture: BoundedCapture, stop: threading.Event) -> None:
    """Read a pipe to its end, or until ``stop`` is set (POSIX), feeding ``capture``; closes the pipe."""
    try:
        if _WINDOWS:
            # Windows cannot wait on a pipe with a timeout: the read blocks until the last writer closes it. A
            # reader still blocked when the run ends is left behind (a daemon thread) and ends with the writer.
            while True:
                chunk = pipe.read(_READ_SIZE)
                if not chunk:
                    return
                capture.feed(chunk)
        else:
            with selectors.DefaultSelector() as selector:
                selector.register(pipe, selectors.EVENT_READ)
                while not stop.is_set():
                    if not selector.select(timeout=0.2):
                        continue
                    chunk = os.read(pipe.fileno(), _READ_SIZE)
                    if not chunk:
                        return
                    capture.feed(chunk)
    except (OSError, ValueError) as exc:  # ValueError: a pipe closed under a left-behind reader
        logger.debug("reading a command's output stopped: %s", exc)
    finally:
        pipe.close()


def _marked_processes(marker: str) -> list[psutil.Process]:
    """Every process whose environment holds this run's marker (the ones that left the tree included)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(RUN_MARKER_VARIABLE) == marker:
                found.append(process)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, a kernel thread, or another user's process we may not read
    return found


def kill_process_tree(process: subprocess.Popen, marker: str) -> None:
    """Kill a run's process and everything it started; the process itself is reaped by its caller.

    The tree is collected before anything is killed: once a parent dies its children are re-parented and
    ``children()`` no longer finds them.
    """
    victims: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(process.pid).children(recursive=True):
            victims[child.pid] = child
    for marked in _marked_processes(marker):
        victims.setdefault(marked.pid, marked)
    if sys.platform == "win32":
        process.kill()
    else:
        try:
            # start_new_session made the process the leader of its own group: its id is the group's.
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            process.kill()
    # A process forked between the collection and the kills is found by a second look at the marker.
    for marked in _marked_processes(marker):
        victims.setdefault(marked.pid, marked)
    for victim in victims.values():
        # psutil checks the process's creation time: a pid reused meanwhile is not killed.
        with contextlib.suppress(psutil.Error):
            victim.kill()
    survivors = list(victims.values())
    deadline = time.monotonic() + 1.0
    while survivors and time.monotonic() < deadline:
        survivors = [victim for victim in survivors if _still_running(victim)]
        if survivors:
            time.sleep(0.02)
    for survivor in survivors:
        logger.warning("a process of a killed command survived: pid %s", survivor.pid)


def _still_running(process: psutil.Process) -> bool:
    # A killed process whose parent died too waits as a zombie for init to reap it (psutil.wait_procs would wait
    # for that); it no longer runs.
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_process(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    timeout_seconds: float,
    abort: threading.Event | None = None,
    limit: int = STREAM_LIMIT_BYTES,
) -> ProcessOutcome:
    """Run ``argv`` until it exits, its ``timeout_seconds`` pass or ``abort`` is set; then kill its whole tree.

    Raises ProcessStartError when the program cannot be started. A grandchild left running after the main process
    exited normally is not killed (a script may start a service on purpose); its hold on the output pipes is given
    ``EOF_GRACE_SECONDS``, then the run ends without it.
    """
    marker = uuid.uuid4().hex
    child_env = dict(env)
    child_env[RUN_MARKER_VARIABLE] = marker
    started = time.monotonic()
    # A tree of its own, so a timeout can kill all of it: a new session on POSIX, a new process group on Windows
    # (CREATE_NO_WINDOW: a console program started by a service gets no console window of its own).
    tree: dict[str, Any]
    if sys.platform == "win32":
        tree = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    else:
        tree = {"start_new_session": True}
    try:
        process = subprocess.Popen(  # noqa: S603 (running what the technician sent is the point)
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=child_env,
            bufsize=0,
            **tree,
        )
    except OSError as exc:
        raise ProcessStartError(f"could not start {argv[0]}: {exc.strerror or exc}") from exc

    stop_reading = threading.Event()
    captures = (BoundedCapture(limit), BoundedCapture(limit))
    pipes = (process.stdout, process.stderr)
    readers = []
    for name, pipe, capture in zip(("stdout", "stderr"), pipes, captures):
        assert pipe is not None  # both are PIPE
        reader = threading.Thread(
            target=_drain, args=(pipe, capture, stop_reading), name=f"rmm-command-{name}", daemon=True
        )
        reader.start()
        readers.append(reader)

    deadline = started + timeout_seconds
    timed_out = aborted = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        if abort is not None and abort.is_set():
            aborted = True
            break
        try:
            process.wait(timeout=min(remaining, _ABORT_POLL_SECONDS))
            break
        except subprocess.TimeoutExpired:
            continue
    if timed_out or aborted:
        kill_process_tree(process, marker)
        process.wait()
    ended = time.monotonic()

    eof_deadline = ended + EOF_GRACE_SECONDS
    for reader in readers:
        reader.join(max(0.0, eof_deadline - time.monotonic()))
    stop_reading.set()
    for reader in readers:
        reader.join(0.0 if _WINDOWS else 1.0)
    return ProcessOutcome(
        exit_code=None if (timed_out or aborted) else process.returncode,
        stdout=captures[0].seal(),
        stderr=captures[1].seal(),
        duration_ms=int((ended - started) * 1000),
        timed_out=timed_out,
        aborted=aborted,
    )
