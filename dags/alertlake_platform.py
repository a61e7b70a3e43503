"""Platform supervision: checks that every service AlertLake needs answers, and exposes new lake tables in Trino.

Thin on purpose: tasks import AlertLake inside their bodies so the DAG file parses in milliseconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="alertlake_platform",
    description="Health of Kafka, MLflow and Trino; registers new lake tables in Trino",
    schedule=timedelta(minutes=30),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "platform"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
)
def alertlake_platform() -> None:
    @task
    def check_services() -> dict[str, bool]:
        """Fails (and so alerts the engineer) when a service the pipeline needs does not answer."""
        from alertlake.health import CHECKS
        from alertlake.settings import get_settings

        settings = get_settings()
        results = {name: check(settings) for name, check in CHECKS.items() if name != "airflow"}
        down = [name for name, ok in results.items() if not ok]
        if down:
            raise RuntimeError(f"services not answering: {', '.join(down)} (see `make services-status`)")
        return results

    @task
    def sync_trino_tables() -> list[str]:
        """Registers in Trino every Delta table of the lake it does not know yet."""
        from alertlake.serving import expose_lake
        from alertlake.settings import Settings

        return expose_lake(Settings())

    check_services() >> sync_trino_tables()


alertlake_platform()
