"""Keep the 5-minute and hourly telemetry rollups current (run every few minutes, or --loop 300)."""

from devices.management.commands._periodic import PeriodicCommand
from devices.services.telemetry import roll_up


class Command(PeriodicCommand):
    help = "Roll raw telemetry up into 5-minute and hourly buckets; drop rollups past the retention."

    def run_once(self) -> str:
        report = roll_up()
        return f"telemetry rollups written: {report.buckets_written}; expired: {report.rows_expired}"
