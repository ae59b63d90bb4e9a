"""The agent's state directory: identity and token, status, metrics backlog, inventory hashes, result outbox.

Layout (every file 0600, the directories 0700, every write atomic through write_private):

    identity.json          the enrollment answer: server, agent/device ids, the bearer token, ca file, config
    status.json            what `rmm-agent status` shows (written by the run loop after every contact attempt)
    backlog.json           metrics samples not yet accepted by the server (a JSON list, oldest first, bounded)
    inventory.json         kind → content hash of the last inventory upload the server acknowledged
    outbox/<id>.json       a command result not yet acknowledged by the server, one file per command id
    running/<id>.json      a command started and not finished, so a restart can report it as failed
    run.lock               held (locked, empty) by the one `rmm-agent run` using the directory

A file is never edited in place: a crash (or a full disk) leaves either the old or the new content, never half.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_POSIX = os.name == "posix"


class StateError(Exception):
    """A state file that the agent cannot do without (identity.json) is unreadable or malformed."""


def write_private(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Replace `path` atomically with `data` (bytes, or chunks of bytes), readable only by this user (0600).

    The bytes go to a new file in the same directory (so os.replace is a rename on one filesystem), created with
    O_EXCL and mode 0600 from the start (never a window where a wider umask shows it to others), fsynced, then
    renamed over the target; on POSIX the directory is fsynced too so the rename survives a power cut. If anything
    fails before the rename, the temporary file is removed and the target keeps its old content.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            if isinstance(data, (bytes, bytearray, memoryview)):
                stream.write(data)
            else:
                for chunk in data:
                    stream.write(chunk)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    if not _POSIX:
        return  # Windows cannot open a directory for fsync; NTFS journals the rename itself.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def default_state_dir() -> Path:
    """Where the agent keeps its state when --state-dir is not given.

    %ProgramData%\\rmm-agent on Windows; /var/lib/rmm-agent as root (the systemd unit's StateDirectory); otherwise
    $XDG_STATE_HOME/rmm-agent or ~/.local/state/rmm-agent (a user trying the agent without root).
    """
    if sys.platform == "win32":
        # Windows' environment is case-insensitive; the variable is spelt ProgramData on every version.
        return Path(os.environ.get("PROGRAMDATA") or r"C:\ProgramData") / "rmm-agent"
    if os.geteuid() == 0:
        return Path("/var/lib/rmm-agent")
    state_home = os.environ.get("XDG_STATE_HOME")
    if state_home and os.path.isabs(state_home):
        return Path(state_home) / "rmm-agent"
    return Path.home() / ".local" / "state" / "rmm-agent"


def _make_private_directory(path: Path) -> None:
    """Create `path` 0700, or tighten it to 0700 (with a warning) if it exists readable by others."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _POSIX:
        return  # Windows: the ACLs are the installer's job (agent/windows-service.md).
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("state directory %s was mode %04o, readable by others; changed to 0700", path, mode)
        os.chmod(path, 0o700)


def _tighten_file(path: Path) -> None:
    """A state file left readable by others (copied in by hand, an old version) is made 0600, with a warning."""
    if not _POSIX:
        return
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        logger.warning("state file %s was mode %04o, readable by others; changed to 0600", path, mode)
        os.chmod(path, 0o600)


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _move_aside(path: Path, problem: str) -> None:
    """Keep a corrupt file for a person to look at (never delete evidence) and start afresh without it."""
    aside = path.with_name(f"{path.name}.corrupt-{_utc_stamp()}")
    logger.warning("%s is unusable (%s); moved aside to %s", path, problem, aside.name)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, aside)


# Command ids are UUIDs (the server's primary keys); anything else must never become part of a file name.
_COMMAND_ID = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def _checked_command_id(command_id: str) -> str:
    if not isinstance(command_id, str) or not _COMMAND_ID.match(command_id):
        raise ValueError(f"not a command id (a UUID): {command_id!r}")
    return command_id


@dataclass
class Identity:
    """Who this agent is to the server: the enrollment answer and where the server is."""

    server: str
    agent_id: str
    device_id: str
    org_id: str
    site_id: str
    auth_token: str = field(repr=False)  # never in a log line or a traceback's locals repr
    ca_file: str | None
    config: dict
    enrolled_at: str

    def token_hint(self) -> str:
        """A prefix of the token to tell tokens apart in `status` without showing one ("rmm_1a2b…")."""
        return self.auth_token[:8] + "…"


_IDENTITY_FIELDS = ("server", "agent_id", "device_id", "org_id", "site_id", "auth_token", "enrolled_at")


class Backlog:
    """Metrics samples the server has not accepted yet: oldest first, bounded, kept in memory and on disk.

    One JSON list rewritten atomically on each change. Measured on this machine at the bound (1,440 samples of
    ~200 bytes, ≈300 KB with 12-digit network counters): an append costs ~4.3 ms (serialising ~2.9 ms, the rest
    write + fsync), once a minute while the server is unreachable; cheap enough that an append-only log with its
    torn-tail handling is not worth it.
    """

    LIMIT = 1440  # 24 h at one sample a minute

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._samples: list[dict] = self._load()
        self._dropping = False

    def _load(self) -> list[dict]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            samples = json.loads(raw)
        except ValueError as exc:
            _move_aside(self.path, f"not JSON: {exc}")
            return []
        if not isinstance(samples, list) or not all(isinstance(sample, dict) for sample in samples):
            _move_aside(self.path, "not a list of samples")
            return []
        _tighten_file(self.path)
        return samples[-self.LIMIT :]

    def _save(self) -> None:
        write_private(self.path, _dump(self._samples))

    def append(self, sample: dict) -> None:
        """Add a sample (wire metrics + "timestamp"); past LIMIT the oldest are dropped."""
        with self._lock:
            self._samples.append(sample)
            overflow = len(self._samples) - self.LIMIT
            if overflow > 0:
                # Once per outage, not once a minute for as long as it lasts.
                if not self._dropping:
                    logger.warning("metrics backlog full (%d samples): the oldest are being dropped", self.LIMIT)
                    self._dropping = True
                del self._samples[:overflow]
            self._save()

    def peek(self, n: int = 1000) -> list[dict]:
        """The oldest `n` samples (a copy of the list; the samples themselves are not to be changed)."""
        with self._lock:
            return list(self._samples[: max(n, 0)])

    def drop(self, n: int) -> None:
        """Remove the oldest `n` samples, after the server acknowledged them."""
        if n <= 0:
            return
        with self._lock:
            del self._samples[:n]
            self._dropping = False
            self._save()

    def __len__(self) -> int:
        with self._lock:
            return len(self._samples)


class Outbox:
    """Command results the server has not acknowledged yet, one file per command id, oldest first (by mtime)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        _make_private_directory(directory)

    def _file(self, command_id: str) -> Path:
        return self.directory / f"{_checked_command_id(command_id)}.json"

    def put(self, command_id: str, result: dict) -> None:
        """Store the wire result body of a command (replacing an earlier one for the same id)."""
        data = _dump(result)
        with self._lock:
            write_private(self._file(command_id), data)

    def pending(self) -> dict[str, dict]:
        """Command id → result, oldest first. A corrupt file is moved aside with a warning."""
        with self._lock:
            return _read_entries(self.directory)

    def remove(self, command_id: str) -> None:
        """Forget a result the server acknowledged (or refused for good); a missing one is fine."""
        with self._lock, contextlib.suppress(FileNotFoundError):
            os.unlink(self._file(command_id))

    def __contains__(self, command_id: object) -> bool:
        if not isinstance(command_id, str) or not _COMMAND_ID.match(command_id):
            return False
        return self._file(command_id).exists()

    def __len__(self) -> int:
        return len(_entry_files(self.directory))


def _entry_files(directory: Path) -> list[tuple[int, str, Path]]:
    """(mtime_ns, command id, path) of the well-named entry files of `directory`, oldest first."""
    entries = []
    for path in directory.glob("*.json"):
        command_id = path.name[: -len(".json")]
        if not _COMMAND_ID.match(command_id):
            continue
        try:
            entries.append((path.stat().st_mtime_ns, command_id, path))
        except FileNotFoundError:
            continue  # removed by another thread between the listing and the stat
    entries.sort()
    return entries


def _read_entries(directory: Path, *, keep_corrupt: bool = False) -> dict[str, dict]:
    """Command id → the entry's JSON object, oldest first. A damaged entry is moved aside with a warning, or with
    `keep_corrupt` stands as {"id": command_id}: a running marker's name alone is enough to report it failed."""
    entries: dict[str, dict] = {}
    for _, command_id, path in _entry_files(directory):
        try:
            value = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except ValueError as exc:
            value, problem = None, f"not JSON: {exc}"
        else:
            problem = "not a JSON object"
        if not isinstance(value, dict):
            if keep_corrupt:
                logger.warning("%s is unusable (%s); only its command id is known", path, problem)
                entries[command_id] = {"id": command_id}
            else:
                _move_aside(path, problem)
            continue
        entries[command_id] = value
    return entries


class StateDir:
    """The agent's state directory (module docstring): created 0700, every file in it 0600 and written atomically."""

    IDENTITY = "identity.json"
    STATUS = "status.json"
    BACKLOG = "backlog.json"
    INVENTORY = "inventory.json"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        _make_private_directory(self.path)
        for name in (self.IDENTITY, self.STATUS, self.BACKLOG, self.INVENTORY):
            _tighten_file(self.path / name)
        self._lock = threading.Lock()
        self._run_lock: int | None = None
        self.backlog = Backlog(self.path / self.BACKLOG)
        self.outbox = Outbox(self.path / "outbox")
        self._running_dir = self.path / "running"
        _make_private_directory(self._running_dir)

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    # identity -------------------------------------------------------------------------------------------------

    def identity(self) -> Identity | None:
        """The stored identity, or None when the agent is not enrolled. A damaged file raises StateError."""
        path = self.path / self.IDENTITY
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"{path} is not valid JSON ({exc}); enroll again with --force") from None
        if not isinstance(data, dict):
            raise StateError(f"{path} is not a JSON object; enroll again with --force")
        missing = [name for name in _IDENTITY_FIELDS if not isinstance(data.get(name), str) or not data[name]]
        if missing:
            raise StateError(f"{path} lacks {', '.join(missing)}; enroll again with --force")
        ca_file = data.get("ca_file")
        config = data.get("config")
        return Identity(
            server=data["server"],
            agent_id=data["agent_id"],
            device_id=data["device_id"],
            org_id=data["org_id"],
            site_id=data["site_id"],
            auth_token=data["auth_token"],
            ca_file=ca_file if isinstance(ca_file, str) and ca_file else None,
            config=config if isinstance(config, dict) else {},
            enrolled_at=data["enrolled_at"],
        )

    def save_identity(self, identity: Identity) -> None:
        """Store the identity (after enrollment, a config update or a token rotation)."""
        with self._lock:
            write_private(self.path / self.IDENTITY, _dump(asdict(identity)))

    def replace_token(self, token: str) -> None:
        """Token rotation: the identity file is replaced whole, so the old token is nowhere in the directory."""
        with self._lock:
            identity = self.identity()
            if identity is None:
                raise StateError("not enrolled: there is no token to replace")
            identity.auth_token = token
            write_private(self.path / self.IDENTITY, _dump(asdict(identity)))

    # status ---------------------------------------------------------------------------------------------------

    def status(self) -> dict:
        """What the run loop last recorded (lastContactAt, lastError, …); {} when nothing was recorded."""
        path = self.path / self.STATUS
        try:
            value = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:
            # Rewritten after every contact attempt: a damaged one is simply replaced by the next.
            logger.warning("%s is not valid JSON; ignored", path)
            return {}
        return value if isinstance(value, dict) else {}

    def save_status(self, status: dict) -> None:
        """Replace status.json with `status`."""
        data = _dump(status)
        write_private(self.path / self.STATUS, data)

    # inventory hashes -----------------------------------------------------------------------------------------

    def inventory_hashes(self) -> dict[str, str]:
        """Kind → content hash of the last upload the server acknowledged ({} = upload everything)."""
        path = self.path / self.INVENTORY
        try:
            value = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError:
            logger.warning("%s is not valid JSON; every inventory kind will be uploaded again", path)
            return {}
        if not isinstance(value, dict):
            return {}
        return {kind: digest for kind, digest in value.items() if isinstance(digest, str)}

    def save_inventory_hash(self, kind: str, digest: str) -> None:
        """Record that the server acknowledged the inventory of `kind` whose content hash is `digest`."""
        with self._lock:
            hashes = self.inventory_hashes()
            hashes[kind] = digest
            write_private(self.path / self.INVENTORY, _dump(hashes))

    def clear_inventory_hashes(self) -> None:
        """Forget every hash, so the next check uploads every kind (refresh_inventory, a new enrollment)."""
        with self._lock, contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / self.INVENTORY)

    # the run lock -------------------------------------------------------------------------------------------------

    def acquire_run_lock(self) -> bool:
        """Take the lock that lets one `rmm-agent run` use this directory; False when another process holds it.

        Two loops on one state would post the same backlog twice and run each command twice. The lock is the
        operating system's (flock / msvcrt.locking) on run.lock, so it goes away with the process, even killed.
        """
        descriptor = os.open(self.path / "run.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            return False
        self._run_lock = descriptor  # held, open, for the life of the process
        return True

    # running markers ------------------------------------------------------------------------------------------

    def mark_running(self, command_id: str, command: dict) -> None:
        """Record that `command` (as received) has started, before it runs."""
        write_private(self._running_dir / f"{_checked_command_id(command_id)}.json", _dump(command))

    def clear_running(self, command_id: str) -> None:
        """The command finished (its result is in the outbox); a missing marker is fine."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._running_dir / f"{_checked_command_id(command_id)}.json")

    def running(self) -> dict[str, dict]:
        """Command id → the command as received, for every command started and not finished, oldest first."""
        return _read_entries(self._running_dir, keep_corrupt=True)
