"""Exactly once under SIGKILL: every alert in bronze once, every bad message in quarantine once.

A real simulator streams >= 50,000 ZTF alerts (plus every class of bad message) into a real Kafka topic
while the real ingestion process (Spark -> Delta) is killed with SIGKILL three times at random points and
restarted. The lake is then checked against Kafka offset by offset.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable

from alertlake.settings import Settings
from alertlake.simulate import Summary, simulate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ALERTS = 50_000


def _ingest(env: dict[str, str], trigger: str, log: Path, max_offsets: int = 5000) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "jobs.ingest", "--survey", "ztf", "--trigger", trigger, "--interval", "1 second"]
    cmd += ["--max-offsets", str(max_offsets)]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _kafka_values(settings: Settings, coords: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes | None]:
    """The message bytes at each of ``coords``, read from Kafka one by one."""
    from confluent_kafka import TopicPartition

    from alertlake import kafka

    consumer = kafka.consumer(settings, f"audit-{uuid.uuid4().hex[:6]}")
    values: dict[tuple[str, int, int], bytes | None] = {}
    try:
        for topic, partition, offset in coords:
            consumer.assign([TopicPartition(topic, partition, offset)])
            message = consumer.consume(1, timeout=10)[0]
            values[(topic, partition, offset)] = message.value()
        return values
    finally:
        consumer.close()


def _kafka_coordinates(settings: Settings, topic: str) -> set[tuple[str, int, int]]:
    from confluent_kafka import TopicPartition

    from alertlake import kafka

    consumer = kafka.consumer(settings, f"audit-{uuid.uuid4().hex[:6]}")
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        coords = set()
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            coords |= {(topic, p, o) for o in range(low, high)}
        return coords
    finally:
        consumer.close()


def test_sigkill_during_ingestion_loses_and_duplicates_nothing(services: Settings, tmp_path: Path) -> None:
    prefix = f"fault-{uuid.uuid4().hex[:8]}-"
    lake = tmp_path / "lake"
    # No warm-up (an optimisation of the first batches' speed, 38-45 s per start on a slow machine): four starts.
    # The JIT's optimising tier, which tests/conftest.py turns off for the other tests' short runs on a few hundred
    # alerts: on 5,000-alert batches, bench/stages.py measured bronze's from_avro 3.4 s with it against 11.7 s
    # without, the whole bronze write 8.3 s against 16.3 s.
    env = {
        **os.environ,
        "ALERTLAKE_TOPIC_PREFIX": prefix,
        "ALERTLAKE_LAKE_ROOT": str(lake),
        "ALERTLAKE_INGEST_WARM_UP_ALERTS": "0",
        "ALERTLAKE_SPARK_JAVA_OPTIONS": Settings.model_fields["spark_java_options"].default,
        "ALERTLAKE_TRINO_REGISTER": "false",  # a throw-away lake stays out of the shared catalog
    }
    settings = Settings(topic_prefix=prefix, lake_root=str(lake))
    topic = f"{prefix}ztf"
    rng = random.Random(int(time.time()))
    log = tmp_path / "ingest.log"

    # The survey keeps sending while the broker is being killed.
    sent: dict[str, Summary] = {}

    def stream() -> None:
        sent["summary"] = simulate(
            settings,
            "ztf",
            loops=10_000,
            night="2026-11-24",
            bad=True,
            limit=ALERTS,
            drop_cutouts=True,
            rate=1_500,
            keep_ids=True,
        )

    sender = threading.Thread(target=stream)
    sender.start()
    time.sleep(3)  # the topic exists once the first message is acknowledged

    kills = []
    commits = lake / "bronze" / "ztf_alerts" / "_delta_log"
    for _ in range(3):
        proc = _ingest(env, "continuous", log)
        # Kill only once this run has committed something, then at a random moment of a later batch.
        before = len(list(commits.glob("*.json")))
        deadline = time.monotonic() + 600
        while len(list(commits.glob("*.json"))) <= before and time.monotonic() < deadline:
            assert proc.poll() is None, f"ingestion died by itself:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        delay = rng.uniform(0.5, 12)
        time.sleep(delay)
        assert proc.poll() is None, f"ingestion died by itself:\n{log.read_text()[-3000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(round(delay, 1))
    sender.join()
    summary = sent["summary"]
    # Drain what is left in one bounded run, as `alertlake replay` or the DAG would, in larger batches (fewer of
    # them) than the killed runs'.
    final = _ingest(env, "available-now", log, max_offsets=15_000)
    assert final.wait(timeout=1200) == 0, log.read_text()[-5000:]

    bronze = (
        DeltaTable(str(lake / "bronze" / "ztf_alerts"))
        .to_pyarrow_table(columns=["alert_id", "kafka_topic", "kafka_partition", "kafka_offset", "night"])
        .to_pylist()
    )
    quarantine = (
        DeltaTable(str(lake / "bronze" / "quarantine"))
        .to_pyarrow_table(columns=["kafka_topic", "kafka_partition", "kafka_offset", "reason", "alert_id", "raw"])
        .to_pylist()
    )

    def coords(rows: list[dict]) -> list[tuple[str, int, int]]:
        return [(r["kafka_topic"], r["kafka_partition"], r["kafka_offset"]) for r in rows]

    in_kafka = _kafka_coordinates(settings, topic)
    assert len(in_kafka) == summary.alerts + summary.bad >= ALERTS
    # Every Kafka message is in exactly one of bronze or quarantine, exactly once.
    assert len(coords(bronze)) == len(set(coords(bronze))), "a message was written twice to bronze"
    assert len(coords(quarantine)) == len(set(coords(quarantine))), "a message was written twice to quarantine"
    assert set(coords(bronze)).isdisjoint(coords(quarantine))
    missing = in_kafka - set(coords(bronze)) - set(coords(quarantine))
    assert not missing, f"{len(missing)} messages lost, e.g. {sorted(missing)[:5]} (kills after {kills} s)"
    assert set(coords(bronze)) | set(coords(quarantine)) == in_kafka

    # Every alert once: unique ids in bronze, and exactly the distinct ids the survey sent.
    ids = [r["alert_id"] for r in bronze]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(summary.alert_ids)
    assert {r["night"] for r in bronze} == {"2026-11-24"}

    # Every bad message in quarantine once, with its reason; repeated alert ids as duplicates.
    reasons = Counter(r["reason"] for r in quarantine)
    expected = Counter(summary.bad_by_reason)
    expected["duplicate_alert_id"] += len(summary.alert_ids) - len(set(summary.alert_ids))
    assert reasons == expected
    # Each quarantined message keeps its bytes exactly as Kafka holds them (bad ones and duplicates alike).
    # Duplicates matter most here: the job keeps no raw bytes of good messages and reads them again.
    duplicates = [r for r in quarantine if r["reason"] == "duplicate_alert_id"]
    others = [r for r in quarantine if r["reason"] != "duplicate_alert_id"]
    assert duplicates, "the stream must have carried duplicate alert ids"
    pick = random.Random(7)
    sample = pick.sample(duplicates, min(30, len(duplicates))) + pick.sample(others, min(30, len(others)))
    originals = _kafka_values(settings, coords(sample))
    for row, where in zip(sample, coords(sample), strict=True):
        assert row["raw"] == originals[where], f"quarantined bytes of {where} ({row['reason']}) differ from Kafka's"
