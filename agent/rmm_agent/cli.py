"""The `rmm-agent` command: enroll this machine, run the agent, show its status, print its inventory.

Collectors and the run loop are imported inside the commands that need them, so `status` and `version` work (and
start fast) whatever the state of the rest of the package.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rmm_agent import __version__
from rmm_agent.config import ConfigError, LocalConfig
from rmm_agent.state import Identity, StateDir, StateError, default_state_dir

# Exit codes (also in --help and agent/README.md). The systemd unit does not restart on NOT_ENROLLED or
# DECOMMISSIONED: retrying cannot fix either.
EXIT_OK = 0
EXIT_FAILED = 1  # the server refused, could not be reached, already enrolled, another agent runs
EXIT_USAGE = 2  # a wrong option or config file (argparse also exits 2)
EXIT_NOT_ENROLLED = 3
EXIT_DECOMMISSIONED = 4  # returned by Agent.run when the server says device_decommissioned

EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  failure: the server refused or could not be reached, already enrolled, another agent is running
  2  a wrong option or an invalid config file
  3  not enrolled (enroll first) or the identity file is damaged (enroll again with --force)
  4  the server says this device is decommissioned (run only)
"""

ENROLLMENT_KEY_VARIABLE = "RMM_ENROLLMENT_KEY"


class Failure(Exception):
    """A command fails with a message for stderr and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# options and paths ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; the global options are accepted before or after the command."""

    def add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
        parser.add_argument(
            "--state-dir",
            metavar="DIR",
            default=default,
            help=f"the state directory (default: {default_state_dir()})",
        )
        parser.add_argument(
            "--config", metavar="FILE", default=default, help="the local config file (default: <state-dir>/config.json)"
        )
        parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log debug messages (run)")

    parser = argparse.ArgumentParser(
        prog="rmm-agent",
        description="The RMM agent: enrolls this machine, reports its health and inventory, runs commands.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, default=None)
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        # SUPPRESS: an option given before the command is not overwritten by the subcommand's absent one.
        add_global_options(sub, default=argparse.SUPPRESS)
        return sub

    enroll = command("enroll", "enroll this machine with the server (once)")
    enroll.add_argument(
        "--server", required=True, metavar="URL", help="the server's address, e.g. https://rmm.example.com"
    )
    enroll.add_argument(
        "--key",
        metavar="KEY",
        help=f"the enrollment key; '-' reads it from stdin (keeps it out of the process list); "
        f"default: ${ENROLLMENT_KEY_VARIABLE}",
    )
    enroll.add_argument("--ca-file", metavar="FILE", help="the CA certificate(s) that signed the server's (PEM)")
    enroll.add_argument(
        "--proxy",
        metavar="URL",
        help="an HTTP proxy for this enrollment call only, http://[user:password@]host:port (default: the config "
        "file's proxy, else HTTPS_PROXY/NO_PROXY); not stored: `run` uses the config file's or the environment's",
    )
    enroll.add_argument("--force", action="store_true", help="enroll again even if already enrolled")
    enroll.set_defaults(handler=enroll_command)

    run = command("run", "run the agent until stopped (SIGTERM/SIGINT); logs to stderr")
    run.set_defaults(handler=run_command)

    status = command("status", "show the identity, last contact, backlog and last error")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=status_command)

    inventory = command("inventory", "collect the inventory and print it (sends nothing)")
    inventory.add_argument("--print", action="store_true", required=True, help="print it as JSON on stdout")
    inventory.add_argument("--kind", metavar="KIND", help="only this kind (hardware, software, disks, network, …)")
    inventory.set_defaults(handler=inventory_command)

    version = command("version", "print the agent's version")
    version.set_defaults(handler=version_command)
    return parser


def state_path(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def load_config(args: argparse.Namespace) -> LocalConfig:
    path = Path(args.config) if args.config else state_path(args) / "config.json"
    try:
        return LocalConfig.load(path)
    except ConfigError as error:
        raise Failure(str(error), EXIT_USAGE) from None


def open_state(path: Path) -> StateDir:
    try:
        return StateDir(path)
    except PermissionError:
        raise Failure(
            f"cannot use the state directory {path}: permission denied (the agent's state belongs to root: use sudo)"
        ) from None


def read_identity(state: StateDir) -> Identity | None:
    try:
        return state.identity()
    except StateError as error:
        raise Failure(str(error), EXIT_NOT_ENROLLED) from None
    except PermissionError:
        raise Failure(
            f"cannot read {state.path}: permission denied (the agent's state belongs to root: use sudo)"
        ) from None


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# the commands -----------------------------------------------------------------------------------------------------


def read_enrollment_key(args: argparse.Namespace) -> str:
    if args.key == "-":
        key = sys.stdin.readline().strip()
    elif args.key:
        key = args.key.strip()
    else:
        key = os.environ.get(ENROLLMENT_KEY_VARIABLE, "").strip()
    if not key:
        raise Failure(
            f"an enrollment key is needed: --key KEY, --key - (from stdin) or ${ENROLLMENT_KEY_VARIABLE}", EXIT_USAGE
        )
    return key


def enroll_command(args: argparse.Namespace) -> int:
    """Enroll with the machine's facts; save the identity (token included) 0600 in the state directory."""
    from rmm_agent import collectors
    from rmm_agent.client import Client, ServerError, Unreachable, parse_proxy

    config = load_config(args)
    ca_file = args.ca_file or config.ca_file
    if ca_file:
        if not os.path.isfile(ca_file):
            raise Failure(f"--ca-file: {ca_file} is not a file", EXIT_USAGE)
        ca_file = os.path.abspath(ca_file)  # the service's working directory is not this shell's
    # The proxy belongs to the machine's network, not to the identity: --proxy serves this call only.
    proxy = args.proxy if args.proxy is not None else config.proxy
    if args.proxy is not None:
        try:
            parse_proxy(args.proxy)
        except ValueError as error:
            raise Failure(f"--proxy {error}", EXIT_USAGE) from None
    try:
        client = Client(args.server, ca_file=ca_file, proxy=proxy)
    except ValueError as error:
        raise Failure(f"--server: {error}", EXIT_USAGE) from None
    key = read_enrollment_key(args)
    state = open_state(state_path(args))
    existing = read_identity(state) if not args.force else None
    if existing is not None:
        raise Failure(
            f"already enrolled as device {existing.device_id} (agent {existing.agent_id}) at {existing.server} "
            "(use --force to enroll again)"
        )

    facts = collectors.facts()
    body = {
        "enrollmentKey": key,
        "hostname": facts["hostname"],
        "osType": facts["osType"],
        "osVersion": facts["osVersion"],
        "osBuild": facts.get("osBuild"),
        "architecture": facts["architecture"],
        "agentVersion": __version__,
        "hardwareInfo": collectors.hardware(),
        "networkInfo": collectors.enrollment_interfaces(),
    }
    try:
        answer = client.enroll(body)
    except ServerError as error:
        raise Failure(f"enrollment refused: {error.message} ({error.code}, HTTP {error.status})") from None
    except Unreachable as error:
        raise Failure(f"cannot reach {client.server}: {error.reason}") from None
    finally:
        client.close()

    names = ("agentId", "deviceId", "authToken", "orgId", "siteId")
    missing = [name for name in names if not isinstance(answer.get(name), str) or not answer[name]]
    if missing:
        raise Failure(f"the server's enrollment answer lacks {', '.join(missing)}: nothing was saved")
    config_answer = answer.get("config")
    identity = Identity(
        server=client.server,
        agent_id=answer["agentId"],
        device_id=answer["deviceId"],
        org_id=answer["orgId"],
        site_id=answer["siteId"],
        auth_token=answer["authToken"],
        ca_file=ca_file,
        config=config_answer if isinstance(config_answer, dict) else {},
        enrolled_at=utc_now(),
    )
    state.save_identity(identity)
    # A new device on the server: every inventory kind is uploaded to it, and the old device's status is not ours.
    state.clear_inventory_hashes()
    state.save_status({})
    print(f"enrolled as device {identity.device_id} (agent {identity.agent_id}) at {identity.server}")
    return EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    """Run the agent's loop until SIGTERM or SIGINT; the exit code is the loop's."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    config = load_config(args)
    state = open_state(state_path(args))
    if read_identity(state) is None:
        raise Failure(f"not enrolled (state directory {state.path}): run `rmm-agent enroll` first", EXIT_NOT_ENROLLED)
    if not state.acquire_run_lock():
        raise Failure(f"another rmm-agent is already running with the state directory {state.path}")

    from rmm_agent.agent import Agent

    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        logging.getLogger("rmm_agent.cli").info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl+Break, and what a service wrapper sends to a console process
        signal.signal(signal.SIGBREAK, request_stop)
    return Agent(state=state, config=config).run(stop)


def status_command(args: argparse.Namespace) -> int:
    """Print the identity and what the run loop last recorded; exit 3 when not enrolled."""
    path = state_path(args)
    identity = None
    state = None
    if path.is_dir():
        state = open_state(path)
        identity = read_identity(state)
    if state is None or identity is None:
        if args.json:
            print(json.dumps({"enrolled": False, "stateDir": str(path)}, indent=2))
        else:
            print(f"not enrolled (state directory {path})")
        return EXIT_NOT_ENROLLED
    recorded = state.status()
    pid = recorded.get("pid")
    report = {
        "enrolled": True,
        "stateDir": str(state.path),
        "server": identity.server,
        "agentId": identity.agent_id,
        "deviceId": identity.device_id,
        "orgId": identity.org_id,
        "siteId": identity.site_id,
        "token": identity.token_hint(),
        "caFile": identity.ca_file,
        "enrolledAt": identity.enrolled_at,
        "serverConfig": identity.config,
        "lastContactAt": recorded.get("lastContactAt"),
        "lastAttemptAt": recorded.get("lastAttemptAt"),
        "lastError": recorded.get("lastError"),
        "lastErrorAt": recorded.get("lastErrorAt"),
        # Counted from the files now, not as last recorded: they are the truth even when the agent is stopped.
        "backlogSize": len(state.backlog),
        "pendingResults": len(state.outbox),
        "runningCommands": len(state.running()),
        "pid": pid,
        "agentRunning": _process_alive(pid),
        "agentVersion": __version__,
    }
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return EXIT_OK
    lines = [
        ("server", report["server"]),
        ("agent id", report["agentId"]),
        ("device id", report["deviceId"]),
        ("organization", f"{report['orgId']} (site {report['siteId']})"),
        ("token", report["token"]),
        ("enrolled at", report["enrolledAt"]),
        ("agent process", f"pid {pid}, running" if report["agentRunning"] else "not running"),
        ("last contact", report["lastContactAt"] or "never"),
        ("last attempt", report["lastAttemptAt"] or "never"),
        ("last error", f"{report['lastError']} (at {report['lastErrorAt']})" if report["lastError"] else "none"),
        ("metrics backlog", f"{report['backlogSize']} samples"),
        ("pending results", str(report["pendingResults"])),
        ("running commands", str(report["runningCommands"])),
        ("state directory", report["stateDir"]),
    ]
    width = max(len(label) for label, _ in lines) + 2
    for label, value in lines:
        print(f"{label + ':':<{width}}{value}")
    return EXIT_OK


def _process_alive(pid: object) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    import psutil

    return psutil.pid_exists(pid)


def inventory_command(args: argparse.Namespace) -> int:
    """Collect the inventory (every kind, or --kind) and print the bodies that would be uploaded."""
    from rmm_agent import collectors

    config = load_config(args)
    kinds = None
    if args.kind is not None:
        if args.kind not in collectors.INVENTORY_KINDS:
            raise Failure(f"--kind: {args.kind!r} is not one of {', '.join(collectors.INVENTORY_KINDS)}", EXIT_USAGE)
        kinds = [args.kind]
    bodies = collectors.collect_inventory(config, kinds)
    if args.kind is not None and args.kind not in bodies:
        raise Failure(f"the {args.kind} inventory could not be collected on this machine (see the warnings above)")
    json.dump(bodies, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return EXIT_OK


def version_command(args: argparse.Namespace) -> int:
    """Print the agent's version (and the Python and platform it runs on, for bug reports)."""
    print(f"rmm-agent {__version__} (Python {platform.python_version()}, {sys.platform})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """The console script's entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except Failure as failure:
        print(f"rmm-agent {args.command}: {failure}", file=sys.stderr)
        return failure.exit_code


if __name__ == "__main__":
    sys.exit(main())
