"""Mark devices offline that have not checked in for DEVICE_OFFLINE_AFTER_SECONDS (run every minute)."""

from __future__ import annotations

from devices.management.commands._periodic import PeriodicCommand
from devices.services.status import mark_offline


class Command(PeriodicCommand):
    help = "Mark online devices silent for DEVICE_OFFLINE_AFTER_SECONDS as offline."

    def run_once(self) -> str:
        return f"devices marked offline: {mark_offline()}"
