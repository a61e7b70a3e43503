"""The stack is real: Kafka -> Spark Structured Streaming -> Delta -> Trino, and MLflow's registry."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import fastavro
import pandas as pd
import pytest

from alertlake import kafka, trino
from alertlake.lake import checkpoint_uri, table_uri
from alertlake.settings import Settings
from alertlake.spark import kafka_options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

SMOKE_SCHEMA = {
    "type": "record",
    "name": "smoke",
    "fields": [
        {"name": "alert_id", "type": "long"},
        {"name": "object_id", "type": "string"},
        {"name": "ra", "type": "double"},
        {"name": "dec", "type": "double"},
        {"name": "mag", "type": ["null", "float"], "default": None},
    ],
}


def _avro(record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(SMOKE_SCHEMA), record)
    return buf.getvalue()


def test_kafka_to_delta_to_trino(services: Settings, spark: SparkSession) -> None:
    from pyspark.sql.avro.functions import from_avro
    from pyspark.sql.functions import col

    run = uuid.uuid4().hex[:10]
    topic = f"test.smoke.{run}"
    kafka.ensure_topic(services, topic, partitions=2)
    records = [
        {
            "alert_id": i,
            "object_id": f"OBJ{i % 7}",
            "ra": (i * 13.7) % 360,
            "dec": -30 + i % 60,
            "mag": None if i % 5 == 0 else 17.0 + i / 100,
        }
        for i in range(200)
    ]
    producer = kafka.producer(services)
    for rec in records:
        producer.produce(topic, key=str(rec["alert_id"]).encode(), value=_avro(rec))
    assert producer.flush(30) == 0

    name = f"test_smoke.t_{run}"
    stream = (
        spark.readStream.format("kafka")
        .options(**kafka_options(services))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select(from_avro(col("value"), json.dumps(SMOKE_SCHEMA)).alias("a"), "partition", "offset")
        .select("a.*", "partition", "offset")
    )
    query = (
        stream.writeStream.format("delta")
        .option("checkpointLocation", checkpoint_uri(services, f"test_smoke_{run}"))
        .trigger(availableNow=True)
        .start(table_uri(services, name))
    )
    query.awaitTermination(180)
    assert query.exception() is None

    delta_rows = spark.read.format("delta").load(table_uri(services, name)).count()
    assert delta_rows == len(records)

    assert trino.register_table(services, name) is True
    assert trino.register_table(services, name) is False  # idempotent
    rows = trino.query(services, f"SELECT alert_id, object_id, ra, dec, mag FROM lake.{name} ORDER BY alert_id")
    assert len(rows) == len(records)
    for got, want in zip(rows, records, strict=True):
        assert got[0] == want["alert_id"] and got[1] == want["object_id"]
        assert got[2] == pytest.approx(want["ra"]) and got[3] == pytest.approx(want["dec"])
        assert (got[4] is None) == (want["mag"] is None)
        if want["mag"] is not None:
            assert got[4] == pytest.approx(want["mag"], rel=1e-6)


def test_mlflow_register_alias_and_load(services: Settings, tmp_path: Path) -> None:
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.pyfunc import PythonModel

    class Brightness(PythonModel):
        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return pd.DataFrame({"flux": 10 ** (-0.4 * (model_input["mag"] - 31.4))})

    mlflow.set_tracking_uri(services.mlflow_tracking_uri)
    mlflow.set_experiment("alertlake-tests")
    name = f"test_brightness_{uuid.uuid4().hex[:8]}"
    sample = pd.DataFrame({"mag": [18.0, 20.5, 22.0]})
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Brightness(),
            signature=infer_signature(sample, Brightness().predict(None, sample)),
            registered_model_name=name,
            input_example=sample,
        )
    client = mlflow.MlflowClient(services.mlflow_tracking_uri)
    version = str(info.registered_model_version)
    assert version == "1"  # a new registered model starts at version 1
    client.set_registered_model_alias(name, "champion", version)
    assert client.get_model_version_by_alias(name, "champion").version == version
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion", dst_path=str(tmp_path))  # not a new /tmp folder
    out = loaded.predict(sample)
    assert list(out.columns) == ["flux"]
    assert out["flux"].tolist() == pytest.approx([10 ** (-0.4 * (m - 31.4)) for m in sample["mag"]])


def _first_commit(path: Path) -> dict:
    actions: dict = {}
    for line in (path / "_delta_log" / f"{0:020d}.json").read_text().splitlines():
        actions.update(json.loads(line))
    meta = actions["metaData"]
    return {
        "protocol": actions["protocol"],
        "schema": json.loads(meta["schemaString"]),
        "partitionColumns": meta["partitionColumns"],
        "configuration": meta["configuration"],
        "actions": sorted(actions),
    }


def test_tables_created_by_delta_rs_are_those_spark_would_create(spark: SparkSession, tmp_path: Path) -> None:
    """The lake's tables are created by delta-rs (milliseconds, no Spark job): their first commit must be the one a
    Spark append of no rows writes, so that Spark, Trino and delta-rs see the same table either way."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from alertlake.lake import ensure_table
    from jobs import distribute, enrich, ingest

    silver = enrich.silver_schema([])
    tables = {
        "bronze_ztf": (ingest.bronze_schema("ztf"), "night", ingest.BRONZE_PROPERTIES),
        "bronze_lsst": (ingest.bronze_schema("lsst"), "night", ingest.BRONZE_PROPERTIES),
        "quarantine": (ingest.QUARANTINE_SCHEMA, None, {}),
        "silver": (silver, "night", enrich.silver_properties(silver)),
        "filter_hits": (distribute.FILTER_HITS_SCHEMA, "night", {}),
    }
    for name, (schema, partition, properties) in tables.items():
        by_spark, by_rs = tmp_path / "spark" / name, tmp_path / "delta-rs" / name
        writer = spark.createDataFrame([], from_arrow_schema(schema)).write.format("delta").mode("append")
        # A Spark append sets only delta.* properties (others, such as bronze's parquet.*, by ALTER TABLE).
        delta_keys = {k: v for k, v in properties.items() if k.startswith("delta.")}
        other_keys = {k: v for k, v in properties.items() if k not in delta_keys}
        for key, value in {"delta.enableDeletionVectors": "false", **delta_keys}.items():
            writer = writer.option(key, value)
        (writer.partitionBy(partition) if partition else writer).save(f"file://{by_spark}")
        ensure_table(f"file://{by_rs}", schema, partition, properties)
        ensure_table(f"file://{by_rs}", schema, partition, properties)  # exists: nothing written
        expected = _first_commit(by_spark)
        expected["configuration"] = {**expected["configuration"], **other_keys}
        assert _first_commit(by_rs) == expected, name
        detail = spark.sql(f"DESCRIBE DETAIL delta.`file://{by_rs}`").first()
        assert detail is not None and other_keys.items() <= detail["properties"].items(), name
        assert [p.name for p in (by_rs / "_delta_log").glob("*.json")] == [f"{0:020d}.json"]
        read = spark.read.format("delta").load(f"file://{by_rs}")
        assert read.schema == spark.read.format("delta").load(f"file://{by_spark}").schema, name
