"""The script library in the demo (``manage.py seed_demo``): four useful scripts in every demo organization, a few
past runs with the output agents would have sent back, and one weekly schedule, so a newcomer finds a library to
run from the admin right after ``make run``.

Everything goes through the services, as any other door would: ``save_script`` (validated, versioned, audited),
``start_run`` (as the server, ``actor=None``: the demo has no reach to check) and ``save_schedule``. The past runs'
commands are then finished as an agent would finish them: marked sent, then ``record_result`` of the commands
service. Their clocks are moved back afterwards so the runs look like the last day's.

Seeding twice keeps one library: a script whose name the organization already has is left as it is, and runs are
made only for scripts made now. The cost does not grow with the fleet: every run targets a handful of devices.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.utils import timezone

from devices.models import Device, DeviceCommand, DeviceGroup
from orgs.models import Organization, Partner
from scripts.models import Script, ScriptRun, ScriptSchedule

DISK_CLEANUP = "Disk cleanup"
RESTART_SERVICE = "Restart a service"
COLLECT_EVENT_LOG = "Collect the event log"
DISK_REPORT = "Disk usage report"
SCHEDULE_NAME = "Weekly disk cleanup"

DISK_CLEANUP_PS1 = r"""# Frees space on the system drive: temp files, the Windows Update cache, the recycle bin.
# Parameter minFreeGb: the free space wanted, in GB (exit 2 when still below it).
$minFreeGb = [int]$env:RMM_PARAM_MINFREEGB
$drive = Get-PSDrive -Name $env:SystemDrive.TrimEnd(':')
$before = [math]::Round($drive.Free / 1GB, 1)
Write-Output "Free on $($env:SystemDrive) before: $before GB (wanted: $minFreeGb GB)"
if ($before -ge $minFreeGb) {
    Write-Output 'Nothing to do.'
    exit 0
}
$paths = @("$env:TEMP\*", "$env:SystemRoot\Temp\*", "$env:SystemRoot\SoftwareDistribution\Download\*")
foreach ($path in $paths) {
    Remove-Item -Path $path -Recurse -Force -ErrorAction SilentlyContinue
}
Clear-RecycleBin -Force -ErrorAction SilentlyContinue
$after = [math]::Round((Get-PSDrive -Name $drive.Name).Free / 1GB, 1)
Write-Output "Free after: $after GB (freed $([math]::Round($after - $before, 1)) GB)"
if ($after -lt $minFreeGb) {
    Write-Error "Still below $minFreeGb GB free on $($env:SystemDrive)."
    exit 2
}
"""

RESTART_SERVICE_PS1 = r"""# Restarts a Windows service and waits up to 30 s for it to run again.
# Parameter serviceName: the service's name (e.g. Spooler), not its display name.
$name = $env:RMM_PARAM_SERVICENAME
$service = Get-Service -Name $name -ErrorAction SilentlyContinue
if (-not $service) {
    Write-Error "No service named '$name' on $env:COMPUTERNAME."
    exit 3
}
Write-Output "$($service.DisplayName) ($name) is $($service.Status); restarting."
Restart-Service -Name $name -Force -ErrorAction Stop
$service.WaitForStatus('Running', '00:00:30')
Write-Output "$name is $((Get-Service -Name $name).Status)."
"""

COLLECT_EVENT_LOG_PS1 = r"""# The last 50 errors and warnings of one event log.
# Parameter logName: System, Application or Security (Security needs the agent to run as SYSTEM).
$log = $env:RMM_PARAM_LOGNAME
Get-WinEvent -FilterHashtable @{ LogName = $log; Level = 1, 2, 3 } -MaxEvents 50 -ErrorAction Stop |
    Select-Object TimeCreated, Id, LevelDisplayName, ProviderName, Message |
    Format-Table -AutoSize -Wrap |
    Out-String -Width 200
"""

DISK_REPORT_SH = """#!/usr/bin/env bash
# Disk usage of every mounted file system, fullest first.
set -euo pipefail
df -h -x tmpfs -x devtmpfs -x squashfs -x overlay | { read -r header; echo "$header"; sort -k5 -rn; }
"""


@dataclass(frozen=True)
class DemoScript:
    name: str
    category: str
    description: str
    language: str
    content: str
    parameters: list[dict[str, Any]] = field(default_factory=list)
    timeout_seconds: int = 300


DEMO_SCRIPTS = (
    DemoScript(
        DISK_CLEANUP,
        "Maintenance",
        "Frees space on the system drive (temporary files, update cache, recycle bin) until minFreeGb is free.",
        Script.Language.POWERSHELL,
        DISK_CLEANUP_PS1,
        [
            {
                "name": "minFreeGb",
                "type": "int",
                "required": False,
                "default": 10,
                "description": "Free space wanted on the system drive, in GB.",
            }
        ],
        timeout_seconds=900,
    ),
    DemoScript(
        RESTART_SERVICE,
        "Troubleshooting",
        "Restarts a Windows service by name and waits for it to run again.",
        Script.Language.POWERSHELL,
        RESTART_SERVICE_PS1,
        [
            {
                "name": "serviceName",
                "type": "string",
                "required": True,
                "description": "The service's name, e.g. Spooler or wuauserv.",
            }
        ],
        timeout_seconds=120,
    ),
    DemoScript(
        COLLECT_EVENT_LOG,
        "Diagnostics",
        "The last 50 errors and warnings of the System, Application or Security log.",
        Script.Language.POWERSHELL,
        COLLECT_EVENT_LOG_PS1,
        [
            {
                "name": "logName",
                "type": "choice",
                "choices": ["System", "Application", "Security"],
                "required": True,
                "default": "System",
                "description": "Which event log to read.",
            }
        ],
        timeout_seconds=120,
    ),
    DemoScript(
        DISK_REPORT,
        "Diagnostics",
        "df -h of every real file system, fullest first.",
        Script.Language.BASH,
        DISK_REPORT_SH,
        timeout_seconds=60,
    ),
)


@dataclass(frozen=True)
class Outcome:
    """What one device's agent reported: its command status and result."""

    status: str
    exit_code: int | None
    stdout: str
    stderr: str = ""
    duration_ms: int = 1000

    def result(self) -> dict[str, Any]:
        return {
            "exitCode": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "durationMs": self.duration_ms,
            "error": None,
        }


def _cleanup_ok(before: float, after: float) -> Outcome:
    return Outcome(
        "completed",
        0,
        f"Free on C: before: {before} GB (wanted: 15 GB)\r\n"
        f"Free after: {after} GB (freed {round(after - before, 1)} GB)\r\n",
        duration_ms=48_210,
    )


CLEANUP_STILL_FULL = Outcome(
    "completed",
    2,
    "Free on C: before: 4.2 GB (wanted: 15 GB)\r\nFree after: 9.8 GB (freed 5.6 GB)\r\n",
    "Write-Error: Still below 15 GB free on C:.\r\n",
    duration_ms=71_904,
)
RESTART_OK = Outcome(
    "completed",
    0,
    "Print Spooler (Spooler) is Running; restarting.\r\nSpooler is Running.\r\n",
    duration_ms=3_412,
)
RESTART_STUCK = Outcome(
    "completed",
    1,
    "Print Spooler (Spooler) is Running; restarting.\r\n",
    "Restart-Service : Service 'Print Spooler (Spooler)' cannot be stopped due to the following error: Cannot "
    "stop Spooler service on computer '.'.\r\n    + CategoryInfo          : CloseError: "
    "(System.ServiceProcess.ServiceController:ServiceController) [Restart-Service], ServiceCommandException\r\n"
    "    + FullyQualifiedErrorId : CouldNotStopService,Microsoft.PowerShell.Commands.RestartServiceCommand\r\n",
    duration_ms=31_077,
)
EVENT_LOG = Outcome(
    "completed",
    0,
    "\r\nTimeCreated          Id LevelDisplayName ProviderName                     Message\r\n"
    "-----------          -- ---------------- ------------                     -------\r\n"
    "14/06 02:14:07     7031 Error            Service Control Manager          The Print Spooler service terminated "
    "unexpectedly. It has done this 1 time(s).\r\n"
    "14/06 01:02:51     1014 Warning          Microsoft-Windows-DNS-Client     Name resolution for the name "
    "wpad.corp.local timed out after none of the configured DNS servers responded.\r\n"
    '13/06 22:40:13       10 Warning          Microsoft-Windows-WMI            Event filter with query "SELECT * '
    'FROM __InstanceModificationEvent" could not be reactivated.\r\n'
    "13/06 19:05:44      129 Warning          storahci                         Reset to device, "
    "\\Device\\RaidPort0, was issued.\r\n",
    duration_ms=2_388,
)
EVENT_LOG_DENIED = Outcome(
    "failed",
    1,
    "",
    "Get-WinEvent : Attempted to perform an unauthorized operation.\r\n"
    "    + FullyQualifiedErrorId : System.UnauthorizedAccessException,"
    "Microsoft.PowerShell.Commands.GetWinEventCommand\r\n",
    duration_ms=611,
)
DISK_REPORT_OK = Outcome(
    "completed",
    0,
    "Filesystem      Size  Used Avail Use% Mounted on\n"
    "/dev/sda1        98G   71G   23G  76% /\n"
    "/dev/sdb1       492G  301G  166G  65% /var/lib/postgresql\n"
    "/dev/sda15      105M  6.1M   99M   6% /boot/efi\n",
    duration_ms=84,
)
DISK_REPORT_FULL = Outcome(
    "completed",
    0,
    "Filesystem      Size  Used Avail Use% Mounted on\n"
    "/dev/nvme0n1p2  228G  219G  9.1G  97% /\n"
    "/dev/nvme0n1p1  511M  5.3M  506M   2% /boot/efi\n",
    duration_ms=97,
)
NO_DF = Outcome("failed", 127, "", "bash: line 3: df: command not found\n", duration_ms=12)


@dataclass(frozen=True)
class DemoRun:
    """A past run: the script, its parameter values, which devices (by OS type, the first few by hostname), what
    each reported (``None``: the agent has not answered yet, the command stays sent), and how long ago."""

    script: str
    parameters: dict[str, Any]
    os_types: tuple[str, ...]
    outcomes: tuple[Outcome | None, ...]
    hours_ago: float
    also_a_windows_device: bool = False  # targeted too, to show a device skipped for its OS type


DEMO_RUNS = (
    DemoRun(
        DISK_CLEANUP,
        {"minFreeGb": 15},
        ("windows",),
        (_cleanup_ok(6.1, 18.4), _cleanup_ok(11.0, 16.2), CLEANUP_STILL_FULL, _cleanup_ok(22.5, 22.5)),
        hours_ago=20,
    ),
    DemoRun(RESTART_SERVICE, {"serviceName": "Spooler"}, ("windows",), (RESTART_OK, RESTART_STUCK, RESTART_OK), 9),
    DemoRun(COLLECT_EVENT_LOG, {"logName": "System"}, ("windows",), (EVENT_LOG, EVENT_LOG, EVENT_LOG_DENIED), 4.5),
    DemoRun(
        DISK_REPORT,
        {},
        ("linux", "macos"),
        (DISK_REPORT_OK, DISK_REPORT_FULL, NO_DF, None),
        hours_ago=1.5,
        also_a_windows_device=True,
    ),
)


@dataclass
class DemoScripts:
    """What ``set_up_demo_scripts`` did: scripts and runs made now, and the demo's library in all."""

    scripts_created: int = 0
    runs_created: int = 0
    schedules_created: int = 0
    scripts: int = 0


def set_up_demo_scripts(
    *, partner: Partner, actor=None, requested_by=None, now: dt.datetime | None = None
) -> DemoScripts:
    """Give every organization of ``partner`` the demo scripts it lacks (by name), runs of the scripts made now,
    and the weekly disk cleanup schedule if it has none of that name. ``actor`` saves scripts and the schedule;
    the runs are started by the server and shown as requested by ``requested_by``."""
    from scripts.services.library import save_script

    now = now or timezone.now()
    done = DemoScripts()
    for index, org in enumerate(Organization.objects.filter(partner=partner).order_by("name")):
        # Each organization's technicians ran theirs a few minutes apart.
        org_now = now - dt.timedelta(minutes=7 * index)
        existing = set(Script.objects.filter(org=org).values_list("name", flat=True))
        created: dict[str, Script] = {}
        for demo in DEMO_SCRIPTS:
            if demo.name in existing:
                continue
            created[demo.name] = save_script(
                script=Script(
                    org=org,
                    name=demo.name,
                    category=demo.category,
                    description=demo.description,
                    language=demo.language,
                    content=demo.content,
                    parameters=demo.parameters,
                    timeout_seconds=demo.timeout_seconds,
                    created_by=actor,
                ),
                actor=actor,
            )
            done.scripts_created += 1
        for demo_run in DEMO_RUNS:
            script = created.get(demo_run.script)
            if script is not None and _make_run(org, script, demo_run, now=org_now, requested_by=requested_by):
                done.runs_created += 1
        done.schedules_created += _make_schedule(org, actor=actor)
    names = [demo.name for demo in DEMO_SCRIPTS]
    done.scripts = Script.objects.filter(org__partner=partner, name__in=names).count()
    return done


def _devices_for(org: Organization, os_types: tuple[str, ...], count: int) -> list[Device]:
    """The first ``count`` online devices of those OS types, by hostname (the same devices for the same fleet)."""
    devices = Device.objects.filter(org=org, os_type__in=os_types, status=Device.Status.ONLINE)
    return list(devices.order_by("hostname", "id")[:count])


def _make_run(org: Organization, script: Script, demo: DemoRun, *, now: dt.datetime, requested_by) -> ScriptRun | None:
    from devices.services.commands import record_result
    from scripts.services.runs import start_run

    devices = _devices_for(org, demo.os_types, len(demo.outcomes))
    if not devices:
        return None
    targeted = [device.pk for device in devices]
    if demo.also_a_windows_device:
        targeted += [device.pk for device in _devices_for(org, ("windows",), 1)]
    run = start_run(
        script=script,
        actor=None,
        trigger=ScriptRun.Trigger.MANUAL,
        parameters=demo.parameters,
        device_ids=targeted,
    )
    started = now - dt.timedelta(hours=demo.hours_ago)
    commands = {command.device_id: command for command in DeviceCommand.objects.filter(script_run=run)}
    # The agents claim their commands (pending → sent), run them and report, as through the agent API.
    DeviceCommand.objects.filter(script_run=run).update(status=DeviceCommand.Status.SENT, sent_at=now)
    for device, outcome in zip(devices, demo.outcomes, strict=False):
        command = commands.get(device.pk)
        if command is not None and outcome is not None:
            record_result(device_id=device.pk, command_id=command.pk, status=outcome.status, result=outcome.result())
    # Back to when the run happened: sent a few seconds after queueing, finished after the reported duration.
    shift = now - started
    ScriptRun.objects.filter(pk=run.pk).update(created_at=started, requested_by=requested_by)
    DeviceCommand.objects.filter(script_run=run).update(
        created_at=started, sent_at=started + dt.timedelta(seconds=4), updated_at=F("updated_at") - shift
    )
    for device, outcome in zip(devices, demo.outcomes, strict=False):
        command = commands.get(device.pk)
        if command is not None and outcome is not None:
            DeviceCommand.objects.filter(pk=command.pk).update(
                completed_at=started + dt.timedelta(seconds=4, milliseconds=outcome.duration_ms + 350)
            )
    return run


def _make_schedule(org: Organization, *, actor) -> int:
    """The weekly disk cleanup on the organization's Windows devices, Sundays at 03:00 in its first site's time
    zone; made once (by name)."""
    from scripts.services.schedules import save_schedule

    if ScriptSchedule.objects.filter(org=org, name=SCHEDULE_NAME).exists():
        return 0
    script = Script.objects.filter(org=org, name=DISK_CLEANUP, archived_at__isnull=True).first()
    group = DeviceGroup.objects.filter(org=org, name="Windows devices").first()
    site = org.sites.order_by("name").first()
    if script is None or group is None:
        return 0
    schedule = ScriptSchedule(
        org=org,
        script=script,
        name=SCHEDULE_NAME,
        parameters={"minFreeGb": 10},
        device_group=group,
        cron="0 3 * * 0",
        timezone=site.timezone if site is not None else "UTC",
        enabled=True,
        created_by=actor,
    )
    save_schedule(schedule=schedule, actor=actor)
    return 1
