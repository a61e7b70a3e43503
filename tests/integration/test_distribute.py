"""Distribution end to end on real Kafka and Delta: silver (real alerts) -> filter topics -> our consumer and
fink-client; kill/restart without loss or duplicates; malformed filters (with a start before silver exists);
consumer errors.

Every test writes its own lake (a temporary folder) and its own topics (a unique ``.test-<id>`` suffix on every
live topic name), so live streams and other tests are untouched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from alertlake.consume import ConsumeError, ConsumeOptions, iter_alerts, seek_offset
from alertlake.filters import check_sql_with_spark, load_filters, selected_ids, sql_flag_columns
from alertlake.lake import table_uri
from alertlake.settings import REPO_ROOT, Settings
from tests.silver_sample import silver_frame, silver_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

FINK_VENV = Path.home() / ".cache" / "alertlake" / "fink-client-venv"
COPY_STRIDE = 10**17  # copy k of the sample gets alert ids + k * stride (distinct from every real id)


def lake_settings(services: Settings, root: Path) -> Settings:
    """The services' settings with the lake in ``root``, never registered in Trino: a throw-away lake must not
    appear in the shared catalog."""
    return services.model_copy(update={"lake_root": str(root), "trino_register": False})


def write_silver(spark: SparkSession, settings: Settings, copies: int) -> pd.DataFrame:
    """Write ``copies`` commits of the real sample as silver.alerts (unique alert ids), each batch checked by the
    real quality gate as the enrichment job does (released when held: these are the real alerts); return all rows.
    """
    from alertlake import quality

    frames = []
    for k in range(copies):
        frame = silver_frame()
        frame["alert_id"] = frame["alert_id"] + k * COPY_STRIDE
        frame["enrich_batch"] = f"test:{k}"
        rows = spark.createDataFrame(silver_table(frame))
        verdict = quality.gate_batch(spark, settings, rows, "silver.alerts", f"test:{k}")
        if verdict.status == quality.HELD:
            quality.release(settings, f"test:{k}", "test data: the real shared sample", "test")
        rows.write.format("delta").mode("append").partitionBy("night").save(table_uri(settings, "silver.alerts"))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def expected_messages(spark: SparkSession, frame: pd.DataFrame, suffix: str) -> Counter[tuple[str, int]]:
    """(topic, alert id) of every message the real filters must produce for ``frame``: each exactly once."""
    silver = spark.createDataFrame(silver_table(frame))
    filters = check_sql_with_spark(spark, load_filters(), silver.schema)
    flagged = silver.select("*", *sql_flag_columns(filters)).toPandas()
    out: Counter[tuple[str, int]] = Counter()
    by_id = frame.set_index("alert_id")["survey"]
    for name, ids in selected_ids(filters, flagged).items():
        for alert_id in ids:
            out[(filters[name].topic(by_id[alert_id], suffix), alert_id)] += 1
    return out


def read_topics(settings: Settings, topics: list[str]) -> Counter[tuple[str, int]]:
    """Every message in ``topics`` read back with our consumer: (topic, alert id) -> how many times."""
    options = ConsumeOptions(topics=topics, group_id=f"test-{uuid.uuid4().hex}", idle_seconds=8)
    return Counter((r.topic, r.alert["alert_id"]) for r in iter_alerts(settings, options))


def run_distribute(settings: Settings, suffix: str, *extra: str, env: dict[str, str] | None = None) -> Any:
    """Start ``python -m jobs.distribute`` (available-now, 20 silver files per batch) on the test lake.

    One copy of the sample is 40 silver files (one per night it spans), so each copy makes two batches.
    """
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.distribute",
            "--trigger",
            "available-now",
            "--max-files",
            "20",
            "--topic-suffix",
            suffix,
            "--no-trino",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "ALERTLAKE_LAKE_ROOT": settings.lake_root,
            "ALERTLAKE_TRINO_REGISTER": "false",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: Any, timeout: float = 1500) -> str:
    """Wait for a job started by :func:`run_distribute`; kill it if it overruns (never leave it behind)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"jobs.distribute did not finish in {timeout} s:\n{out[-3000:]}")
    return str(out)


def hits_table(spark: SparkSession, settings: Settings) -> pd.DataFrame:
    return spark.read.format("delta").load(table_uri(settings, "gold.filter_hits")).toPandas()


@pytest.fixture
def suffix(services: Settings) -> Iterator[str]:
    """A unique topic suffix for one test; its topics are deleted afterwards."""
    from alertlake.kafka import admin

    value = f".test-{uuid.uuid4().hex[:8]}"
    yield value
    client = admin(services)
    mine = [t for t in client.list_topics(timeout=10).topics if t.endswith(value)]
    if mine:
        for future in client.delete_topics(mine).values():
            future.result(timeout=30)


def test_distribute_sends_each_selected_alert_once_readable_by_fink_client(
    spark: SparkSession, services: Settings, tmp_path: Path, suffix: str
) -> None:
    settings = lake_settings(services, tmp_path / "lake")
    frame = write_silver(spark, settings, copies=1)
    expected = expected_messages(spark, frame, suffix)
    proc = run_distribute(settings, suffix)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]

    topics = sorted({t for t, _ in expected})
    assert len(topics) >= 6
    assert read_topics(settings, topics) == expected
    # A named consumer group resumes where it stopped: half the messages, the reader closed, then the rest; none
    # read twice (offsets are committed in the background and when the consumer closes, not one by one).
    group, half = f"test-resume-{uuid.uuid4().hex}", sum(expected.values()) // 2
    first = ConsumeOptions(topics=topics, group_id=group, max_alerts=half)
    rest = ConsumeOptions(topics=topics, group_id=group, idle_seconds=8)
    read = [Counter((r.topic, r.alert["alert_id"]) for r in iter_alerts(settings, o)) for o in (first, rest)]
    assert sum(read[0].values()) == half
    assert read[0] + read[1] == expected

    hits = hits_table(spark, settings)
    assert Counter(zip(hits["topic"], hits["alert_id"], strict=True)) == expected
    objects = spark.read.format("delta").load(table_uri(settings, "gold.objects")).toPandas()
    assert objects.groupby(["survey", "object_id"]).size().max() == 1
    assert len(objects) == frame.groupby(["survey", "object_id"]).ngroups
    assert objects["n_alerts"].sum() == len(frame)
    # A supernova seen on four nights of the sample (so in both batches): one row, counts summed across batches.
    sn = objects.set_index("object_id").loc["ZTF18abxhyqv"]
    assert (frame["object_id"] == "ZTF18abxhyqv").sum() == 4
    assert sn["n_alerts"] == 4 and sn["last_alert_id"] == 885458643115015010  # its latest alert (2019-06-04)
    # jobs.objects reads what Spark appended to silver from the Delta log exactly as the snapshot holds it.
    assert_log_reads_like_snapshot(settings)

    # fink-client, unchanged, in its own virtualenv: reads the same alerts with the schema from the key.
    if not (FINK_VENV / "bin" / "python").exists():
        pytest.skip(f"fink-client venv missing at {FINK_VENV} (python -m venv ...; pip install fink-client)")
    script = textwrap.dedent(
        """
        import json, sys
        from fink_client.consumer import AlertConsumer
        topics, servers = json.loads(sys.argv[1]), sys.argv[2]
        config = {"bootstrap.servers": servers, "group.id": sys.argv[3]}
        got, empty = [], 0
        with AlertConsumer(topics, config, survey="ztf") as consumer:
            while empty < 8:
                topic, alert, key = consumer.poll(1.0)
                if topic is None:
                    empty += 1
                    continue
                empty = 0
                got.append([topic, alert["alert_id"], alert["object_id"], alert["supernova_score"]])
        print(json.dumps(got))
        """
    )
    result = subprocess.run(
        [
            str(FINK_VENV / "bin" / "python"),
            "-c",
            script,
            json.dumps(topics),
            settings.kafka_bootstrap_servers,
            f"fink-{uuid.uuid4().hex}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    fink = json.loads(result.stdout.strip().splitlines()[-1])
    assert Counter((t, a) for t, a, _, _ in fink) == expected
    by_id = frame.set_index("alert_id")
    for _, alert_id, object_id, score in fink:
        assert object_id == by_id.loc[alert_id, "object_id"]
        assert score == pytest.approx(by_id.loc[alert_id, "supernova_score"])


def assert_log_reads_like_snapshot(settings: Settings) -> None:
    """The rows jobs.objects reads from silver's Delta log (Spark's Parquet files, partition values from the log)
    equal the snapshot's, types and timestamps included."""
    import pyarrow as pa
    from deltalake import DeltaTable

    from alertlake.lake import delta_location
    from jobs.objects import SILVER, read_columns, read_commits, read_files

    silver = DeltaTable(delta_location(settings, SILVER))
    schema = pa.schema(silver.schema().to_arrow())
    wanted = pa.schema([schema.field(c) for c in read_columns(schema.names)])
    commits = read_commits(settings, -1, silver.version())
    appended = read_files(settings, [c for c in commits if c.skipped is None], wanted)
    snapshot = pa.table(silver.to_pyarrow_table(columns=wanted.names)).cast(wanted)
    order = [("survey", "ascending"), ("alert_id", "ascending")]
    assert appended.num_rows == snapshot.num_rows > 0
    assert appended.sort_by(order).equals(snapshot.sort_by(order))


def test_kill_and_restart_neither_loses_nor_duplicates(
    spark: SparkSession, services: Settings, tmp_path: Path, suffix: str
) -> None:
    """Killed twice on one lake, each way it can die, then run to the end: once between sending a batch and
    recording it (the restart finds those messages in Kafka and records them without sending them again), once
    by SIGKILL at a moment of a later batch (sending or recording)."""
    settings = lake_settings(services, tmp_path / "lake")
    frame = write_silver(spark, settings, copies=6)
    assert frame["alert_id"].is_unique
    expected = expected_messages(spark, frame, suffix)
    topics = sorted({t for t, _ in expected})

    proc = run_distribute(settings, suffix, env={"ALERTLAKE_DISTRIBUTE_FAULT": "after-send:2"})
    out = finish(proc)
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    assert "fault injection" in out
    # The killed batch's messages are in Kafka, not yet in gold.filter_hits.
    in_kafka = read_topics(settings, topics)
    recorded = hits_table(spark, settings)
    assert sum(in_kafka.values()) > len(recorded) > 0
    assert 2 not in set(recorded["distribute_batch"])

    proc = run_distribute(settings, suffix)
    hits_dir = tmp_path / "lake" / "gold" / "filter_hits" / "_delta_log"
    before = len(list(hits_dir.glob("*.json")))
    deadline = time.monotonic() + 300
    # Kill once this run has recorded two batches (batch 2, replayed, and the next) and more remain.
    while time.monotonic() < deadline and len(list(hits_dir.glob("*.json"))) < before + 2:
        time.sleep(0.2)
    time.sleep(0.5)  # land inside a later batch (sending or recording)
    assert proc.poll() is None, "the job finished before it could be killed; give it more batches"
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    assert "found in Kafka; they will be recorded, not sent again" in out, out[-3000:]
    assert 2 in set(hits_table(spark, settings)["distribute_batch"])

    partial = sum(read_topics(settings, topics).values())
    assert 0 < partial < sum(expected.values())
    proc = run_distribute(settings, suffix)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]

    assert read_topics(settings, topics) == expected  # every message exactly once, in every topic
    hits = hits_table(spark, settings)
    assert Counter(zip(hits["topic"], hits["alert_id"], strict=True)) == expected


def test_started_before_silver_with_malformed_filters_streams_the_good_ones_once_silver_appears(
    spark: SparkSession, services: Settings, tmp_path: Path, suffix: str
) -> None:
    """The DAGs may start distribution before enrichment has created silver.alerts: the job waits for the table
    and streams once it appears (it once polled with a Spark check that never saw the table appear). Two of its
    three filters are malformed (an unknown column, a syntax error): each is rejected with a message naming it
    and the problem, and the good one streams."""
    settings = lake_settings(services, tmp_path / "lake")
    folder = tmp_path / "filters"
    folder.mkdir()
    (folder / "solar_system.py").write_text((REPO_ROOT / "filters" / "solar_system.py").read_text())
    (folder / "typo.py").write_text(
        'from alertlake.filters import Filter\nFILTER = Filter(name="typo", description="d", sql="sso_flagg")\n'
    )
    (folder / "broken.py").write_text("from alertlake.filters import Filter\nFILTER = Filter(name=\n")
    proc = run_distribute(settings, suffix, "--trigger", "continuous", "--timeout", "300", "--filters-dir", str(folder))
    lines: list[str] = []
    waiting = threading.Event()

    def drain() -> None:  # keep reading the job's output so it never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "waiting for silver.alerts" in line:
                waiting.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert waiting.wait(180), "the job did not report waiting for silver:\n" + "".join(lines)[-3000:]
        write_silver(spark, settings, copies=1)
        topics = [f"alertlake.ztf.solar_system{suffix}", f"alertlake.lsst.solar_system{suffix}"]
        got: Counter[tuple[str, int]] = Counter()
        deadline = time.monotonic() + 240
        while sum(got.values()) < 7 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(5)
            try:
                got = read_topics(settings, topics)
            except ConsumeError:  # the job has not created its topics yet
                continue
    finally:
        proc.terminate()
        proc.wait(60)
    out = "".join(lines)
    assert sum(got.values()) == 7, f"{dict(got)}\n" + out[-3000:]
    assert "filter 'typo' rejected" in out and "unknown column(s) ['sso_flagg']" in out, out[-3000:]
    assert "filter 'broken' rejected" in out and "syntax error" in out, out[-3000:]


def test_consumer_errors_are_clear(services: Settings) -> None:
    with pytest.raises(ConsumeError, match=r"unknown topic\(s\): alertlake.ztf.no_such_filter"):
        list(iter_alerts(services, ConsumeOptions(topics=["alertlake.ztf.no_such_filter"], max_seconds=2)))
    with pytest.raises(ConsumeError, match="bad offset reset"):
        list(iter_alerts(services, ConsumeOptions(topics=["x"], offset_reset="middle")))
    from alertlake.kafka import ensure_topic

    topic = f"alertlake.ztf.empty.test-{uuid.uuid4().hex[:8]}"
    ensure_topic(services, topic, partitions=1)
    with pytest.raises(ConsumeError, match=re.escape(f"bad offset 5 for {topic}[0]: the partition is empty")):
        seek_offset(services, topic, 0, 5)
    with pytest.raises(ConsumeError, match=r"has partitions 0\.\.0, not 3"):
        seek_offset(services, topic, 3, 0)
    from alertlake.consume import parse_time

    with pytest.raises(ConsumeError, match="bad timestamp 'yesterday-ish'"):
        parse_time("yesterday-ish")
