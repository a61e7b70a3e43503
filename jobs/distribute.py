"""silver.alerts -> one Kafka topic per filter and survey, exactly once; gold.filter_hits and gold.objects.

Every micro-batch of new silver rows (``readStream`` on the Delta table; the same code runs continuously or as a
bounded ``availableNow`` catch-up) goes through:

1. the data-quality gate (:func:`alertlake.quality.distributable`: only rows of batches that passed the checks
   or were released by an operator);
2. every loaded filter (:mod:`alertlake.filters`; SQL filters are computed by Spark in the same query that
   brings the batch to the driver, Python filters on the driver with pandas);
3. Kafka: each selected alert to ``alertlake.<survey>.<filter>``, value = the enriched alert as schemaless Avro,
   key = that Avro schema as JSON (Fink's convention, see :mod:`alertlake.consume`), with headers naming the
   job and batch; idempotent producer, every delivery confirmed before going on;
4. ``gold.filter_hits``: one row per message sent (its topic, partition and offset), appended with Delta
   ``txnAppId``/``txnVersion`` = (job, batch id);
5. ``gold.objects`` (one row per survey and object) is kept current beside it, off the latency path, by
   :mod:`jobs.objects` (in a thread of this process, or in a process of its own).

Exactly once across a kill at any instant
-----------------------------------------
Spark re-runs an unfinished batch with the same id and the same rows after a restart (the checkpoint fixes
each batch's range before it runs). Kafka and Delta cannot commit together, so the job makes the re-run
recognise what the killed run already did:

* killed after step 4 (hits recorded): the batch id is at most the job's last recorded batch in
  ``gold.filter_hits``: nothing is produced again; step 4 is a no-op by its txn version. Step 5 has its own
  transaction in gold.objects and is idempotent by it.
* killed during or after step 3, before step 4: some messages of the batch are in Kafka but not recorded. A
  process therefore starts (:meth:`DistributeJob.recover`, before its first batch) by reading every live topic
  from just after the last recorded offset of each partition to its end: any message there carrying this job's
  header was sent by the killed run, so its (topic, alert id) counts as sent in the first batch that produces
  (and is recorded in step 4 with its real partition and offset); only the rest is produced. Only a new process
  needs this: within a process a failed delivery fails the batch, which stops the query, and the next process
  recovers.
* killed before step 3: nothing was sent; the re-run sends everything.

So no message is lost (every selected alert is produced unless found in Kafka) and none is duplicated (nothing
found in Kafka or recorded is produced again; the idempotent producer removes retries within a session). This
relies on this job being the only writer of its topics with its app id; replays write other topics.

A batch held by the quality gate and released later is not re-read by the stream (the stream has moved on):
``alertlake replay filter`` sends it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from alertlake.consume import HEADER_ALERT_ID, HEADER_APP, HEADER_BATCH, schema_key, stream_schema
from alertlake.filters import FILTERS_DIR, SQL_FLAG_PREFIX, FilterSet, check_sql_with_spark, evaluate, load_filters
from alertlake.lake import append_once, delta_location, ensure_table, read_columns, table_exists, table_uri
from alertlake.settings import Settings, get_settings, job_settings
from alertlake.spark import Query, ddl_schema, projection, start_stream, supervise
from jobs import objects

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("alertlake.distribute")

SILVER = "silver.alerts"
FILTER_HITS = "gold.filter_hits"
OBJECTS = "gold.objects"
#: Fault injection for the kill/restart test: ``after-send:<batch id>`` SIGKILLs the process once that batch's
#: messages are all delivered and before they are recorded (the hardest window to recover from).
FAULT_ENV = "ALERTLAKE_DISTRIBUTE_FAULT"
#: The live distribution job's app id (Delta txnAppId, Kafka header, checkpoint name).
APP_ID = "distribute"

FILTER_HITS_SCHEMA = pa.schema(
    [
        pa.field("survey", pa.string()),
        pa.field("alert_id", pa.int64()),
        pa.field("object_id", pa.string()),
        pa.field("filter", pa.string()),
        pa.field("topic", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("sent_at", pa.timestamp("us", tz="UTC")),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("night", pa.string()),
        pa.field("distribute_app", pa.string()),
        pa.field("distribute_batch", pa.int64()),
    ]
)

#: Silver columns the distribution brings to the driver beside the filters' own: gold.filter_hits records them.
HIT_COLUMNS = ("survey", "alert_id", "object_id", "kafka_timestamp", "night")


def distributable_rows(spark: SparkSession, settings: Settings, silver: DataFrame) -> DataFrame:
    """The quality gate: only rows of batches that passed the checks or were released (fail closed)."""
    from alertlake import quality

    return quality.distributable(spark, settings, silver)


def filter_frame(table: pa.Table, filters: FilterSet) -> Any:
    """What the filters read of a batch, as pandas: the SQL filters' flags and the Python filters' columns.

    ``history`` stays Arrow-backed (:func:`alertlake.filters.history_entries` flattens it in place); converting
    every light curve of a 20,000-alert batch to Python objects took 0.7 s.
    """
    import pandas as pd

    wanted = {"survey"} | {c for f in filters if f.sql is None for c in f.read_columns()}
    plain = [c for c in table.column_names if (c in wanted or c.startswith(SQL_FLAG_PREFIX)) and c != "history"]
    frame = table.select(plain).to_pandas()
    if "history" in wanted and "history" in table.column_names:
        frame["history"] = pd.Series(pd.arrays.ArrowExtensionArray(table.column("history")), index=frame.index)
    return frame


@dataclass
class Sent:
    """Where one alert of one filter went."""

    partition: int
    offset: int


@dataclass
class DistributeJob:
    """Distribution of silver rows by ``filters`` into their topics (``topic_suffix`` for replays)."""

    settings: Settings
    filters: FilterSet
    app_id: str = APP_ID
    topic_suffix: str = ""
    producer_overrides: dict[str, Any] = field(default_factory=dict)
    _producer: Any = None
    _recorded_batch: int = -1
    _recovered: bool = False
    _already: dict[tuple[str, int], Sent] = field(default_factory=dict)  # sent by a killed run, not recorded
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def hits_uri(self) -> str:
        return table_uri(self.settings, FILTER_HITS)

    def topics(self) -> list[str]:
        """Every topic this job writes."""
        return sorted(f.topic(s, self.topic_suffix) for f in self.filters for s in f.surveys)

    def prepare(self, spark: SparkSession, silver_schema: Any | None = None) -> None:
        """Create the gold tables and topics; re-check SQL filters with Spark against silver's real schema."""
        from alertlake import trino
        from alertlake.kafka import ensure_topic

        ensure_table(self.hits_uri, FILTER_HITS_SCHEMA, "night")
        if silver_schema is not None:
            self.filters = check_sql_with_spark(spark, self.filters, silver_schema)
        for topic in self.topics():
            ensure_topic(self.settings, topic)
        trino.register_tables(self.settings, [FILTER_HITS])
        self.recover(spark)

    def recover(self, spark: SparkSession) -> None:
        """Before the first batch: find the last batch recorded and the messages a killed run sent but did not
        record (read from Kafka, see the module docstring), and connect the producer. Done at start, so the
        first batch does not wait for it (4.6 s in the first batch of a benchmark run)."""
        self._recorded_batch = self._last_recorded_batch(spark)
        self._already = self._sent_by_killed_run()
        self._recovered = True
        self.producer.poll(0)

    @property
    def producer(self) -> Any:
        if self._producer is None:
            from alertlake.kafka import producer

            self._producer = producer(self.settings, **{"linger.ms": 5, **self.producer_overrides})
        return self._producer

    # --- one batch ------------------------------------------------------------------------------------------

    def write_batch(self, batch: DataFrame, batch_id: int, gated: bool = False, table: pa.Table | None = None) -> None:
        """Distribute one micro-batch exactly once (see the module docstring).

        ``gated``: the caller has applied the quality gate already (the real-time pipeline distributes a batch
        it has just enriched, only when its verdict passed), so the verdict table is not read again.
        ``table``: the batch's :meth:`read_columns` (and maybe more), already on the driver (the pipeline brings
        them there with the enrichment's figures).
        """
        t0 = time.monotonic()
        spark = batch.sparkSession
        if not self._recovered:
            self.recover(spark)
        if batch_id <= self._recorded_batch:
            log.info("%s batch %d: already recorded in %s, not sent again", self.app_id, batch_id, FILTER_HITS)
            return
        rows = batch if gated else distributable_rows(spark, self.settings, batch).persist()
        try:
            if table is None:
                table = self._read(rows)
            t_read = time.monotonic()
            if table.num_rows == 0:
                return
            hits, key, values = self._select_and_encode(rows, table)
            t_encoded = time.monotonic()
            already, self._already = self._already, {}
            sent = self._produce(table, hits, batch_id, already, key, values)
        finally:
            if not gated:
                rows.unpersist()
        t_sent = time.monotonic()
        if os.environ.get(FAULT_ENV) == f"after-send:{batch_id}":
            log.warning("%s: fault injection: killing the process after sending batch %d", self.app_id, batch_id)
            os.kill(os.getpid(), signal.SIGKILL)
        self._record_hits(table, sent, batch_id)
        self._recorded_batch = batch_id
        log.info(
            "%s batch %d: %d alerts, %d messages (%s) in %.1f s: read %.1f, filter+encode %.1f, send %.1f, hits %.1f",
            self.app_id,
            batch_id,
            table.num_rows,
            len(sent),
            ", ".join(f"{name} {int(mask.sum())}" for name, mask in hits.items()),
            time.monotonic() - t0,
            t_read - t0,
            t_encoded - t_read,
            t_sent - t_encoded,
            time.monotonic() - t_sent,
        )

    def warm_up(self, rows: DataFrame, table: pa.Table | None = None) -> None:
        """Run the filters over ``rows`` (``table``: their :meth:`read_columns`, if already on the driver) and
        encode what they select, sending and recording nothing: the real-time pipeline does it on its warm-up
        alerts, so that its first batch does not compile these paths."""
        if table is None:
            table = self._read(rows)
        if table.num_rows:
            self._select_and_encode(rows, table)

    def read_columns(self, rows: DataFrame) -> dict[str, Any]:
        """What the filters read (and gold.filter_hits records) of ``rows``, by name: the silver columns of
        :data:`HIT_COLUMNS`, those the Python filters read, and the SQL filters' flags (computed by Spark)."""
        from pyspark.sql import functions as F

        from alertlake.filters import sql_flag_columns

        light = {c: F.col(c) for c in rows.columns if c in HIT_COLUMNS or c in self._filter_columns()}
        return light | {f.flag_column: sql_flag_columns([f])[0] for f in self.filters if f.sql is not None}

    def _read(self, rows: DataFrame) -> pa.Table:
        """:meth:`read_columns` of ``rows``, on the driver; the alerts themselves are encoded by Spark, and only
        those some filter selected."""
        return rows.select(*self.read_columns(rows).values()).toArrow()

    def _select_and_encode(self, rows: DataFrame, table: pa.Table) -> tuple[dict[str, Any], bytes, dict[int, bytes]]:
        """Each filter's selection mask over ``table``, the stream key and the selected alerts' Avro values."""
        hits = evaluate(self.filters, filter_frame(table, self.filters))
        wanted = sorted({int(i) for mask in hits.values() for i in mask.nonzero()[0]})
        key, values = self._encode(rows, table, wanted)
        return hits, key, values

    def _filter_columns(self) -> set[str]:
        """Silver columns the loaded filters read (SQL filters are computed by Spark: only their flags come)."""
        return {c for f in self.filters if f.sql is None for c in f.read_columns()}

    def _encode(self, rows: DataFrame, table: pa.Table, wanted: list[int]) -> tuple[bytes, dict[int, bytes]]:
        """The stream key (the Avro schema of ``rows`` as JSON) and, for each position in ``wanted`` (rows of
        ``table``), its alert as schemaless Avro with that schema, written by Spark's ``to_avro`` (on the
        executors: for the ~4,800 alerts selected in a 20,000-alert batch, 1.25 s in Python on the driver)."""
        from pyspark.sql import functions as F
        from pyspark.sql.avro.functions import to_avro

        _quiet_avro_serializer(rows.sparkSession)
        schema = stream_schema(_arrow_of(rows))
        key = schema_key(schema)
        if not wanted:
            return key, {}
        picked = table.select(["survey", "alert_id"]).take(wanted)
        spark = rows.sparkSession
        keys = spark.createDataFrame(picked.to_pandas(), ddl_schema(spark, "survey string, alert_id long"))
        writer = json.dumps(schema)
        # The writer schema is the rows' own (stream_schema): it names their columns, so it keys the encoding.
        encoding = projection(
            ("distribute.encode", writer),
            lambda: [
                "survey",
                "alert_id",
                to_avro(F.struct(*[F.col(f"`{c}`") for c in rows.columns]), writer).alias("value"),
            ],
        )
        encoded = encoding.select(rows.join(F.broadcast(keys), ["survey", "alert_id"], "left_semi"))
        encoded = encoded.toArrow()
        by_key = dict(
            zip(
                zip(encoded.column("survey").to_pylist(), encoded.column("alert_id").to_pylist(), strict=True),
                encoded.column("value").to_pylist(),
                strict=True,
            )
        )
        surveys, ids = picked.column("survey").to_pylist(), picked.column("alert_id").to_pylist()
        return key, {i: by_key[(s, a)] for i, s, a in zip(wanted, surveys, ids, strict=True)}

    def _produce(
        self,
        alerts: pa.Table,
        hits: dict[str, Any],
        batch_id: int,
        already: dict[tuple[str, int], Sent],
        key: bytes,
        values: dict[int, bytes],
    ) -> dict[tuple[str, str, int], Sent]:
        """Send every hit not already in Kafka (``values``: the encoded alert of each selected row of ``alerts``);
        wait for every delivery. Returns (filter, topic, alert id) -> Sent."""
        surveys = alerts.column("survey").to_pylist()
        ids = alerts.column("alert_id").to_pylist()
        sent: dict[tuple[str, str, int], Sent] = {}
        failures: list[str] = []
        pending = 0

        def delivered(err: Any, msg: Any, where: tuple[str, str, int]) -> None:
            nonlocal pending
            pending -= 1
            if err is not None:
                failures.append(f"{where[1]} alert {where[2]}: {err}")
            else:
                sent[where] = Sent(msg.partition(), msg.offset())

        producer = self.producer
        headers_base = [(HEADER_APP, self.app_id.encode()), (HEADER_BATCH, str(batch_id).encode())]
        for flt in self.filters:
            mask = hits.get(flt.name)
            if mask is None:
                continue
            for i in mask.nonzero()[0]:
                topic = flt.topic(surveys[i], self.topic_suffix)
                where = (flt.name, topic, ids[i])
                if (topic, ids[i]) in already:
                    sent[where] = already[(topic, ids[i])]
                    continue
                while True:
                    try:
                        producer.produce(
                            topic,
                            value=values[int(i)],
                            key=key,
                            headers=[*headers_base, (HEADER_ALERT_ID, str(ids[i]).encode())],
                            on_delivery=lambda err, msg, w=where: delivered(err, msg, w),
                        )
                        pending += 1
                        break
                    except BufferError:
                        producer.poll(0.1)
                producer.poll(0)
        deadline = time.monotonic() + 120
        while pending > 0 and time.monotonic() < deadline:
            producer.flush(1.0)
        if failures or pending:
            raise RuntimeError(
                f"{self.app_id} batch {batch_id}: {len(failures)} deliveries failed, {pending} unconfirmed "
                f"(first: {failures[:3]}); the batch will be retried and completed after a restart"
            )
        for flt_name, mask in hits.items():
            self.counts[flt_name] += int(mask.sum())
        return sent

    def _record_hits(self, alerts: pa.Table, sent: dict[tuple[str, str, int], Sent], batch_id: int) -> None:
        if not sent:
            return

        info = {
            i: r
            for i, r in zip(
                alerts.column("alert_id").to_pylist(),
                alerts.select(["survey", "object_id", "kafka_timestamp", "night"]).to_pylist(),
                strict=True,
            )
        }
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "survey": info[alert_id]["survey"],
                "alert_id": alert_id,
                "object_id": info[alert_id]["object_id"],
                "filter": flt,
                "topic": topic,
                "kafka_partition": s.partition,
                "kafka_offset": s.offset,
                "sent_at": now,
                "kafka_timestamp": info[alert_id]["kafka_timestamp"],
                "night": info[alert_id]["night"],
                "distribute_app": self.app_id,
                "distribute_batch": batch_id,
            }
            for (flt, topic, alert_id), s in sorted(sent.items(), key=lambda kv: (kv[0][1], kv[1].offset))
        ]
        append_once(
            self.settings,
            FILTER_HITS,
            pa.Table.from_pylist(rows, FILTER_HITS_SCHEMA),
            self.app_id,
            batch_id,
            partition_by=["night"],
            metadata={"job": self.app_id, "batch_id": batch_id, "messages": len(rows)},
        )

    # --- restart bookkeeping ------------------------------------------------------------------------------------

    def _last_recorded_batch(self, spark: SparkSession) -> int:
        """The last batch this job recorded in gold.filter_hits: the table's txn version of the job's app id."""
        from deltalake import DeltaTable

        version = DeltaTable(delta_location(self.settings, FILTER_HITS)).transaction_version(self.app_id)
        return -1 if version is None else int(version)

    def _sent_by_killed_run(self) -> dict[tuple[str, int], Sent]:
        """Messages of this job in its topics after the last recorded offsets: sent by a run killed mid-batch."""
        from confluent_kafka import TopicPartition

        from alertlake.kafka import consumer

        topics = self.topics()
        # delta-rs, not Spark: a Spark read here was the process's first of the table (its snapshot, then the
        # aggregate), 8.7 s of a restart on a slow machine.
        columns = ["topic", "kafka_partition", "kafka_offset"]
        hits = read_columns(self.settings, FILTER_HITS, columns, filters=[("topic", "in", topics)])
        last = hits.group_by(["topic", "kafka_partition"]).aggregate([("kafka_offset", "max")]).to_pylist()
        recorded = {(r["topic"], r["kafka_partition"]): r["kafka_offset_max"] for r in last}
        reader = consumer(self.settings, f"{self.app_id}-recovery", **{"enable.partition.eof": True})
        found: dict[tuple[str, int], Sent] = {}
        try:
            metadata = reader.list_topics(timeout=10)
            assignment = []
            for topic in topics:
                for p in metadata.topics[topic].partitions if topic in metadata.topics else []:
                    low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    start = max(low, recorded.get((topic, p), -1) + 1)
                    if start < high:
                        assignment.append(TopicPartition(topic, p, start))
            if not assignment:
                return found
            reader.assign(assignment)
            remaining = {(tp.topic, tp.partition) for tp in assignment}
            deadline = time.monotonic() + 120
            while remaining and time.monotonic() < deadline:
                msg: Any = reader.poll(1.0)
                if msg is None:
                    continue
                if msg.error():
                    remaining.discard((msg.topic(), msg.partition()))
                    continue
                headers = dict(msg.headers() or [])
                if headers.get(HEADER_APP) == self.app_id.encode() and HEADER_ALERT_ID in headers:
                    found[(msg.topic(), int(headers[HEADER_ALERT_ID]))] = Sent(msg.partition(), msg.offset())
            if remaining:
                raise RuntimeError(f"{self.app_id}: could not read the end of {sorted(remaining)} to recover")
        finally:
            reader.close()
        if found:
            log.warning(
                "%s: %d messages sent by a killed run were found in Kafka; they will be recorded, not sent again",
                self.app_id,
                len(found),
            )
        return found


def _quiet_avro_serializer(spark: SparkSession) -> None:
    """Silence Spark's warning that a non-nullable column is written with a nullable Avro type: the stream
    convention makes every field nullable on purpose, and the warning came 28 times per batch. (Local mode:
    executors share the driver's JVM; a cluster's executors keep their own log settings.)"""
    if id(spark.sparkContext) in _QUIETED:
        return
    jvm: Any = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.avro.AvroSerializer", jvm.org.apache.logging.log4j.Level.ERROR
    )
    _QUIETED.add(id(spark.sparkContext))


_QUIETED: set[int] = set()  # Spark contexts whose Avro serializer warnings are silenced


def _arrow_of(df: DataFrame) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema, timezone="UTC")


def filter_counts(settings: Settings, apps: Sequence[str] = (APP_ID,)) -> dict[str, dict[str, int]]:
    """Messages per filter in gold.filter_hits sent by the live jobs ``apps`` (the distribution job, or the
    real-time pipelines): total and sent in the last 24 hours.

    Read with delta-rs (no Spark), so the DAG task is light; empty when nothing was distributed yet.
    """
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(table_uri(settings, FILTER_HITS)).to_pyarrow_table(
            columns=["filter", "sent_at", "distribute_app"]
        )
    except TableNotFoundError:
        return {}
    table = table.filter(pc.is_in(table["distribute_app"], pa.array(list(apps), pa.string())))
    since = pa.scalar(dt.datetime.now(dt.UTC) - dt.timedelta(days=1), pa.timestamp("us", tz="UTC"))
    recent = pc.greater_equal(table["sent_at"], since)
    out: dict[str, dict[str, int]] = {}
    for name, is_recent in zip(table["filter"].to_pylist(), recent.to_pylist(), strict=True):
        entry = out.setdefault(name, {"total": 0, "last_24h": 0})
        entry["total"] += 1
        entry["last_24h"] += int(bool(is_recent))
    return out


# --- running ----------------------------------------------------------------------------------------------------


def start(
    spark: SparkSession,
    settings: Settings,
    trigger: str = "continuous",
    interval: str = "1 second",
    filters: FilterSet | None = None,
    max_files: int = 50,
    topic_suffix: str = "",
    filters_dir: Path = FILTERS_DIR,
    objects_interval: str = "30 seconds",
) -> tuple[list[Query], DistributeJob]:
    """Start distribution (``continuous`` or ``available-now``); return its queries and its job.

    Two readers of silver: the distribution query itself (filters -> topics -> gold.filter_hits), on the latency
    path, and :mod:`jobs.objects` in a thread (gold.objects every ``objects_interval`` in continuous mode, no
    Spark), so gold.objects never delays a message. ``topic_suffix`` appends to every topic (staging and tests;
    live topics have none).
    """
    silver_uri = wait_for_silver(settings, trigger)
    silver = spark.readStream.format("delta").option("maxFilesPerTrigger", str(max_files)).load(silver_uri)
    filters = filters if filters is not None else load_filters(filters_dir, columns=silver.columns)
    for name, reason in filters.rejected.items():
        log.error("filter %s not distributed: %s", name, reason)
    job = DistributeJob(settings, filters, topic_suffix=topic_suffix)
    job.prepare(spark, silver.schema)
    log.info("distributing %d filters to %d topics: %s", len(job.filters), len(job.topics()), ", ".join(job.topics()))
    queries: list[Query] = [
        start_stream(settings, silver, job.app_id, job.write_batch, trigger, interval),
        objects.start(settings, trigger, objects_interval),
    ]
    return queries, job


def wait_for_silver(settings: Settings, trigger: str) -> str:
    """Wait until silver.alerts exists (continuous) or fail at once (bounded); return its URI."""
    silver_uri = table_uri(settings, SILVER)
    waited = 0.0
    while not table_exists(settings, SILVER):  # not Spark's check: it would never see the table appear
        if trigger == "available-now":
            raise RuntimeError(f"{SILVER} does not exist at {silver_uri} yet: run the enrichment job first")
        if waited % 60 == 0:
            log.info("waiting for %s at %s (created by the enrichment job)", SILVER, silver_uri)
        time.sleep(5)
        waited += 5
    return silver_uri


def replay_filter(
    filter_name: str,
    nights: list[str],
    topic_suffix: str | None = None,
    settings: Settings | None = None,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Run filter ``filter_name`` (new or changed) over past ``nights`` of silver into separate topics.

    Topics are ``<live topic>.replay-<suffix>`` (default suffix: today's date), so live streams are untouched.
    Idempotent: re-running the same replay (same filter, nights and suffix) sends nothing twice (same job logic
    as the live stream, one batch, app id ``replay-<filter>-<suffix>``). Returns what was sent.
    """
    from pyspark.sql import functions as F

    settings = settings or get_settings()
    suffix = topic_suffix or dt.date.today().isoformat()
    if not nights:
        raise ValueError("give at least one night (YYYY-MM-DD) to replay")
    for night in nights:
        dt.date.fromisoformat(night)
    if spark is None:
        from alertlake.spark import build_spark

        spark = build_spark(settings, f"alertlake-replay-filter-{filter_name}")
    silver = spark.read.format("delta").load(table_uri(settings, SILVER))
    filters = load_filters(only=[filter_name], columns=silver.columns)
    if filter_name not in filters.filters:
        raise ValueError(f"cannot replay filter {filter_name!r}: {filters.rejected.get(filter_name, 'not found')}")
    app_id = f"replay-{filter_name}-{suffix}"
    job = DistributeJob(settings, filters, app_id=app_id, topic_suffix=f".replay-{suffix}")
    job.prepare(spark, silver.schema)
    job.write_batch(silver.where(F.col("night").isin(nights)), 0)
    return {"filter": filter_name, "nights": nights, "topics": job.topics(), "sent": dict(job.counts), "app_id": app_id}


def replay_filter_command(
    filter_name: str,
    nights: list[str],
    topic_suffix: str | None = None,
) -> None:
    """Replay a new or changed filter over past nights of silver into separate ``.replay-<suffix>`` topics.

    Live streams are never touched; re-running the same replay sends nothing twice.
    """
    import typer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = replay_filter(filter_name, nights, topic_suffix)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2))


def _typer_signature() -> None:
    """Give replay_filter_command typer-friendly parameter metadata (arguments and options with help)."""
    from typing import Annotated

    import typer

    replay_filter_command.__annotations__ = {
        "filter_name": Annotated[str, typer.Argument(help="Filter to replay (file name in filters/)")],
        "nights": Annotated[
            list[str], typer.Option("--night", help="Observing night YYYY-MM-DD to replay (repeat for several)")
        ],
        "topic_suffix": Annotated[
            str | None, typer.Option(help="Replay topic suffix: topics become <topic>.replay-<suffix> (default today)")
        ],
        "return": None,
    }


_typer_signature()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by the distribution DAG and the benchmark)."""
    parser = argparse.ArgumentParser(description="silver.alerts -> filter topics (exactly once), gold tables")
    parser.add_argument("--trigger", choices=["continuous", "available-now"], default="continuous")
    parser.add_argument("--interval", default="1 second", help="processing-time trigger of continuous mode")
    parser.add_argument("--max-files", type=int, default=50, help="silver files per micro-batch at most")
    parser.add_argument("--objects-interval", default="30 seconds", help="continuous: how often gold.objects is MERGEd")
    parser.add_argument("--timeout", type=float, default=0, help="continuous: stop after this many seconds")
    parser.add_argument(
        "--topic-suffix",
        default=os.environ.get("ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX", ""),
        help="append to every topic (staging, tests; env ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX); live: none",
    )
    parser.add_argument("--filters-dir", type=Path, default=FILTERS_DIR, help="folder of filter files")
    parser.add_argument(
        "--no-trino",
        action="store_true",
        help="register no table in Trino: a throw-away lake (env ALERTLAKE_TRINO_REGISTER=false)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = job_settings(args.no_trino)
    from alertlake.spark import build_spark

    spark = build_spark(settings, "alertlake-distribute")
    queries, job = start(
        spark,
        settings,
        args.trigger,
        args.interval,
        max_files=args.max_files,
        topic_suffix=args.topic_suffix,
        filters_dir=args.filters_dir,
        objects_interval=args.objects_interval,
    )
    errors = supervise(queries, args.timeout)
    log.info("sent per filter: %s", dict(job.counts))
    for error in errors:
        log.error("distribution failed: %s", error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
