"""Finish the commands nobody will finish: pending ones past expires_at (expired) and sent ones with no result
after their timeout (timeout). Run every minute."""

from __future__ import annotations

from devices.management.commands._periodic import PeriodicCommand
from devices.services.commands import expire_pending_commands, time_out_sent_commands


class Command(PeriodicCommand):
    help = "Expire pending commands past expires_at and time out sent commands without a result."

    def run_once(self) -> str:
        return f"commands expired: {expire_pending_commands()}; timed out: {time_out_sent_commands()}"
