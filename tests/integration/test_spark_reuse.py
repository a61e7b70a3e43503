"""alertlake.spark's Projection and ArrowMap: made once, applied to many DataFrames, the same result as PySpark's
own select and mapInArrow, and Spark's own error for a missing column."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute
import pytest
from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from alertlake.spark import ArrowMap, Projection


def _tag(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Each row's columns as Python saw them, and a + b."""
    for batch in batches:
        seen = pa.array([",".join(batch.schema.names)] * batch.num_rows)
        total = pa.compute.add(batch.column("a"), batch.column("b"))
        yield pa.RecordBatch.from_arrays([seen, total], names=["seen", "total"])


def test_projection_and_arrow_map_serve_many_frames(spark: SparkSession) -> None:
    first = spark.createDataFrame([(1, 2, "x"), (3, 4, "y")], "a long, b long, c string")
    second = spark.createDataFrame([(10, 20, "z")], "a long, b long, c string")
    inputs = Projection(["a", "b"])
    summed = ArrowMap(_tag, "seen string, total long", ["a", "b"])
    doubled = Projection(["seen", (F.col("total") * 2).alias("twice")])

    for frame in (first, second, first):
        ours = doubled.select(summed.apply(inputs.select(frame))).collect()
        theirs = frame.select("a", "b").mapInArrow(_tag, "seen string, total long")
        theirs_rows = theirs.select("seen", (F.col("total") * 2).alias("twice")).collect()
        assert sorted(ours) == sorted(theirs_rows)
        assert {r.seen for r in ours} == {"a,b"}  # only the projected columns reached Python

    assert sorted(r.twice for r in doubled.select(summed.apply(inputs.select(first))).collect()) == [6, 14]


def test_missing_column_is_sparks_own_error(spark: SparkSession) -> None:
    narrow = spark.createDataFrame([(1,)], "a long")
    with pytest.raises(AnalysisException, match="UNRESOLVED_COLUMN"):
        Projection(["a", "b"]).select(narrow)
    with pytest.raises(AnalysisException, match="UNRESOLVED_COLUMN"):
        ArrowMap(_tag, "seen string, total long", ["a", "b"]).apply(narrow)
