"""Daily lake maintenance: compaction (OPTIMIZE), VACUUM with a configurable retention, checkpoint hygiene."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task


@dag(
    dag_id="alertlake_maintenance",
    description="OPTIMIZE and VACUUM every lake table, remove old replay checkpoints, sync Trino",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "maintenance"],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    params={
        "retention_hours": Param(168, type="number", minimum=0, description="VACUUM keeps this much history"),
        "checkpoint_days": Param(7, type="number", minimum=0, description="finished replay checkpoints kept"),
    },
)
def alertlake_maintenance() -> None:
    @task
    def compact_and_vacuum(params: dict | None = None) -> float:
        """Runs jobs/maintenance.py over every lake table."""
        from alertlake.jobrun import run_job

        params = params or {}
        return run_job(
            "jobs.maintenance",
            [
                "--retention-hours",
                str(params.get("retention_hours", 168)),
                "--checkpoint-days",
                str(params.get("checkpoint_days", 7)),
            ],
        )

    @task
    def sync_trino() -> list[str]:
        """Registers in Trino any lake table it does not know yet."""
        from alertlake.serving import expose_lake
        from alertlake.settings import Settings

        return expose_lake(Settings())

    compact_and_vacuum() >> sync_trino()


alertlake_maintenance()
