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
        from alertlake.serving import ensure_views
        from alertlake.settings import Settings
        from alertlake.trino import sync_tables

        settings = Settings()
        registered = sync_tables(settings) if settings.lake_is_local else []
        try:
            ensure_views(settings)  # views follow the tables they read as those appear
        except Exception as exc:  # noqa: BLE001 - a view that cannot be built must not block table registration
            print(f"WARNING: views not updated: {exc}")
        return registered

    compact_and_vacuum() >> sync_trino()


alertlake_maintenance()
