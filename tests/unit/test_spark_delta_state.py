"""alertlake.spark.load_delta_states: a job's first commit to a table made by delta-rs runs no state job.

Such a table's version has no checksum file, so Spark's first commit to it computes the table's state in a job of
its own ("Compute snapshot for version: N"); the real-time pipeline's first micro-batch paid that for each table.
Real local Spark and real delta-rs tables; the jobs are read from Spark's own status store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest

from alertlake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SCHEMA = pa.schema([("alert_id", pa.int64()), ("night", pa.string())])
STATE_JOB = "Compute snapshot for version"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    from alertlake.spark import build_spark

    yield build_spark(Settings(), "alertlake-delta-state-tests", {"spark.ui.enabled": "false"})


def _job_descriptions(spark: SparkSession) -> dict[int, str]:
    jobs = spark._jsparkSession.sparkContext().statusStore().jobsList(None)  # a Scala Seq of JobData
    found = {}
    for i in range(jobs.size()):
        job = jobs.apply(i)
        found[int(job.jobId())] = str(job.description().get()) if job.description().isDefined() else ""
    return found


def _first_append_state_jobs(spark: SparkSession, uri: str) -> list[str]:
    """Descriptions of the state jobs Spark ran to append one row to the table at ``uri``."""
    before = set(_job_descriptions(spark))
    spark.createDataFrame([(1, "20250101")], "alert_id long, night string").write.format("delta").mode("append").save(
        uri
    )
    return [d for j, d in _job_descriptions(spark).items() if j not in before and STATE_JOB in d]


def _delta_rs_table(tmp_path: Path, name: str) -> str:
    from alertlake.lake import ensure_table

    uri = f"file://{tmp_path / name}"
    ensure_table(uri, SCHEMA, "night")
    return uri


def test_first_append_to_a_delta_rs_table_runs_a_state_job(spark: SparkSession, tmp_path: Path) -> None:
    """The cost load_delta_states moves to the start (and what the next test would miss if it did nothing)."""
    assert _first_append_state_jobs(spark, _delta_rs_table(tmp_path, "plain"))


def test_loaded_state_leaves_the_first_append_no_state_job(spark: SparkSession, tmp_path: Path) -> None:
    from alertlake.spark import load_delta_states

    uri = _delta_rs_table(tmp_path, "loaded")
    before = set(_job_descriptions(spark))
    load_delta_states(spark, [uri, f"file://{tmp_path / 'missing'}"])  # a missing table is skipped
    assert any(STATE_JOB in d for j, d in _job_descriptions(spark).items() if j not in before)
    assert not (tmp_path / "missing").exists()
    assert _first_append_state_jobs(spark, uri) == []
    assert spark.read.format("delta").load(uri).count() == 1


def test_a_version_spark_wrote_needs_no_state_job(spark: SparkSession, tmp_path: Path) -> None:
    """After Spark's own commit (with its checksum file), loading the states runs no job at all."""
    from alertlake.spark import load_delta_states

    uri = _delta_rs_table(tmp_path, "spark_written")
    _first_append_state_jobs(spark, uri)
    jvm = spark._jvm
    assert jvm is not None
    jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # as a new process would find it
    before = set(_job_descriptions(spark))
    load_delta_states(spark, [uri])
    assert [d for j, d in _job_descriptions(spark).items() if j not in before and STATE_JOB in d] == []
