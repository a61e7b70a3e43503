"""Bronze keeps every alert without loss: Spark's native columns equal fastavro's record, for every version.

Every sample message of both surveys (ZTF 1.5 to 4.02, Rubin 3.0 to 11.1) goes through the ingestion job's
native decoding (``with_native``: ``from_avro`` with the version's writer schema and the union reader
schema). Each resulting row must equal the record fastavro decodes from the same bytes, placed in the union
shape: fields the version lacks null, numbers widened, timestamps as their stored integers.

The decoding runs with AlertLake's Spark plugin serving its tasks (one SQL conf per task,
:mod:`alertlake.spark_plugin`), as every job's does: the test checks that the plugin did.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import fastavro
import pyarrow as pa
import pytest

from alertlake.avro_arrow import native_schema
from alertlake.surveys import get_survey
from alertlake.surveys.samples import sample_messages
from jobs import ingest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration


def _plain(avro: Any) -> Any:
    """The Avro schema with logical types dropped: fastavro then returns the integers bronze stores."""
    if isinstance(avro, list):
        return [_plain(a) for a in avro]
    if isinstance(avro, dict):
        return {k: _plain(v) for k, v in avro.items() if k != "logicalType"}
    return avro


def _comparable(value: Any) -> Any:
    """NaN equals NaN for the comparison (the samples carry NaN magnitudes)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _tasks_given_conf(spark: SparkSession) -> int:
    """Tasks of this JVM the plugin has given their conf (it must be loaded in the session)."""
    from alertlake.spark_plugin import PLUGIN_CLASS

    assert PLUGIN_CLASS in (spark.conf.get("spark.plugins") or ""), "the session must load AlertLake's plugin"
    jvm = spark._jvm
    assert jvm is not None
    return int(jvm.org.alertlake.spark.TaskConfPlugin.tasksGivenConf())


@pytest.mark.parametrize("survey_name", ["ztf", "lsst"])
def test_native_columns_equal_the_avro_record_for_every_version(spark: SparkSession, survey_name: str) -> None:
    survey = get_survey(survey_name)
    samples = sample_messages(survey_name)
    # The decoder's output shape for a good message (Rubin's fake alerts lack the ids the canonical mapping
    # needs, so they are built here rather than taken from the decoder, which would quarantine them).
    good = spark.createDataFrame(
        [(i, s.message, s.version, survey.schemaless_body(s.message, s.version)) for i, s in enumerate(samples)],
        "kafka_offset long, raw binary, schema_version string, body binary",
    )
    versions = sorted({s.version for s in samples})
    served_before = _tasks_given_conf(spark)
    rows = ingest.with_native(good, survey_name, versions).select("kafka_offset", "native").toArrow().to_pylist()
    assert _tasks_given_conf(spark) > served_before, "the plugin gave no task its conf: it is not active"

    assert len(rows) == len(samples), "every sample must decode"
    union = pa.struct(list(native_schema(survey_name)))
    plain = {v: fastavro.parse_schema(_plain(survey.avro_schema(v))) for v in versions}
    for row in rows:
        sample = samples[row["kafka_offset"]]
        body = survey.schemaless_body(sample.message, sample.version)
        record = fastavro.schemaless_reader(io.BytesIO(body), plain[sample.version], None)
        expected = pa.array([record], type=union).to_pylist()[0]
        assert _comparable(row["native"]) == _comparable(expected), f"{sample.path} ({sample.version}) differs"
    assert {samples[r["kafka_offset"]].version for r in rows} == set(versions)
    assert len(versions) >= (7 if survey_name == "ztf" else 15), versions
