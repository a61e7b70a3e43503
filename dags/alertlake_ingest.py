"""Ingestion: starts and supervises the Kafka -> bronze stream of every survey, then reconciles.

Each run keeps one survey's stream going for ``minutes`` (continuous mode; the hourly schedule starts the
next window), or catches up on what Kafka holds (``available-now``), or replays a night (``replay``).
A stream that fails is restarted by Airflow with exponential backoff. Job output (batch figures, rates and
consumer lag) streams into the task log. Each successful run updates the survey's bronze Asset, which
starts enrichment.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from alertlake.lake import asset_uri
from alertlake.surveys import survey_names


@dag(
    dag_id="alertlake_ingest",
    description="Kafka -> bronze ingestion per survey (supervised, with backoff), then reconciliation",
    # Production sets ALERTLAKE_INGEST_SCHEDULE=@hourly (each run keeps the stream up for `minutes`); the
    # local stack triggers it on demand so a laptop is not running a stream around the clock.
    schedule=os.environ.get("ALERTLAKE_INGEST_SCHEDULE") or None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "ingestion"],
    params={
        "mode": Param("continuous", enum=["continuous", "available-now", "replay"], description="how to run"),
        "minutes": Param(55, type="integer", minimum=1, description="continuous: length of this run's window"),
        "night": Param("", type="string", description="replay / reconciliation: night YYYY-MM-DD ('' = all)"),
    },
)
def alertlake_ingest() -> None:
    @task(
        retries=6,
        retry_delay=timedelta(seconds=20),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=10),
    )
    def ingest(survey: str, params: dict | None = None) -> float:
        """Runs the survey's ingestion job in the chosen mode; its log lines show rates and lag."""
        from alertlake.jobrun import run_job

        params = params or {}
        args = ["--survey", survey]
        if params.get("mode") == "replay":
            if not params.get("night"):
                raise ValueError("mode 'replay' needs the night parameter (YYYY-MM-DD)")
            args += ["--replay-night", params["night"]]
        elif params.get("mode") == "available-now":
            args += ["--trigger", "available-now"]
        else:
            args += ["--trigger", "continuous", "--timeout", str(int(params.get("minutes", 55)) * 60)]
        return run_job("jobs.ingest", args)

    @task
    def reconcile(survey: str, params: dict | None = None) -> dict:
        """Proves Kafka messages = bronze rows + quarantine rows, offset by offset; fails on any gap."""
        from alertlake.reconcile import reconcile as run
        from alertlake.settings import Settings

        report = run(Settings(), survey, (params or {}).get("night") or None)
        print(report.render())
        # Only ingestion's own contract here; later stages are reconciled by the nightly quality DAG.
        if not report.kafka_ok:
            raise RuntimeError(f"reconciliation of {survey} found lost or doubled messages (see the log above)")
        return {
            "survey": survey,
            "kafka_messages": report.kafka_messages,
            "bronze_rows": report.bronze_rows,
            "quarantine_rows": report.quarantine_rows,
        }

    for name in survey_names():
        bronze = Asset(uri=asset_uri(f"bronze.{name}_alerts"))
        ran = ingest.override(task_id=f"ingest_{name}", outlets=[bronze])(name)
        ran >> reconcile.override(task_id=f"reconcile_{name}")(name)


alertlake_ingest()
