"""Quarantine rows keep each message's bytes exactly as Kafka holds them, whichever way they are appended: a
batch's few rows collected and appended by delta-rs with its duplicates' bytes fetched one by one from Kafka,
or many rows written by Spark with the batch read again from Kafka. Real Kafka, Spark and Delta."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deltalake import DeltaTable

from alertlake import kafka
from alertlake.settings import Settings
from alertlake.simulate import simulate
from tests.integration.test_enrich import ingest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration


def test_fetch_values_reads_exact_bytes_and_reports_what_is_not_there(services: Settings) -> None:
    topic = f"test-fetch-{uuid.uuid4().hex[:8]}"
    kafka.ensure_topic(services, topic, partitions=2)
    producer = kafka.producer(services)
    sent = {(p, i): f"message {p}:{i} ".encode() * (i + 1) for p in (0, 1) for i in range(40)}
    for (p, _), value in sent.items():
        producer.produce(topic, value=value, partition=p)
    assert producer.flush(30) == 0
    wanted = [(topic, p, i) for p, i in [(0, 0), (0, 39), (1, 7), (1, 8), (0, 20)]]
    absent = [(topic, 0, 40), (topic, 1, 10**9), (topic, 5, 0), (f"{topic}-nope", 0, 0)]
    try:
        found = kafka.fetch_values(services, wanted + absent, timeout=5)
    finally:
        kafka.admin(services).delete_topics([topic])
    assert {c: found[c] for c in wanted} == {(t, p, i): sent[(p, i)] for t, p, i in wanted}
    assert all(found[c] is None for c in absent)


def _whole_topic(settings: Settings, topic: str) -> dict[tuple[str, int, int], bytes | None]:
    """Every message of ``topic`` by coordinates, read in order from the start of each partition."""
    from confluent_kafka import TopicPartition

    consumer = kafka.consumer(settings, f"test-quarantine-{uuid.uuid4().hex[:6]}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        values: dict[tuple[str, int, int], bytes | None] = {}
        deadline = time.monotonic() + 120
        while len(values) < sum(ends.values()):
            assert time.monotonic() < deadline, f"read {len(values)} of {sum(ends.values())} messages of {topic}"
            for message in consumer.consume(500, timeout=10):
                assert message.error() is None, message.error()
                partition, offset = message.partition(), message.offset()
                assert partition is not None and offset is not None
                values[(topic, partition, offset)] = message.value()
        return values
    finally:
        consumer.close()


@pytest.mark.parametrize("collect_rows", [2_000, -1], ids=["delta-rs", "spark"])
def test_quarantine_keeps_kafka_bytes_both_ways(
    spark: SparkSession, services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collect_rows: int
) -> None:
    from jobs import ingest as ingest_job

    monkeypatch.setattr(ingest_job, "QUARANTINE_COLLECT_ROWS", collect_rows)
    prefix = f"test-quarantine-{uuid.uuid4().hex[:8]}-"
    lake = services.model_copy(
        update={"lake_root": str(tmp_path / "lake"), "topic_prefix": prefix, "trino_register": False}
    )
    # Copy 0 twice: the second loop's alerts are all duplicates of the first's, and every class of bad message.
    sent = simulate(lake, "ztf", loops=1, night="2026-11-22", bad=True, drop_cutouts=True, keep_ids=True)
    again = simulate(lake, "ztf", loops=1, night="2026-11-22", bad=True, drop_cutouts=True, keep_ids=True)
    try:
        ingest(spark, lake, sent.topic, "ingest_test_quarantine", max_offsets=400)
        rows = DeltaTable(str(tmp_path / "lake" / "bronze" / "quarantine")).to_pyarrow_table().to_pylist()
        coords = [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows]
        in_kafka = _whole_topic(services, sent.topic)
    finally:
        kafka.admin(services).delete_topics([sent.topic])

    reasons = Counter(r["reason"] for r in rows)
    expected = Counter(sent.bad_by_reason) + Counter(again.bad_by_reason)
    ids = sent.alert_ids + again.alert_ids
    expected["duplicate_alert_id"] += len(ids) - len(set(ids))
    assert reasons == expected
    assert reasons["duplicate_alert_id"] > 200  # the second copy: many duplicates, spread over several batches
    assert len(set(coords)) == len(coords)
    assert all(in_kafka[c] is not None for c in coords)
    differ = [(c, r["reason"]) for c, r in zip(coords, rows, strict=True) if r["raw"] != in_kafka[c]]
    assert not differ, f"{len(differ)} quarantined messages differ from Kafka's bytes, e.g. {differ[:3]}"
