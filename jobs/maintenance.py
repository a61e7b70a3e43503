"""Lake maintenance: compaction (OPTIMIZE), VACUUM with a configurable retention, checkpoint hygiene.

Streaming writes leave many small files; compaction rewrites them into large ones (readers, Trino above
all, get faster), VACUUM deletes files no table version within the retention still needs (time travel
older than the retention is then gone), and finished replay checkpoints are removed once old.

    python -m jobs.maintenance [--retention-hours 168] [--checkpoint-days 7] [--table bronze.ztf_alerts ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from alertlake.lake import LAYERS
from alertlake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("alertlake.maintenance")


@dataclass
class TableReport:
    """What maintenance did to one table."""

    table: str
    files_before: int
    files_after: int
    files_removed_by_vacuum: int
    seconds: float


def lake_tables(settings: Settings) -> list[str]:
    """Every Delta table of the lake (``layer.table``), found on disk."""
    from alertlake.trino import local_tables

    return local_tables(settings)


def _file_count(spark: SparkSession, uri: str) -> int:
    return int(spark.sql(f"DESCRIBE DETAIL delta.`{uri}`").collect()[0]["numFiles"])


def maintain_table(spark: SparkSession, settings: Settings, name: str, retention_hours: float) -> TableReport:
    """OPTIMIZE then VACUUM one table."""
    from delta.tables import DeltaTable

    from alertlake.lake import table_uri

    uri = table_uri(settings, name)
    started = time.monotonic()
    before = _file_count(spark, uri)
    table = DeltaTable.forPath(spark, uri)
    columns = {f.name for f in table.toDF().schema.fields}
    if {"healpix", "object_id"} <= columns:
        # Tables scientists search by position or object get the clustered layout measured in bench/query.py.
        from alertlake.serving import optimize_layout

        optimize_layout(spark, uri)
    else:
        table.optimize().executeCompaction()
    compacted = _file_count(spark, uri)
    # Delta refuses a retention under 7 days unless told: a shorter one may break concurrent readers,
    # which the engineer accepts by asking for it.
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", str(retention_hours >= 168).lower())
    removed = table.vacuum(retention_hours)
    removed_count = removed.count() if removed is not None else 0
    report = TableReport(name, before, compacted, removed_count, round(time.monotonic() - started, 1))
    log.info("maintained %s: %d -> %d files, %d removed by VACUUM", name, before, compacted, removed_count)
    return report


def clean_checkpoints(settings: Settings, older_than_days: float) -> list[str]:
    """Delete checkpoints of finished replays (``*_replay_*``) untouched for ``older_than_days``.

    Live streams' checkpoints are never touched: losing one would re-read Kafka from the start.
    """
    if not settings.lake_is_local:
        log.info("checkpoint hygiene only runs on a local lake; use the object store's lifecycle rules")
        return []
    root = settings.lake_path / "_checkpoints"
    cutoff = time.time() - older_than_days * 86400
    removed = []
    for path in sorted(root.glob("*_replay_*")) if root.exists() else []:
        newest = max((p.stat().st_mtime for p in path.rglob("*")), default=path.stat().st_mtime)
        if newest < cutoff:
            shutil.rmtree(path)
            removed.append(path.name)
    return removed


def run(
    settings: Settings, tables: list[str] | None = None, retention_hours: float = 168.0, checkpoint_days: float = 7.0
) -> dict[str, object]:
    """Maintain every (or the given) lake table and clean old replay checkpoints; returns a report."""
    from alertlake.spark import build_spark

    spark = build_spark(settings, "alertlake-maintenance")
    names = tables or lake_tables(settings)
    unknown = [n for n in names if n.split(".")[0] not in LAYERS]
    if unknown:
        raise ValueError(f"not lake tables: {unknown}")
    reports = [maintain_table(spark, settings, name, retention_hours) for name in names]
    return {"tables": [asdict(r) for r in reports], "checkpoints_removed": clean_checkpoints(settings, checkpoint_days)}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by the maintenance DAG)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--table", action="append", help="layer.table (default: every lake table)")
    parser.add_argument("--retention-hours", type=float, default=168.0)
    parser.add_argument("--checkpoint-days", type=float, default=7.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run(Settings(), args.table, args.retention_hours, args.checkpoint_days)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
