"""The ingestion job's Python decoder (the Arrow UDF's function), run on real samples without Spark.

It hands Spark each good message's schemaless body by position in the raw bytes when the body is a verbatim
slice (so a batch holds every message once), and as its own bytes when it is not (a deflated ZTF block).
"""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow as pa
import pytest

from alertlake.surveys import get_survey
from alertlake.surveys.samples import sample_messages
from jobs.ingest import DECODED, DECODED_STRUCT, body_span, decoder, offset_ranges, range_options, rows_decoder


def decode(survey: str, messages: list[bytes], topic: str = "t") -> list[dict]:
    """Decode ``messages`` as Spark's Arrow UDF would (value, topic, partition, offset arrays); each row also
    gets its ``raw`` bytes, which Spark keeps beside the decoded struct."""
    n = len(messages)
    out = decoder(survey, None)(
        pa.array(messages, pa.binary()),
        pa.array([topic] * n),
        pa.array([0] * n, pa.int32()),
        pa.array(list(range(n)), pa.int64()),
    )
    assert out.type == DECODED_STRUCT
    return [{**row, "raw": raw} for row, raw in zip(out.to_pylist(), messages, strict=True)]


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_good_messages_carry_their_body_as_a_span_of_the_raw_bytes(survey: str) -> None:
    handler = get_survey(survey)
    samples = sample_messages(survey, real_only=True)  # lsst-alert-packet's fake alerts lack required ids
    rows = decode(survey, [s.message for s in samples])
    assert len(rows) == len(samples)
    for sample, row in zip(samples, rows, strict=True):
        assert row["reason"] is None, row["error"]
        assert row["body"] is None
        start, length = row["body_offset"], row["body_length"]
        assert row["raw"][start : start + length] == handler.schemaless_body(sample.message, row["schema_version"])


def test_a_deflated_ztf_block_is_passed_as_its_own_bytes() -> None:
    ztf = get_survey("ztf")
    sample = sample_messages("ztf", "3.3")[0]
    reader = fastavro.reader(io.BytesIO(sample.message))
    records = list(reader)
    buffer = io.BytesIO()
    fastavro.writer(buffer, reader.writer_schema, records, codec="deflate")
    deflated = buffer.getvalue()
    (row,) = decode("ztf", [deflated])
    assert row["reason"] is None, row["error"]
    assert row["body_offset"] is None and row["body_length"] is None
    assert row["body"] == ztf.schemaless_body(deflated, "3.3")
    assert fastavro.schemaless_reader(io.BytesIO(row["body"]), reader.writer_schema) == records[0]


def test_bad_messages_keep_their_raw_bytes_and_no_body() -> None:
    rows = decode("ztf", [b"", b"\x00garbage"])
    for row in rows:
        assert row["reason"] is not None and row["error"]
        assert row["body"] is None and row["body_offset"] is None
    assert [r["raw"] for r in rows] == [b"", b"\x00garbage"]


def test_rows_decoder_without_bytes_gives_the_udf_rows_with_no_bytes() -> None:
    """The real-time pipeline's form (``mapInArrow``, its lander reading the bytes again): Spark's Kafka
    columns in, :data:`DECODED` rows out, the same fields as the UDF's but no raw bytes and no body."""
    messages = [s.message for s in sample_messages("ztf", real_only=True)] + [b"\x00garbage"]
    n = len(messages)
    stamp = pa.array([1_767_600_000_000_000 + i for i in range(n)], pa.timestamp("us", tz="Etc/UTC"))
    columns = {
        "topic": pa.array(["t"] * n),
        "partition": pa.array([0] * n, pa.int32()),
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": stamp,
        "value": pa.array(messages, pa.binary()),
    }
    kafka = pa.RecordBatch.from_pydict(columns)
    (out,) = list(rows_decoder("ztf", None)(iter([kafka])))
    assert out.schema == DECODED
    rows = out.to_pylist()
    udf = decode("ztf", messages)
    for i, (row, full) in enumerate(zip(rows, udf, strict=True)):
        assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("t", 0, i)
        assert row["kafka_timestamp"] == stamp[i].as_py()
        assert row["raw"] is None and row["body"] is None and row["body_offset"] is None
        bytes_fields = ("raw", "body", "body_offset", "body_length")
        assert {k: v for k, v in row.items() if k not in bytes_fields and not k.startswith("kafka_")} == {
            k: v for k, v in full.items() if k not in bytes_fields
        }
    assert rows[-1]["reason"] is not None and all(r["reason"] is None for r in rows[:-1])


def test_body_span() -> None:
    assert body_span(b"head-BODY-tail", b"BODY") == (5, 4)
    assert body_span(b"head-BODY-tail", b"BODX") is None


def test_offset_ranges_of_a_batch_per_topic_and_partition() -> None:
    """What a background bronze append's marker records: first and last offset of each partition read."""
    keys = [
        {"kafka_topic": "ztf", "kafka_partition": p, "kafka_offset": o}
        for p, o in [(0, 7), (1, 3), (0, 5), (1, 4), (0, 9)]
    ] + [{"kafka_topic": "lsst", "kafka_partition": 0, "kafka_offset": 12}]
    assert offset_ranges(keys) == {"ztf": {"0": (5, 9), "1": (3, 4)}, "lsst": {"0": (12, 12)}}
    assert offset_ranges([]) == {}


def test_range_options_read_exactly_the_marked_messages() -> None:
    """Recovery reads a marked batch back: Kafka's ending offsets are exclusive, so one past each last offset."""
    options = range_options({"ztf": {"0": (5, 9), "1": (3, 4)}})
    assert json.loads(options["assign"]) == {"ztf": [0, 1]}
    assert json.loads(options["startingOffsets"]) == {"ztf": {"0": 5, "1": 3}}
    assert json.loads(options["endingOffsets"]) == {"ztf": {"0": 10, "1": 5}}
