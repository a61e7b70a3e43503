"""Distribution: keeps silver -> filter topics going, and exposes how many alerts each filter sent.

Scheduled on the silver Asset (each enrichment run starts one) or triggered by hand. ``available-now`` (default)
sends what silver holds beyond the job's checkpoint and stops; ``continuous`` keeps the stream up for
``minutes``. Failures are retried with exponential backoff: the job is exactly-once across restarts, so a retry
neither loses nor duplicates messages. The count task logs per-filter message counts from gold.filter_hits
and pushes them to XCom (the return value), so the Airflow UI shows each stream's volume per run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, dag, task

from alertlake.lake import asset_uri

SILVER = Asset(asset_uri("silver.alerts"))
FILTER_HITS = Asset(asset_uri("gold.filter_hits"))
OBJECTS = Asset(asset_uri("gold.objects"))


@dag(
    dag_id="alertlake_distribute",
    description="silver -> one Kafka topic per filter and survey (exactly once), gold tables, per-filter counts",
    schedule=SILVER,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["alertlake", "distribution"],
    params={
        "mode": Param("available-now", enum=["available-now", "continuous"], description="how to run"),
        "minutes": Param(55, type="integer", minimum=1, description="continuous: length of this run's window"),
    },
)
def alertlake_distribute() -> None:
    @task(
        retries=6,
        retry_delay=timedelta(seconds=20),
        retry_exponential_backoff=True,
        max_retry_delay=timedelta(minutes=10),
        outlets=[FILTER_HITS, OBJECTS],
    )
    def distribute(params: dict | None = None) -> float:
        """Runs the distribution job; its log shows each batch's messages per filter and timings."""
        from alertlake.jobrun import run_job

        params = params or {}
        if params.get("mode") == "continuous":
            args = ["--trigger", "continuous", "--timeout", str(int(params.get("minutes", 55)) * 60)]
        else:
            args = ["--trigger", "available-now"]
        return run_job("jobs.distribute", args)

    @task
    def filter_counts() -> dict[str, dict[str, int]]:
        """Messages per filter (total, and in the last 24 h) from gold.filter_hits; returned to XCom."""
        from alertlake.settings import get_settings
        from jobs.distribute import filter_counts as counts

        result = counts(get_settings())
        for name, c in sorted(result.items()):
            print(f"{name:32s} total {c['total']:8d}   last 24 h {c['last_24h']:8d}")
        return result

    distribute() >> filter_counts()


alertlake_distribute()
