"""Silver-like rows built from the REAL shared alerts, for filter and distribution tests.

Each row is what ``jobs/enrich.py`` writes to ``silver.alerts``: the canonical columns and quality cuts of a real
sample alert (``alertlake.modules.sample_alerts``), every science module's outputs computed locally with default
params, provenance columns, and the job's own columns. Built once per process (about 15 s: the modules build
their catalogue index and models).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from alertlake import modules as registry
from alertlake.surveys.canonical import SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The fixed time every sample row says it was received/enriched (so test outputs are reproducible).
SAMPLE_TIME = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)


@cache
def silver_schema() -> pa.Schema:
    """Arrow schema of the silver-like rows, in the enrichment job's column order."""
    mods = registry.execution_order(list(registry.all_modules().values()))
    fields = [pa.field(f.name, f.type) for f in SCHEMA]
    fields += [pa.field("quality_pass", pa.bool_()), pa.field("quality_reason", pa.string())]
    fields += list(registry.output_schema(mods))
    fields += [pa.field(f"{m.name}{s}", pa.string()) for m in mods for s in registry.RESERVED_SUFFIXES]
    fields += [
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("enrich_batch", pa.string()),
        pa.field("enrich_time", pa.timestamp("us", tz="UTC")),
    ]
    return pa.schema(fields)


@cache
def _silver_frame() -> pd.DataFrame:
    frame = registry.sample_alerts()
    for cls in registry.execution_order(list(registry.all_modules().values())):
        frame = frame.join(cls().prepare().predict(frame))
        frame[f"{cls.name}_version"] = "1"
        frame[f"{cls.name}_model_uri"] = f"models:/{cls.name}/1"  # built locally, as version 1 would be
        frame[f"{cls.name}_error"] = None
    frame["kafka_timestamp"] = pd.Timestamp(SAMPLE_TIME)
    frame["enrich_batch"] = "sample-0"
    frame["enrich_time"] = pd.Timestamp(SAMPLE_TIME)
    return frame[silver_schema().names].reset_index(drop=True)


def silver_frame() -> pd.DataFrame:
    """The silver-like rows of every real shared alert (262 rows: ZTF and Rubin), as pandas (a copy)."""
    return _silver_frame().copy()


def silver_table(frame: pd.DataFrame | None = None) -> pa.Table:
    """``frame`` (default: :func:`silver_frame`) as an Arrow table with :func:`silver_schema`."""
    frame = silver_frame() if frame is None else frame
    return pa.Table.from_pandas(frame, schema=silver_schema(), preserve_index=False)


def silver_spark(spark: SparkSession, frame: pd.DataFrame | None = None) -> DataFrame:
    """The silver-like rows as a Spark DataFrame (same schema as the table the enrichment job writes)."""
    return spark.createDataFrame(silver_table(frame))
