"""The state directory (rmm_agent.state): private modes, atomic writes, identity, backlog, outbox, running markers."""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from pathlib import Path

import pytest

from rmm_agent.state import Backlog, Identity, StateDir, StateError, write_private

TOKEN = "rmm_" + "ab" * 32
NEW_TOKEN = "rmm_" + "cd" * 32


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def make_identity(token: str = TOKEN) -> Identity:
    return Identity(
        server="https://rmm.example.com",
        agent_id=str(uuid.uuid4()),
        device_id=str(uuid.uuid4()),
        org_id=str(uuid.uuid4()),
        site_id=str(uuid.uuid4()),
        auth_token=token,
        ca_file=None,
        config={"heartbeatIntervalSeconds": 60, "metricsCollectionIntervalSeconds": 30},
        enrolled_at="2026-12-06T21:00:00Z",
    )


def all_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()]


def sample(number: int) -> dict:
    return {"timestamp": f"2026-12-06T{number // 60 % 24:02d}:{number % 60:02d}:00Z", "cpuPercent": float(number)}


# modes and atomic writes ------------------------------------------------------------------------------------------


def test_the_directory_is_created_0700_with_its_subdirectories(tmp_path):
    state = StateDir(tmp_path / "nested" / "state")

    assert mode(state.path) == 0o700
    assert mode(state.path / "outbox") == 0o700
    assert mode(state.path / "running") == 0o700


def test_a_directory_open_to_others_is_tightened_with_a_warning(tmp_path, caplog):
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)  # noqa: S103 -- the state directory left open to others, as under test

    with caplog.at_level(logging.WARNING, logger="rmm_agent.state"):
        StateDir(directory)

    assert mode(directory) == 0o700
    assert "was mode 0755" in caplog.text


def test_an_identity_file_open_to_others_is_tightened(tmp_path):
    StateDir(tmp_path).save_identity(make_identity())
    os.chmod(tmp_path / "identity.json", 0o644)

    StateDir(tmp_path)

    assert mode(tmp_path / "identity.json") == 0o600


def test_every_file_written_is_0600(tmp_path):
    state = StateDir(tmp_path)
    command_id = str(uuid.uuid4())
    state.save_identity(make_identity())
    state.save_status({"lastContactAt": "2026-12-06T21:00:00Z"})
    state.backlog.append(sample(1))
    state.save_inventory_hash("disks", "0" * 64)
    state.outbox.put(command_id, {"status": "completed"})
    state.mark_running(str(uuid.uuid4()), {"type": "script"})

    files = all_files(tmp_path)

    assert len(files) == 6
    assert {mode(path) for path in files} == {0o600}


def test_files_are_0600_even_under_a_permissive_umask(tmp_path):
    previous = os.umask(0)
    try:
        write_private(tmp_path / "f", b"x")
    finally:
        os.umask(previous)

    assert mode(tmp_path / "f") == 0o600


def test_write_private_replaces_the_content_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "f.json"
    write_private(target, b"old")
    inode_before = os.stat(target).st_ino

    write_private(target, b"new")

    assert target.read_bytes() == b"new"
    # A new inode: the file was renamed over, not rewritten in place (where a reader could see half of it).
    assert os.stat(target).st_ino != inode_before
    assert [path.name for path in tmp_path.iterdir()] == ["f.json"]


def test_a_write_failing_midway_leaves_the_old_content_and_no_temporary_file(tmp_path):
    target = tmp_path / "f.json"
    write_private(target, b"old content")

    def chunks_then_failure():
        yield b"new content, first half"
        raise RuntimeError("serialisation failed")

    with pytest.raises(RuntimeError, match="serialisation failed"):
        write_private(target, chunks_then_failure())

    assert target.read_bytes() == b"old content"
    assert [path.name for path in tmp_path.iterdir()] == ["f.json"]


def test_a_status_that_cannot_be_serialised_leaves_the_old_one(tmp_path):
    state = StateDir(tmp_path)
    state.save_status({"lastError": "first"})

    with pytest.raises(TypeError):
        state.save_status({"lastError": object()})

    assert state.status() == {"lastError": "first"}


# identity ---------------------------------------------------------------------------------------------------------


def test_identity_is_none_before_enrollment(tmp_path):
    assert StateDir(tmp_path).identity() is None


def test_identity_round_trips_through_a_new_state_dir(tmp_path):
    identity = make_identity()
    identity.ca_file = "/etc/rmm/ca.pem"
    StateDir(tmp_path).save_identity(identity)

    assert StateDir(tmp_path).identity() == identity


def test_the_token_is_not_in_the_identity_repr(tmp_path):
    assert TOKEN not in repr(make_identity())
    assert make_identity().token_hint() == "rmm_abab…"


def test_replace_token_leaves_no_old_token_in_any_file_of_the_directory(tmp_path):
    state = StateDir(tmp_path)
    state.save_identity(make_identity())
    state.save_status({"lastError": None})

    state.replace_token(NEW_TOKEN)

    contents = b"".join(path.read_bytes() for path in all_files(tmp_path))
    assert TOKEN.encode() not in contents
    assert NEW_TOKEN.encode() in contents
    assert StateDir(tmp_path).identity().auth_token == NEW_TOKEN


def test_replace_token_without_identity_is_an_error(tmp_path):
    with pytest.raises(StateError, match="not enrolled"):
        StateDir(tmp_path).replace_token(NEW_TOKEN)


def test_a_damaged_identity_file_is_a_state_error_that_says_what_to_do(tmp_path):
    (tmp_path / "identity.json").write_text('{"server": "https://x"}')

    with pytest.raises(StateError, match=r"lacks agent_id.*enroll again with --force"):
        StateDir(tmp_path).identity()


# status and inventory hashes ---------------------------------------------------------------------------------------


def test_status_is_empty_until_saved_then_round_trips(tmp_path):
    state = StateDir(tmp_path)
    assert state.status() == {}

    state.save_status({"lastContactAt": "2026-12-06T21:00:00Z", "backlogSize": 3, "pid": 42})

    assert StateDir(tmp_path).status() == {"lastContactAt": "2026-12-06T21:00:00Z", "backlogSize": 3, "pid": 42}


def test_inventory_hashes_accumulate_per_kind_and_clear(tmp_path):
    state = StateDir(tmp_path)
    state.save_inventory_hash("disks", "a" * 64)
    state.save_inventory_hash("software", "b" * 64)
    state.save_inventory_hash("disks", "c" * 64)

    assert StateDir(tmp_path).inventory_hashes() == {"disks": "c" * 64, "software": "b" * 64}

    state.clear_inventory_hashes()

    assert state.inventory_hashes() == {}
    state.clear_inventory_hashes()  # clearing twice is fine


# backlog ----------------------------------------------------------------------------------------------------------


def test_the_backlog_is_bounded_dropping_the_oldest(tmp_path, monkeypatch):
    monkeypatch.setattr(Backlog, "LIMIT", 5)
    state = StateDir(tmp_path)

    for number in range(8):
        state.backlog.append(sample(number))

    assert len(state.backlog) == 5
    assert state.backlog.peek(10) == [sample(number) for number in range(3, 8)]


def test_the_real_limit_is_a_day_at_one_sample_a_minute():
    assert Backlog.LIMIT == 1440


def test_peek_gives_the_oldest_and_drop_removes_them(tmp_path):
    backlog = StateDir(tmp_path).backlog
    for number in range(5):
        backlog.append(sample(number))

    assert backlog.peek(2) == [sample(0), sample(1)]
    backlog.drop(2)
    assert backlog.peek(10) == [sample(2), sample(3), sample(4)]
    backlog.drop(0)
    assert len(backlog) == 3
    backlog.drop(10)
    assert len(backlog) == 0
    assert backlog.peek() == []


def test_the_backlog_persists_across_a_new_state_dir(tmp_path):
    state = StateDir(tmp_path)
    for number in range(4):
        state.backlog.append(sample(number))
    state.backlog.drop(1)

    assert StateDir(tmp_path).backlog.peek() == [sample(1), sample(2), sample(3)]


def test_a_corrupt_backlog_is_moved_aside_with_a_warning(tmp_path, caplog):
    (tmp_path / "backlog.json").write_bytes(b'[{"timestamp": "2026-12-06T21:0')

    with caplog.at_level(logging.WARNING, logger="rmm_agent.state"):
        state = StateDir(tmp_path)

    assert len(state.backlog) == 0
    aside = [path.name for path in tmp_path.iterdir() if path.name.startswith("backlog.json.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes() == b'[{"timestamp": "2026-12-06T21:0'
    assert "moved aside" in caplog.text
    state.backlog.append(sample(1))  # and it works afterwards
    assert StateDir(tmp_path).backlog.peek() == [sample(1)]


def test_a_backlog_of_the_wrong_shape_is_moved_aside(tmp_path):
    (tmp_path / "backlog.json").write_text('{"samples": []}')

    assert len(StateDir(tmp_path).backlog) == 0
    assert any(path.name.startswith("backlog.json.corrupt-") for path in tmp_path.iterdir())


# outbox -----------------------------------------------------------------------------------------------------------


def test_outbox_put_pending_remove(tmp_path):
    outbox = StateDir(tmp_path).outbox
    command_id = str(uuid.uuid4())
    result = {"status": "completed", "exitCode": 0, "stdout": "hello\n", "stderr": "", "durationMs": 5, "error": None}

    outbox.put(command_id, result)

    assert command_id in outbox
    assert len(outbox) == 1
    assert outbox.pending() == {command_id: result}

    outbox.remove(command_id)

    assert command_id not in outbox
    assert len(outbox) == 0
    assert outbox.pending() == {}
    outbox.remove(command_id)  # removing twice is fine


def test_outbox_pending_is_oldest_first(tmp_path):
    outbox = StateDir(tmp_path).outbox
    ids = [str(uuid.uuid4()) for _ in range(4)]
    for age, command_id in enumerate(ids):
        outbox.put(command_id, {"status": "completed", "exitCode": age})
        # mtimes set explicitly: several writes within one filesystem timestamp tick must still come out in order
        stamp = 1_700_000_000 + age
        os.utime(tmp_path / "outbox" / f"{command_id}.json", (stamp, stamp))
    os.utime(tmp_path / "outbox" / f"{ids[0]}.json", (1_800_000_000, 1_800_000_000))

    assert list(outbox.pending()) == [ids[1], ids[2], ids[3], ids[0]]


def test_the_outbox_persists_across_a_new_state_dir(tmp_path):
    command_id = str(uuid.uuid4())
    StateDir(tmp_path).outbox.put(command_id, {"status": "failed", "error": "boom"})

    outbox = StateDir(tmp_path).outbox

    assert outbox.pending() == {command_id: {"status": "failed", "error": "boom"}}


@pytest.mark.parametrize("bad_id", ["../identity", "x", "", "0" * 36, str(uuid.uuid4()) + "/..", "a/b"])
def test_the_outbox_refuses_an_id_that_is_not_a_uuid(tmp_path, bad_id):
    state = StateDir(tmp_path)

    with pytest.raises(ValueError, match="not a command id"):
        state.outbox.put(bad_id, {"status": "completed"})
    with pytest.raises(ValueError, match="not a command id"):
        state.mark_running(bad_id, {})

    assert bad_id not in state.outbox
    assert all_files(tmp_path) == []


def test_a_corrupt_outbox_entry_is_moved_aside_and_the_others_still_come(tmp_path):
    outbox = StateDir(tmp_path).outbox
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    outbox.put(good, {"status": "completed"})
    (tmp_path / "outbox" / f"{bad}.json").write_text("{not json")

    assert outbox.pending() == {good: {"status": "completed"}}
    assert any(path.name.startswith(f"{bad}.json.corrupt-") for path in (tmp_path / "outbox").iterdir())


# running markers --------------------------------------------------------------------------------------------------


def test_running_markers_are_set_listed_and_cleared(tmp_path):
    state = StateDir(tmp_path)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    command = {"id": first, "type": "script", "payload": {"language": "bash", "content": "sleep 9"}}
    state.mark_running(first, command)
    state.mark_running(second, {"id": second, "type": "reboot", "payload": {}})

    assert StateDir(tmp_path).running()[first] == command
    assert set(state.running()) == {first, second}

    state.clear_running(first)
    state.clear_running(first)  # clearing twice is fine

    assert list(state.running()) == [second]


def test_a_damaged_running_marker_still_names_its_command(tmp_path):
    state = StateDir(tmp_path)
    command_id = str(uuid.uuid4())
    (tmp_path / "running" / f"{command_id}.json").write_text("{")

    assert state.running() == {command_id: {"id": command_id}}


def test_files_written_by_the_state_are_json(tmp_path):
    state = StateDir(tmp_path)
    state.save_identity(make_identity())

    stored = json.loads((tmp_path / "identity.json").read_text())

    assert stored["auth_token"] == TOKEN
    assert stored["server"] == "https://rmm.example.com"


def test_only_one_run_lock_is_granted_until_its_holder_goes(tmp_path):
    first = StateDir(tmp_path)
    assert first.acquire_run_lock() is True

    assert StateDir(tmp_path).acquire_run_lock() is False

    os.close(first._run_lock)  # what the holder's exit does
    assert StateDir(tmp_path).acquire_run_lock() is True
