"""The agent's run loop: heartbeats with metrics on the server's interval, buffers samples while the server cannot be
reached and sends them as backlog when it is back, rotates its token when told, keeps the inventory current and
hands the commands it receives to the executor, posting their results until the server acknowledges them.

Everything happens on one thread that sleeps on an Event between deadlines (the next sample, the next attempt after
a backoff, the next inventory check); the executor's threads wake it when a result is ready, and inventory is
collected on a worker thread of its own so a slow collector never delays a heartbeat.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import random
import threading
import time
from typing import Any

from rmm_agent import __version__
from rmm_agent.client import Client, ServerError, Unreachable
from rmm_agent.collectors import MetricsSampler, collect_inventory, content_hash, heartbeat_facts
from rmm_agent.commands import CommandExecutor
from rmm_agent.config import LocalConfig
from rmm_agent.state import StateDir

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NOT_ENROLLED = 3
EXIT_DECOMMISSIONED = 4

DEFAULT_INTERVAL_SECONDS = 60
# The most backlog samples one heartbeat may carry (agent-api.md).
BACKLOG_PER_HEARTBEAT = 1000
# After a heartbeat that left backlog behind, the next one goes this soon instead of a full interval later, so a
# day of samples (1,440) drains in two calls.
BACKLOG_DRAIN_DELAY_SECONDS = 2.0
# The longest the loop sleeps without looking at ``stop``: the caller's Event cannot wake our own, and a second
# of latency on shutdown costs nothing measurable (one wake-up a second).
STOP_POLL_SECONDS = 1.0
MIN_SLEEP_SECONDS = 0.01
# An inventory upload that failed is tried again this soon rather than after a whole check period (hours).
INVENTORY_RETRY_SECONDS = 300.0
SHUTDOWN_WAIT_SECONDS = 10.0

TOKEN_REFUSED = "the server no longer accepts this agent's token: re-enroll with --force"  # noqa: S105 - a message


def utc_timestamp(moment: dt.datetime | None = None) -> str:
    """ISO 8601 in UTC with a ``Z``, to the millisecond (the form backlog samples and the status file use)."""
    moment = moment or dt.datetime.now(dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Agent:
    """The run loop of an enrolled agent (``rmm-agent run``)."""

    def __init__(self, *, state: StateDir, config: LocalConfig, client: Client | None = None) -> None:
        self.state = state
        self.config = config
        self.client = client
        self._wake = threading.Event()
        # Serialises inventory uploads: the periodic check (worker thread) and a refresh_inventory command
        # (executor thread) would otherwise upload and save hashes at the same time.
        self._inventory_lock = threading.Lock()
        self._inventory_thread: threading.Thread | None = None
        self._inventory_due: float | None = None  # monotonic; None until the first successful heartbeat
        self._inventory_failed = False
        self._results_failed = False
        self._interval = float(DEFAULT_INTERVAL_SECONDS)
        self._failures = 0
        self._retry_at: float | None = None  # monotonic: no heartbeat before this (backoff, Retry-After)
        self._drain_at: float | None = None  # monotonic: an early heartbeat to send the rest of the backlog
        self._last_contact_at: str | None = None
        self._last_error: str | None = None
        self._last_error_at: str | None = None
        self._agent_id = ""
        self._next_sample = 0.0  # monotonic: when the next sample is taken (and sent, unless backing off)
        self._executor: CommandExecutor | None = None

    # ---- the loop ----

    def run(self, stop: threading.Event) -> int:
        """Heartbeat until ``stop`` is set; the exit code (0 stopped, 3 not enrolled, 4 decommissioned)."""
        identity = self.state.identity()
        if identity is None:
            log.error("this machine is not enrolled: run `rmm-agent enroll --server URL --key KEY` first")
            return EXIT_NOT_ENROLLED
        self._agent_id = identity.agent_id
        self._interval = _interval_of(identity.config)
        if self.client is None:
            self.client = Client(
                identity.server,
                token=identity.auth_token,
                ca_file=self.config.ca_file or identity.ca_file,
                proxy=self.config.proxy,
            )
        previous = self.state.status()
        self._last_contact_at = previous.get("lastContactAt")
        log.info(
            "agent %s running against %s, heartbeat every %.0f s",
            identity.agent_id,
            identity.server,
            self._interval,
        )
        sampler = MetricsSampler()
        self._executor = executor = CommandExecutor(
            state=self.state,
            config=self.config,
            refresh_inventory=self._upload_all_inventory,
            on_result=self._wake.set,
        )
        executor.recover()
        self._flush_outbox()

        self._next_sample = time.monotonic()  # the first heartbeat at once
        exit_code = EXIT_OK
        while not stop.is_set():
            try:
                outcome = self._step(sampler)
            except Exception as exc:
                # A fault of our own (a full disk, a collector's bug) must not end the agent: it is logged, and the
                # next attempt waits a backoff as after a failed contact, so a persistent fault cannot spin.
                log.exception("unexpected error in the run loop")
                self._back_off(f"unexpected error: {type(exc).__name__}: {exc}")
                outcome = "failed"
            if outcome == "decommissioned":
                exit_code = EXIT_DECOMMISSIONED
                break
            self._wake.wait(self._sleep_seconds())

        executor.shutdown(timeout=SHUTDOWN_WAIT_SECONDS)
        if exit_code == EXIT_OK:
            self._flush_outbox_quietly()
        self._save_status()
        log.info("agent stopped")
        return exit_code

    def _step(self, sampler: MetricsSampler) -> str:
        """What is due now: a sample (sent, or kept while backing off), a retry, the rest of the backlog, results
        the executor finished, an inventory check. The heartbeat's outcome, or "idle"."""
        now = time.monotonic()
        outcome = "idle"
        if now >= self._next_sample:
            sample = dict(sampler.sample(), timestamp=self._server_time())
            self._schedule_next_sample(now)
            if self._backing_off(now):
                self.state.backlog.append(sample)
                self._save_status()
            else:
                outcome = self._heartbeat(sample)
        elif _passed(self._retry_at, now) or _passed(self._drain_at, now):
            # the end of a backoff, or the rest of the backlog: no new sample, the backlog carries them
            outcome = self._heartbeat(None)
        if outcome == "decommissioned":
            return outcome
        if self._wake.is_set():
            self._wake.clear()
            if not self._backing_off(time.monotonic()):
                self._flush_outbox()
                self._save_status()
        self._maybe_check_inventory()
        return outcome

    def _server_time(self) -> str:
        """Now by the server's clock, as far as its last answer told (a sample's time must not be in its future)."""
        offset = self.client.clock_offset if self.client is not None else 0.0
        return utc_timestamp(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset))

    def _sleep_seconds(self) -> float:
        """Until the soonest deadline, at most STOP_POLL_SECONDS, at least a few milliseconds (never a spin)."""
        deadlines = [self._next_sample, self._retry_at, self._drain_at]
        if self._inventory_thread is None or not self._inventory_thread.is_alive():
            deadlines.append(self._inventory_due)
        soonest = min(d for d in deadlines if d is not None)
        return min(max(soonest - time.monotonic(), MIN_SLEEP_SECONDS), STOP_POLL_SECONDS)

    def _schedule_next_sample(self, now: float) -> None:
        self._next_sample = now + self._interval * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not a secret

    def _backing_off(self, now: float) -> bool:
        return self._retry_at is not None and now < self._retry_at

    def _heartbeat(self, sample: dict | None) -> str:
        """One heartbeat; ``sample`` (with its timestamp) is sent as the current metrics, or goes to the backlog
        when the server did not take it. The outcome: "ok", "failed", or "decommissioned"."""
        assert self.client is not None and self._executor is not None
        backlog = self.state.backlog.peek(BACKLOG_PER_HEARTBEAT)
        body: dict[str, Any] = {"agentVersion": __version__, "status": self._health()}
        if sample is not None:
            body["metrics"] = {key: value for key, value in sample.items() if key != "timestamp"}
        body.update(_facts())
        if backlog:
            body["metricsBacklog"] = backlog
        self._drain_at = None
        try:
            answer = self.client.heartbeat(self._agent_id, body)
        except Unreachable as exc:
            self._keep(sample)
            self._back_off(f"the server cannot be reached: {exc.reason}")
            return "failed"
        except ServerError as exc:
            return self._heartbeat_refused(exc, sample, sent_backlog=len(backlog))
        self._contact()
        self._failures = 0
        self._retry_at = None
        if backlog:
            self.state.backlog.drop(len(backlog))
            log.info("sent %d buffered samples", len(backlog))
        if len(self.state.backlog):
            self._drain_at = time.monotonic() + min(BACKLOG_DRAIN_DELAY_SECONDS, self._interval)
        for command in answer.get("commands") or []:
            self._executor.submit(command)
        if answer.get("rotateToken"):
            self._rotate_token()
        if answer.get("configUpdate"):
            self._apply_config(answer["configUpdate"])
        if self._inventory_due is None:  # the first successful heartbeat: inventory now
            self._inventory_due = time.monotonic()
        self._flush_outbox()
        self._save_status()
        return "ok"

    def _heartbeat_refused(self, exc: ServerError, sample: dict | None, *, sent_backlog: int) -> str:
        code = exc.code
        if exc.status == 403 and code == "device_decommissioned":
            self._error("the server says this device is decommissioned: the agent stops")
            log.error("%s", self._last_error)
            self._save_status()
            return "decommissioned"
        if exc.status == 403 and code == "device_quarantined":
            # The server recorded the contact but stores no telemetry and hands out no commands while the
            # device is quarantined; keeping its samples would only resend them for nothing.
            self._contact()
            self._failures = 0
            self._retry_at = None
            self._error("the device is quarantined: no commands run until a technician approves it")
            log.warning("%s", self._last_error)
            self._save_status()
            return "ok"
        self._keep(sample)
        if exc.status == 429:
            wait = max(exc.retry_after or 0.0, self._interval / 2, 1.0)
            self._retry_at = time.monotonic() + wait
            self._error(f"the server asks to slow down (429): next attempt in {wait:.0f} s")
            log.warning("%s", self._last_error)
        elif exc.status == 401 and code == "invalid_token":
            # Kept trying, slowly: a rotation may be in flight, or an operator may fix the server's side.
            self._fixed_backoff(TOKEN_REFUSED)
            log.error("%s", TOKEN_REFUSED)
        elif exc.status == 403 and code == "tenant_inactive":
            self._fixed_backoff("the server says this device's tenant is inactive")
            log.error("%s", self._last_error)
        elif exc.status in (400, 413) and sent_backlog:
            # A backlog the server refuses as it is (a sample outside the retention, a clock that jumped) would
            # be refused forever and block every later heartbeat: drop it and say so.
            self.state.backlog.drop(sent_backlog)
            self._back_off(f"the server refused the heartbeat ({exc.status} {code}: {exc.message} {exc.fields})")
            log.error("dropped %d buffered samples the server refused", sent_backlog)
        else:
            self._back_off(f"the server answered {exc.status} {code}: {exc.message}")
        self._save_status()
        return "failed"

    def _keep(self, sample: dict | None) -> None:
        if sample is not None:
            self.state.backlog.append(sample)

    def _back_off(self, error: str) -> None:
        """Full-jitter exponential backoff after a failed attempt."""
        self._failures += 1
        ceiling = min(float(self.config.max_backoff_seconds), self._interval * 2 ** min(self._failures - 1, 30))
        delay = random.uniform(0.5, 1.0) * ceiling  # noqa: S311 - jitter, not a secret
        self._retry_at = time.monotonic() + delay
        self._error(error)
        log.warning("%s; next attempt in %.0f s", error, delay)
        self._save_status()

    def _fixed_backoff(self, error: str) -> None:
        self._failures += 1
        self._retry_at = time.monotonic() + float(self.config.max_backoff_seconds)
        self._error(error)

    def _health(self) -> str:
        return "warning" if self._inventory_failed or self._results_failed else "ok"

    # ---- token and configuration ----

    def _rotate_token(self) -> None:
        assert self.client is not None
        try:
            token = self.client.rotate_token(self._agent_id)
        except (Unreachable, ServerError) as exc:
            log.warning("token rotation failed (tried again at the next heartbeat): %s", _describe(exc))
            return
        # Persisted before it is used: a crash between the two leaves the new token on disk, and the old one keeps
        # working for five minutes on the server in case the process dies before the first call with it.
        self.state.replace_token(token)
        self.client.token = token
        log.info("the agent token was rotated")

    def _apply_config(self, update: dict) -> None:
        identity = self.state.identity()
        if identity is None or not isinstance(update, dict):
            return
        config = dict(identity.config)
        config.update(update)
        self.state.save_identity(dataclasses.replace(identity, config=config))
        interval = _interval_of(config)
        if interval != self._interval:
            self._interval = interval
            self._schedule_next_sample(time.monotonic())
        log.info("configuration updated by the server: heartbeat every %.0f s", self._interval)

    # ---- command results ----

    def _flush_outbox(self) -> None:
        """Post every pending result; stops at the first one the server cannot be reached for."""
        assert self.client is not None
        failed = False
        for command_id, result in self.state.outbox.pending().items():
            try:
                self.client.post_result(self._agent_id, command_id, result)
            except Unreachable as exc:
                log.warning("result of command %s not sent, kept for later: %s", command_id, exc.reason)
                failed = True
                break
            except ServerError as exc:
                if exc.status in (404, 409) or exc.status in (400, 413):
                    # 404/409: the server already has a final status for it; 400/413: it never will accept this
                    # body. Either way retrying cannot help.
                    log.warning("result of command %s dropped: %s %s %s", command_id, exc.status, exc.code, exc.message)
                    self.state.outbox.remove(command_id)
                else:
                    log.warning("result of command %s not accepted, kept for later: %s", command_id, _describe(exc))
                    failed = True
                continue
            self.state.outbox.remove(command_id)
            log.info("result of command %s sent", command_id)
        self._results_failed = failed

    def _flush_outbox_quietly(self) -> None:
        try:
            if not self._backing_off(time.monotonic()):
                self._flush_outbox()
        except Exception:  # shutting down: the results stay in the outbox for the next start
            log.exception("results not sent at shutdown")

    # ---- inventory ----

    def _maybe_check_inventory(self) -> None:
        if self._inventory_due is None or time.monotonic() < self._inventory_due:
            return
        if self._inventory_thread is not None and self._inventory_thread.is_alive():
            return
        self._inventory_due = time.monotonic() + float(self.config.inventory_check_seconds)
        self._inventory_thread = threading.Thread(target=self._check_inventory, name="inventory", daemon=True)
        self._inventory_thread.start()

    def _check_inventory(self) -> None:
        """Upload the kinds whose content changed since the server's last acknowledgement (worker thread)."""
        try:
            uploaded = self._upload_inventory(only_changed=True)
        except Exception as exc:
            self._inventory_failed = True
            self._inventory_due = time.monotonic() + min(INVENTORY_RETRY_SECONDS, self.config.inventory_check_seconds)
            log.warning("inventory upload failed, tried again later: %s", _describe(exc))
            return
        self._inventory_failed = False
        if uploaded:
            log.info("inventory uploaded: %s", ", ".join(uploaded))

    def _upload_all_inventory(self) -> None:
        """Collect and upload every kind, changed or not (the refresh_inventory command); raises on failure."""
        self._upload_inventory(only_changed=False)

    def _upload_inventory(self, *, only_changed: bool) -> list[str]:
        assert self.client is not None
        with self._inventory_lock:
            bodies = collect_inventory(self.config)
            known = self.state.inventory_hashes() if only_changed else {}
            uploaded = []
            for kind, body in bodies.items():
                digest = content_hash(kind, body)
                if only_changed and known.get(kind) == digest:
                    continue
                self.client.put_inventory(self._agent_id, kind, body)
                self.state.save_inventory_hash(kind, digest)
                uploaded.append(kind)
            return uploaded

    # ---- status ----

    def _contact(self) -> None:
        self._last_contact_at = utc_timestamp()
        self._last_error = None

    def _error(self, message: str) -> None:
        self._last_error = message
        self._last_error_at = utc_timestamp()

    def _save_status(self) -> None:
        running = self._executor.running_count() if self._executor is not None else 0
        status = {
            "lastContactAt": self._last_contact_at,
            "lastAttemptAt": utc_timestamp(),
            "lastError": self._last_error,
            "lastErrorAt": self._last_error_at,
            "backlogSize": len(self.state.backlog),
            "pendingResults": len(self.state.outbox),
            "runningCommands": running,
            "pid": os.getpid(),
        }
        try:
            self.state.save_status(status)
        except OSError as exc:  # a full disk must not stop the heartbeats
            log.warning("status not saved: %s", exc)


def _passed(deadline: float | None, now: float) -> bool:
    return deadline is not None and now >= deadline


def _interval_of(config: dict) -> float:
    value = config.get("heartbeatIntervalSeconds") if isinstance(config, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float(DEFAULT_INTERVAL_SECONDS)


def _facts() -> dict:
    try:
        return heartbeat_facts()
    except Exception as exc:  # a fact that cannot be read must not cost the heartbeat
        log.warning("heartbeat facts not collected: %s", exc)
        return {}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Unreachable):
        return f"unreachable: {exc.reason}"
    if isinstance(exc, ServerError):
        return f"{exc.status} {exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
