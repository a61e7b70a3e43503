"""alertlake.spark.with_batch_values: per-batch values in every row, without new generated code per batch."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """A local Spark session (no services needed). Adaptive execution off: with it, ``explain`` shows the
    generated code only once a query has run."""
    from alertlake.settings import Settings
    from alertlake.spark import build_spark

    session = build_spark(Settings(), "alertlake-batch-values-tests", {"spark.ui.enabled": "false"})
    adaptive = session.conf.get("spark.sql.adaptive.enabled") or "true"
    session.conf.set("spark.sql.adaptive.enabled", "false")
    yield session
    session.conf.set("spark.sql.adaptive.enabled", adaptive)


def generated_code(frame: DataFrame) -> list[str]:
    """The Java code Spark generates for ``frame`` (``explain("codegen")``), without its plan text."""
    jvm = frame.sparkSession._jvm
    assert jvm is not None
    text = jvm.PythonSQLUtils.explainString(frame._jdf.queryExecution(), "codegen")
    return [re.sub(r"^/\* \d+ \*/", "", line) for line in text.splitlines() if re.match(r"^/\* \d+ \*/", line)]


def rows(spark: SparkSession) -> DataFrame:
    return spark.range(5).selectExpr("id", "id * 2 AS twice")


def test_every_row_gets_the_batch_values(spark: SparkSession) -> None:
    from alertlake.spark import with_batch_values

    at = dt.datetime(2026, 1, 5, 3, 4, 5, 678000, tzinfo=dt.UTC)
    out = with_batch_values(rows(spark), "at timestamp, batch long", at, 42).orderBy("id").collect()
    assert [r.id for r in out] == [0, 1, 2, 3, 4]
    assert {(r.at.astimezone(dt.UTC), r.batch) for r in out} == {(at, 42)}


def test_the_generated_code_does_not_change_with_the_values(spark: SparkSession) -> None:
    from pyspark.sql import functions as F

    from alertlake.spark import with_batch_values

    def joined(batch: int) -> DataFrame:
        at = dt.datetime(2026, 1, 5, tzinfo=dt.UTC) + dt.timedelta(seconds=batch)
        return with_batch_values(rows(spark), "at timestamp, batch long", at, batch).select("twice", "at", "batch")

    def literals(batch: int) -> DataFrame:
        return rows(spark).select("twice", F.current_timestamp().alias("at"), F.lit(batch).cast("long").alias("batch"))

    assert generated_code(joined(1))
    assert generated_code(joined(1)) == generated_code(joined(2))
    # What it avoids: with literals, each batch's values are written into the code (a new class per batch).
    assert generated_code(literals(1)) != generated_code(literals(2))
