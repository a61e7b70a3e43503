"""Silver-like batches for the data-quality tests, from the real shared sample alerts.

Canonical columns, quality cuts and the ``features`` and ``sso`` outputs are computed by the real code on the
real sample; the outputs of the trained modules (supernova, anomaly) and of the catalogue cross-match are
filled with in-range values (their models need MLflow artifacts this helper does not build). The schema is the
enrichment job's own ``silver_schema``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def silver_refs() -> list[Any]:
    """One ModuleRef per registered module, version 1."""
    from alertlake import modules as registry
    from jobs.enrich import ModuleRef

    return [
        ModuleRef(name, 1, registry.model_uri(name, 1), dict(cls.outputs))
        for name, cls in sorted(registry.all_modules().items())
    ]


def silver_table(batch_key: str, kafka_time: dt.datetime | None = None) -> pa.Table:
    """Every real sample alert as a silver row of batch ``batch_key``."""
    from alertlake import modules as registry
    from alertlake.modules import sample_alerts
    from jobs.enrich import silver_schema

    alerts = sample_alerts()
    refs = silver_refs()
    frame = alerts.copy()
    mods = registry.all_modules()
    for name in ("features", "sso"):
        outputs = mods[name]().prepare().predict(frame)
        frame = frame.join(outputs)
    rng = np.random.default_rng(7)
    frame["supernova_score"] = rng.uniform(0, 1, len(frame))
    frame["supernova_flag"] = frame["supernova_score"] > 0.5
    frame["anomaly_score"] = rng.uniform(0.3, 0.8, len(frame))
    frame["anomaly_flag"] = frame["anomaly_score"] > 0.7
    for col, typ in mods["xmatch"].outputs.items():
        frame[col] = pd.Series([None] * len(frame), dtype="float64" if typ == "double" else "object")
    for ref in refs:
        frame[f"{ref.name}_version"] = ref.version
        frame[f"{ref.name}_model_uri"] = ref.uri
        frame[f"{ref.name}_error"] = None
    sent = kafka_time or dt.datetime(2026, 11, 24, 20, tzinfo=dt.UTC)
    frame["kafka_timestamp"] = [sent + dt.timedelta(seconds=i) for i in range(len(frame))]
    frame["enrich_time"] = frame["kafka_timestamp"] + pd.to_timedelta(rng.uniform(1, 30, len(frame)), unit="s")
    frame["enrich_batch"] = batch_key
    schema = silver_schema(refs)
    frame["enrich_time"] = frame["enrich_time"].dt.floor("us")
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)


def silver_frame(spark: SparkSession, batch_key: str, **kwargs: Any) -> DataFrame:
    """:func:`silver_table` as a Spark DataFrame."""
    return spark.createDataFrame(silver_table(batch_key, **kwargs))
