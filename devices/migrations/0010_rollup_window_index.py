"""An index for the alert evaluator's reads of a window of rollups (``bucket_seconds = … AND bucket >= … AND
bucket < …`` over every device): without it each such read scanned the whole table (467 MB at 100,000 devices with
a day of telemetry for 10,000: 0.5 s for every rule averaging a metric over more than an hour, measured).
With it, a bitmap scan of the window's pages: the read of 120 minutes of 5-minute buckets 675 ms → 141 ms cold
(EXPLAIN ANALYZE), and in ``SKIP_SEED=1 BENCH_ARGS=--only-bench-rules bench/alerts_bench.sh`` the five
"metric avg 120 min" rules of a later pass 2.72 s → 1.30 s.

Plain SQL: the rollups are a table of devices.services.telemetry, not a Django model."""

from django.db import migrations

FORWARD = (
    "CREATE INDEX IF NOT EXISTS device_telemetry_rollups_window ON device_telemetry_rollups (bucket_seconds, bucket)"
)
REVERSE = "DROP INDEX IF EXISTS device_telemetry_rollups_window"


class Migration(migrations.Migration):
    dependencies = [("devices", "0009_inventory_upload_digests")]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
