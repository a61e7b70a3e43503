"""Kafka -> bronze: every survey alert lands once, and only once, in ``bronze.<survey>_alerts``.

One Spark Structured Streaming query per survey topic. Each micro-batch is

1. *decoded* in Python (an Arrow UDF over :mod:`alertlake.surveys`): decode, canonical mapping and
   validation. A message that fails gets its reason code and goes to ``bronze.quarantine``;
2. given its *native* columns by Spark's own Avro decoder (``from_avro`` with the message's writer schema and
   a reader schema that resolves every version to the union of all the survey's versions), so nothing of
   the alert is lost;
3. *written idempotently*: rows are keyed by their Kafka coordinates (topic, partition, offset). A message
   already in bronze or quarantine is skipped, and a second copy of an alert id already in bronze (or earlier
   in the batch) goes to quarantine as ``duplicate_alert_id``. What is in the lake is read from the lake
   itself at start and after any failure, so a batch replayed after a crash (committed to Delta, not yet to
   the checkpoint) writes nothing twice. With the checkpoint this gives exactly-once delivery.

   The writes carry no Delta ``txnAppId``/``txnVersion``: the skip above already makes a replay a no-op,
   and Spark's Delta looks a transaction id up by rebuilding the table's state, which cost 2 to 3 s per
   write (measured on the bronze table), a sixth of a 20,000-alert batch.

The same code runs continuously (``--trigger continuous``, a processing-time trigger) or bounded
(``--trigger available-now``), and replays a night from Kafka by timestamp (``--replay-night``).

    python -m jobs.ingest --survey ztf [--trigger continuous|available-now] [--interval 2s]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from alertlake.avro_arrow import native_schema, reader_schema
from alertlake.lake import STREAMED_TABLE_PROPERTIES, ensure_table, night_window, read_columns, table_uri
from alertlake.settings import Settings, get_settings
from alertlake.spark import (
    WRITE_OPTIONS,
    load_delta_states,
    projection,
    start_stream,
    supervise,
    with_batch_values,
)
from alertlake.surveys import get_survey
from alertlake.surveys.canonical import SCHEMA as CANONICAL_SCHEMA
from alertlake.surveys.errors import DEFAULT_MAX_MESSAGE_BYTES, BadMessage, MessageContext

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.streaming import DataStreamReader, StreamingQuery

log = logging.getLogger("alertlake.ingest")

QUARANTINE = "bronze.quarantine"
COORDS = ("kafka_topic", "kafka_partition", "kafka_offset")  # where a message is in Kafka: its identity
#: A batch's quarantine rows up to these many (and bytes of messages) are appended by delta-rs, more by Spark.
QUARANTINE_COLLECT_ROWS = 2_000
QUARANTINE_COLLECT_BYTES = 64 * 1024 * 1024
COORDS_DDL = "kafka_topic string, kafka_partition int, kafka_offset long"  # COORDS as a Spark schema
#: Fault injection for the kill/restart tests: ``before-bronze:<batch id>`` SIGKILLs the process once that batch
#: is classified (and, with ``downstream``, through the later stages) and before bronze is written. The
#: pipeline's bronze lander reads it too (:data:`jobs.lander.LANDER_FAULTS`).
FAULT_ENV = "ALERTLAKE_INGEST_FAULT"

# What the Python decoder hands to Spark for every Kafka message.
DECODED = pa.schema(
    [
        pa.field("kafka_topic", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("raw", pa.binary()),
        pa.field("reason", pa.string()),  # null when the message decoded and validated
        pa.field("error", pa.string()),
        pa.field("schema_version", pa.string()),
        # The schemaless Avro body for Spark's decoder: where it lies in ``raw`` when it is a verbatim slice
        # of it (Rubin's frame, ZTF's uncompressed container), so the batch holds each message's bytes once;
        # ``body`` itself only when it is not (a deflated ZTF block).
        pa.field("body", pa.binary()),
        pa.field("body_offset", pa.int32()),
        pa.field("body_length", pa.int32()),
        pa.field("alert_id", pa.int64()),
        pa.field("object_id", pa.string()),
        pa.field("night", pa.string()),
        pa.field("canonical", pa.struct(list(CANONICAL_SCHEMA))),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("survey", pa.string()),
        pa.field("kafka_topic", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("reason", pa.string()),
        pa.field("error", pa.string()),
        pa.field("alert_id", pa.int64()),
        pa.field("raw", pa.binary()),
        pa.field("ingest_time", pa.timestamp("us", tz="UTC")),
        pa.field("ingest_batch", pa.int64()),
    ]
)

# Columns the lake adds beside the survey's own fields in bronze.
BRONZE_EXTRA = pa.schema(
    [
        pa.field("alert_id", pa.int64()),
        pa.field("object_id", pa.string()),
        pa.field("schema_version", pa.string()),
        pa.field("canonical", pa.struct(list(CANONICAL_SCHEMA))),
        pa.field("kafka_topic", pa.string()),
        pa.field("kafka_partition", pa.int32()),
        pa.field("kafka_offset", pa.int64()),
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("ingest_time", pa.timestamp("us", tz="UTC")),
        pa.field("ingest_batch", pa.int64()),
        pa.field("night", pa.string()),
    ]
)

#: The per-batch columns of bronze and quarantine rows, joined in rather than written as literals (see
#: :func:`alertlake.spark.with_batch_values`).
BATCH_VALUES = "ingest_time timestamp, ingest_batch long"


def _coords(row: Any) -> tuple[str, int, int]:
    return (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"])


def bronze_table(survey: str) -> str:
    """Bronze table name of a survey: ``bronze.<survey>_alerts``."""
    return f"bronze.{survey}_alerts"


#: Bronze's Delta properties: those of every streamed table (:data:`alertlake.lake.STREAMED_TABLE_PROPERTIES`),
#: and file statistics only for the lake's key columns. By default Delta keeps them for the first 32 leaf
#: columns, here 32 fields of the candidate that no lookup filters on; a commit of 200 alerts took 0.3-0.4 s
#: with them, 0.2 s without.
#: No Parquet dictionary pages either (Delta hands a table's properties to the Parquet writer): most of an alert's
#: hundreds of leaf columns are measurements, whose dictionary the writer builds and then drops for plain
#: encoding. Appending 6,990 ZTF alerts without stamps (``from_avro`` included) to two tables in turn, 10 times
#: each, took a median 10.7 CPU-s and 6.7 s without dictionaries against 12.8 CPU-s and 7.5 s with them, then in a
#: second run 8.8 CPU-s and 5.8 s against 10.6 CPU-s and 6.5 s; the files were 5% smaller. ``bench/stages.py``
#: (13,980 alerts, 5 rounds) measured less: a median 19.1 CPU-s and 10.3 s against 20.2 and 10.8. Tables created before
#: get it with Spark: ALTER TABLE delta.`<uri>` SET TBLPROPERTIES ('parquet.enable.dictionary' = 'false').
BRONZE_PROPERTIES = {
    **STREAMED_TABLE_PROPERTIES,
    "delta.dataSkippingStatsColumns": "alert_id,object_id,kafka_partition,kafka_offset,kafka_timestamp,ingest_batch",
    "parquet.enable.dictionary": "false",
}


def ensure_bronze(settings: Settings, survey: str) -> None:
    """Create ``bronze.<survey>_alerts`` (partitioned by night) unless it exists."""
    ensure_table(table_uri(settings, bronze_table(survey)), bronze_schema(survey), "night", BRONZE_PROPERTIES)


def bronze_schema(survey: str) -> pa.Schema:
    """Bronze columns of ``survey``: its native fields (all versions) then the lake's own columns."""
    native = native_schema(survey)
    clash = set(native.names) & set(BRONZE_EXTRA.names)
    if clash:
        raise ValueError(f"{survey} native fields {sorted(clash)} clash with bronze's own columns")
    return pa.schema(list(native) + list(BRONZE_EXTRA))


# ------------------------------------------------------------------------------------------- decoding
KAFKA_FIELDS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "raw")
DECODED_FIELDS = [n for n in DECODED.names if n not in KAFKA_FIELDS]  # what _decode_one returns


def body_span(value: bytes, body: bytes) -> tuple[int, int] | None:
    """(offset, length) of ``body`` in ``value`` when it is a verbatim slice of it, else None."""
    start = value.find(body[:64])
    if start < 0 or value[start : start + len(body)] != body:
        return None
    return start, len(body)


#: What the decoder returns for each message (one struct per message, beside the Kafka columns).
DECODED_STRUCT = pa.struct([DECODED.field(name) for name in DECODED_FIELDS])


def decoder(
    survey_name: str, max_bytes: int | None, with_bytes: bool = True
) -> Callable[[pa.Array, pa.Array, pa.Array, pa.Array], pa.StructArray]:
    """The Arrow UDF's function: Kafka values (and their coordinates, for error messages) in, one
    :data:`DECODED_STRUCT` per message out. Never raises: a bad message gets its reason and error. Without
    ``with_bytes``, the Avro body is not looked for (``body``, ``body_offset`` and ``body_length`` are null)."""

    def decode(value: pa.Array, topic: pa.Array, partition: pa.Array, offset: pa.Array) -> pa.StructArray:
        survey = get_survey(survey_name)
        out: dict[str, list[Any]] = {name: [] for name in DECODED_FIELDS}
        columns = (value.to_pylist(), topic.to_pylist(), partition.to_pylist(), offset.to_pylist())
        for raw, t, p, o in zip(*columns, strict=True):
            context = MessageContext(topic=t, partition=p, offset=o)
            fields = _decode_one(survey, raw or b"", context, max_bytes, with_bytes)
            for key in DECODED_FIELDS:
                out[key].append(fields.get(key))
        arrays = [pa.array(out[f.name], type=f.type) for f in DECODED_STRUCT]
        return pa.StructArray.from_arrays(arrays, fields=list(DECODED_STRUCT))

    return decode


def rows_decoder(
    survey_name: str, max_bytes: int | None
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function of :func:`decode_messages` without bytes (``mapInArrow``): Spark's Kafka columns in,
    :data:`DECODED` rows out, with ``raw``, ``body``, ``body_offset`` and ``body_length`` null."""
    decode = decoder(survey_name, max_bytes, with_bytes=False)
    timestamp = DECODED.field("kafka_timestamp").type

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            topic, partition, offset = batch.column("topic"), batch.column("partition"), batch.column("offset")
            decoded = decode(batch.column("value"), topic, partition, offset)
            raw = pa.nulls(batch.num_rows, pa.binary())
            kafka = [topic, partition, offset, batch.column("timestamp").cast(timestamp), raw]
            yield pa.RecordBatch.from_arrays([*kafka, *decoded.flatten()], schema=DECODED)

    return run


def decode_messages(kafka: DataFrame, survey_name: str, max_bytes: int | None, with_bytes: bool = True) -> DataFrame:
    """Spark's Kafka rows -> :data:`DECODED` rows.

    With ``with_bytes``, only the values cross to Python (a scalar Arrow UDF); the raw bytes stay in the JVM for
    the bronze body and the quarantine, instead of a round trip. Without (the real-time pipeline with its
    bronze lander, which reads the messages again from Kafka), ``raw`` and the body are null, and the rows go
    to Python whole (``mapInArrow``). For a UDF, Spark keeps a copy of each input row (its value included)
    while Python decodes it; here it keeps none.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.functions import ArrowUDFType
    from pyspark.sql.pandas.types import from_arrow_schema, from_arrow_type

    if not with_bytes:
        columns = kafka.select("topic", "partition", "offset", "timestamp", "value")
        return columns.mapInArrow(rows_decoder(survey_name, max_bytes), from_arrow_schema(DECODED))
    # Scalar, said explicitly: from the hints (pa.StructArray out) Spark would infer an aggregate. Spark warns
    # that it prefers hints; the warning is silenced here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "It is preferred to specify type hints", UserWarning)
        decode = F.arrow_udf(decoder(survey_name, max_bytes), from_arrow_type(DECODED_STRUCT), ArrowUDFType.SCALAR)
    return kafka.select(
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("value").alias("raw"),
        decode("value", "topic", "partition", "offset").alias("_decoded"),
    ).select(*KAFKA_FIELDS, "_decoded.*")


def _decode_one(
    survey: Any, value: bytes, context: MessageContext, max_bytes: int | None, with_bytes: bool = True
) -> dict[str, Any]:
    try:
        alerts = survey.read(value, context, max_bytes)
        if len(alerts) != 1:
            return {"reason": "corrupt_avro", "error": f"{context.describe()}: expected one alert, found {len(alerts)}"}
        alert, row = alerts[0]
        body = survey.schemaless_body(value, alert.schema_version) if with_bytes else None
        span = body_span(value, body) if body is not None else None
    except BadMessage as exc:
        return {"reason": exc.reason, "error": str(exc.with_context(survey=survey.name, context=context))}
    except Exception as exc:  # noqa: BLE001 - an unforeseen failure must quarantine the message, not kill the stream
        return {"reason": "decoder_error", "error": f"{context.describe()}: {type(exc).__name__}: {exc}"}
    return {
        "schema_version": alert.schema_version,
        "body": None if span else body,
        "body_offset": span[0] if span else None,
        "body_length": span[1] if span else None,
        "alert_id": row["alert_id"],
        "object_id": row["object_id"],
        "night": row["night"],
        "canonical": row,
    }


def kept(decoded: DataFrame, with_bytes: bool = True) -> DataFrame:
    """What a batch keeps of its decoded messages (it is cached while written): the schemaless Avro ``body``
    of each good message, and the ``raw`` message only for bad ones.

    A ZTF message is an Avro container whose header holds the writer schema: about 21 KB of its 30 KB (alerts
    without stamps), which bronze does not need. Keeping the body alone made a 20,000-alert batch's cache
    about 180 MB instead of 600 MB. Without ``with_bytes``, ``raw`` and ``body`` are null: the real-time
    pipeline with its bronze lander, which reads the messages again from Kafka (about 9 KB less per alert).
    """
    from pyspark.sql import functions as F

    def columns() -> list[Any]:
        body = F.coalesce(F.col("body"), F.substring(F.col("raw"), F.col("body_offset") + 1, F.col("body_length")))
        ok = F.col("reason").isNull()
        if not with_bytes:
            none = F.lit(None).cast("binary")
            return [*others, none.alias("raw"), none.alias("body")]
        return [*others, F.when(~ok, F.col("raw")).alias("raw"), F.when(ok, body).alias("body")]

    others = tuple(c for c in decoded.columns if c not in ("raw", "body", "body_offset", "body_length"))
    return projection(("kept", others, with_bytes), columns).select(decoded)


def _key_columns() -> list[Any]:
    """What a batch's classification reads of its decoded messages (:meth:`IngestJob.classify`)."""
    from pyspark.sql import functions as F

    return [
        *COORDS,
        "kafka_timestamp",
        "alert_id",
        "night",
        "schema_version",
        (F.col("reason").isNull()).alias("ok"),
        F.coalesce(F.length("raw"), F.length("body"), F.lit(0)).alias("size"),
    ]


def with_native(good: DataFrame, survey_name: str, versions: list[str]) -> DataFrame:
    """``good`` (:func:`kept` rows) with, instead of its ``body``, a ``native`` struct column in the bronze
    table's union shape, decoded by Spark.

    One projection: each row's body is decoded once by ``from_avro`` with its version's writer schema and,
    as reader schema, :func:`alertlake.avro_arrow.reader_schema`, so Avro's own schema resolution yields
    the union of all versions directly (missing fields null, numbers promoted) with no reshaping pass.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro
    from pyspark.sql.pandas.types import from_arrow_type

    survey = get_survey(survey_name)
    union = from_arrow_type(pa.struct(list(native_schema(survey_name))))
    others = [c for c in good.columns if c != "body"]
    native: Column | None = None
    for version in versions:
        options = {"mode": "PERMISSIVE", "avroSchema": reader_schema(survey_name, version)}
        decoded = from_avro(F.col("body"), json.dumps(survey.avro_schema(version)), options)
        is_version = F.col("schema_version") == version
        native = F.when(is_version, decoded) if native is None else native.when(is_version, decoded)
    return good.select(*others, (F.lit(None).cast(union) if native is None else native).alias("native"))


def to_bronze_rows(good: DataFrame, survey_name: str, versions: list[str], batch_id: int) -> DataFrame:
    """Decoded good messages -> rows of ``bronze.<survey>_alerts`` (native fields, then :data:`BRONZE_EXTRA`)."""
    native = with_native(good, survey_name, versions)
    return with_batch_values(native, BATCH_VALUES, dt.datetime.now(dt.UTC), batch_id).select(
        "native.*", *BRONZE_EXTRA.names
    )


def kafka_like_frame(spark: SparkSession, messages: list[bytes], copies: int, topic: str, partitions: int) -> DataFrame:
    """Rows shaped like Spark's Kafka source (value, topic, partition, offset, timestamp): ``messages`` repeated
    ``copies`` times, spread over ``partitions`` partitions (as many Spark partitions), offsets unique."""
    from pyspark.sql import functions as F

    return (
        spark.createDataFrame([(m,) for m in messages], "value binary")
        .crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
        .select(
            "value",
            F.lit(topic).alias("topic"),
            (F.col("copy") % partitions).cast("int").alias("partition"),
            F.monotonically_increasing_id().alias("offset"),
            F.current_timestamp().alias("timestamp"),
        )
        .repartition(partitions)
    )


def warm_up(
    spark: SparkSession,
    survey_name: str,
    max_bytes: int | None,
    alerts: int,
    rounds: int = 2,
    downstream: Callable[[DataFrame, str | None], None] | None = None,
    bronze: bool = True,
) -> None:
    """Run the batch path (Python decoder, ``from_avro`` of every version, the bronze projection and its
    Delta write; not the last two with ``bronze`` off) over the survey's sample alerts before the stream starts.

    A cold job is slow: its first micro-batches of real alerts took 3 to 5 s for 1,400 to 5,000 alerts
    (JIT compilation of the Avro and Parquet paths, Python workers compiling their readers) against 1.2 to
    1.8 s once warm, and at 1,000 alerts/s the backlog of those first batches took a minute to clear.
    ``alerts`` sample alerts (the survey's samples repeated) go through ``rounds`` times, into a temporary
    Delta table that is then deleted (Spark's ``noop`` sink when Spark is not local, as executors could not
    share a temporary folder). Skipped when ``alerts`` is 0, and with a note when no sample alert is found.
    ``downstream`` (the real-time pipeline's later stages) is run on the accepted rows (``canonical``,
    ``kafka_timestamp``) in each round too, with the temporary folder it may write its own tables in (None when
    Spark is not local).
    """
    from pyspark.sql import functions as F

    from alertlake.surveys.samples import sample_messages

    if alerts <= 0:
        return
    t0 = time.monotonic()
    try:
        samples = sample_messages(survey_name)
    except Exception as exc:  # noqa: BLE001 - warming up is an optimisation: never a reason not to start
        log.info("no warm-up for %s: sample alerts unavailable (%s)", survey_name, exc)
        return
    if not samples:
        log.info("no warm-up for %s: no sample alert found", survey_name)
        return
    copies = max(1, round(alerts / len(samples)))
    slots = max(2, spark.sparkContext.defaultParallelism)  # every task slot's Python worker gets warm
    kafka_like = kafka_like_frame(spark, [s.message for s in samples], copies, "warm-up", slots)
    decoded = decode_messages(kafka_like, survey_name, max_bytes, with_bytes=bronze)  # as the stream decodes
    versions = sorted({s.version for s in samples})
    good = kept(decoded).where(F.col("reason").isNull())
    rows = to_bronze_rows(good, survey_name, versions, -1)
    local = (spark.sparkContext.master or "").startswith("local")
    with tempfile.TemporaryDirectory(prefix="alertlake-warm-up-") as tmp:
        if local and bronze:  # bronze's properties, so that the warm-up compiles the Parquet paths of its appends
            ensure_table(f"file://{tmp}/bronze", bronze_schema(survey_name), "night", BRONZE_PROPERTIES)
        for _ in range(rounds):
            if local and bronze:
                rows.write.format("delta").mode("append").options(**WRITE_OPTIONS).partitionBy("night").save(
                    f"{tmp}/bronze"
                )
            elif bronze:
                rows.write.format("noop").mode("overwrite").save()
            if downstream is not None:
                downstream(good.select("canonical", "kafka_timestamp"), tmp if local else None)
    log.info("warmed up on %d sample alerts x %d in %.1f s", len(samples), copies, time.monotonic() - t0)


# ------------------------------------------------------------------------------------------- writing
@dataclass
class IngestJob:
    """One survey's ingestion: where it reads, where it writes, and how it says what it did."""

    settings: Settings
    survey: str
    app_id: str
    topic: str
    max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES
    until: dt.datetime | None = None  # replay: ignore messages stamped at or after this time
    _seen: dict[str, dict[int, tuple[str, int, int]]] = field(default_factory=dict)
    _bad: set[tuple[str, int, int]] | None = None
    _clean: bool = False  # a whole batch went through in this process (so this one cannot be a retry)
    #: The real-time pipeline's batch markers (:class:`BronzeBehind`). With ``downstream``, a batch is marked and
    #: not appended: the bronze lander (:mod:`jobs.lander`) appends it. The lander's own jobs have it too.
    behind: BronzeBehind | None = None
    landing: bool = False  # this job is the bronze lander's: its logs say how far behind the survey it lands

    @property
    def bronze_uri(self) -> str:
        return table_uri(self.settings, bronze_table(self.survey))

    @property
    def quarantine_uri(self) -> str:
        return table_uri(self.settings, QUARANTINE)

    def prepare(self) -> None:
        """Create the job's tables if needed and expose them in Trino when it is reachable."""
        from alertlake import trino

        ensure_bronze(self.settings, self.survey)
        ensure_table(self.quarantine_uri, QUARANTINE_SCHEMA)
        trino.register_tables(self.settings, [bronze_table(self.survey), QUARANTINE])
        self._quarantined()  # read now rather than in the first micro-batch

    def write_batch(
        self, decoded: DataFrame, batch_id: int, downstream: Callable[[DataFrame, bool], None] | None = None
    ) -> None:
        """Write one micro-batch to bronze and quarantine, exactly once (see module docstring).

        ``downstream`` (the real-time pipeline, :mod:`jobs.pipeline`) is called before bronze and quarantine are
        written (the filter streams need not wait for them), while the batch is cached, with the batch's
        accepted alerts: ``canonical`` and ``kafka_timestamp`` of every message that goes to bronze now or went
        there in an earlier attempt at this batch (not the bad ones or duplicates), and whether they are known
        to be new to every table derived from bronze: all new to bronze, and not a possible retry (the first
        batch of a run may be one, whose killed attempt may have written downstream and not bronze). With
        :attr:`behind` set too, the batch is then marked for the bronze lander instead (:class:`BronzeBehind`).
        """
        from pyspark.sql import functions as F

        started, t0 = dt.datetime.now(dt.UTC), time.monotonic()
        spark = decoded.sparkSession
        if self.until is not None:
            decoded = decoded.where(F.col("kafka_timestamp") < F.lit(self.until))
        # The real-time pipeline with its bronze lander: this process only marks the batch (the lander reads its
        # messages again from Kafka), so neither the Avro bodies nor the bad messages' bytes are cached.
        marks_only = self.behind is not None and downstream is not None
        batch = kept(decoded, with_bytes=not marks_only).persist()
        try:
            # The batch's keys (ids, offsets, versions) are small: classify them on the driver in one pass.
            keys = projection("batch keys", _key_columns).select(batch).toArrow().to_pylist()
            t_decoded = time.monotonic()
            plan = self.classify(keys)
            t_classified = time.monotonic()
            counts = {"new": 0, "bad": 0, "duplicate": 0, "already": 0}
            for status, _ in plan.values():
                counts[status] += 1

            @cache
            def marks() -> DataFrame:
                """Only the messages that are not new, marked (usually a few bad ones, or none at all)."""
                return F.broadcast(
                    spark.createDataFrame(
                        [(*c, status, note) for c, (status, note) in plan.items() if status != "new"],
                        f"{COORDS_DDL}, status string, note string",
                    )
                )

            stamps = [k["kafka_timestamp"] for k in keys]
            # The batch's figures travel in the Delta commit itself (DESCRIBE HISTORY shows them): no extra write.
            meta = {
                "job": self.app_id,
                "batch_id": batch_id,
                "messages": len(keys),
                "bronze_rows": counts["new"],
                "quarantine_rows": counts["bad"] + counts["duplicate"],
                "already_in_lake": counts["already"],
                "min_kafka_timestamp": min(stamps).isoformat() if stamps else None,
                "max_kafka_timestamp": max(stamps).isoformat() if stamps else None,
                "started_at": started.isoformat(),
            }
            t_downstream = t_classified
            if downstream is not None:
                # Good messages that are not in bronze here: duplicates, now or in an earlier attempt at this
                # batch (then they are already in quarantine, and their alert went downstream with its first copy).
                accepted = batch.where(F.col("reason").isNull())
                if any(status == "duplicate" or note == "quarantine" for status, note in plan.values()):
                    elsewhere = marks().where("status = 'duplicate' OR note = 'quarantine'").select(*COORDS)
                    accepted = accepted.join(elsewhere, list(COORDS), "left_anti")
                # The later stages do not wait for bronze: they run first, then bronze and quarantine are written
                # (the filter streams need not wait for them). So a killed attempt may have written them and not
                # bronze, and only the first batch of a run can be such a retry: "all new" is vouched for from
                # the second one on, once a whole batch has gone through in this process.
                downstream(accepted.select("canonical", "kafka_timestamp"), counts["already"] == 0 and self._clean)
                t_downstream = time.monotonic()
            self._quarantined().update(c for c, (status, _) in plan.items() if status in ("bad", "duplicate"))

            def quarantine_rows() -> DataFrame:
                """The batch's bad messages and duplicates as quarantine rows. They carry the message bytes; the
                batch kept them for bad messages only, so a duplicate's are read again from Kafka when the rows
                are appended (:meth:`_append_quarantine`)."""
                quarantined = with_batch_values(
                    batch.join(marks().where("status IN ('bad', 'duplicate')"), list(COORDS)),
                    BATCH_VALUES,
                    dt.datetime.now(dt.UTC),
                    batch_id,
                )
                return quarantined.select(
                    F.lit(self.survey).alias("survey"),
                    *COORDS,
                    "kafka_timestamp",
                    F.when(F.col("status") == "duplicate", F.lit("duplicate_alert_id"))
                    .otherwise(F.col("reason"))
                    .alias("reason"),
                    F.when(F.col("status") == "duplicate", F.col("note")).otherwise(F.col("error")).alias("error"),
                    "alert_id",
                    "raw",
                    "ingest_time",
                    "ingest_batch",
                )

            def land() -> None:
                """Append the batch to bronze (and quarantine), then let its cache go."""
                try:
                    if os.environ.get(FAULT_ENV) == f"before-bronze:{batch_id}":
                        log.warning(
                            "%s: fault injection: killing the process before bronze, batch %d", self.app_id, batch_id
                        )
                        os.kill(os.getpid(), signal.SIGKILL)
                    t_land = time.monotonic()
                    versions = sorted({k["schema_version"] for k in keys if k["ok"] and plan[_coords(k)][0] == "new"})
                    good = batch.where(F.col("reason").isNull())
                    if counts["new"] < sum(k["ok"] for k in keys):  # good messages already in the lake, or duplicates
                        good = good.join(marks().select(*COORDS), list(COORDS), "left_anti")
                    self._append(to_bronze_rows(good, self.survey, versions, batch_id), self.bronze_uri, meta)
                    t_bronze = time.monotonic()
                    if meta["quarantine_rows"]:
                        self._append_quarantine(
                            quarantine_rows(),
                            decoded,
                            sorted(c for c, (status, _) in plan.items() if status == "duplicate"),
                            sum(k["size"] for k in keys if plan[_coords(k)][0] in ("bad", "duplicate")),
                            meta,
                        )
                    if keys:
                        log.info(
                            "%s batch %d: %d messages -> %d bronze, %d quarantine, %d already in the lake "
                            "(decode %.1f s, classify %.1f%s; bronze %.1f, quarantine %.1f)%s",
                            self.app_id,
                            batch_id,
                            len(keys),
                            counts["new"],
                            meta["quarantine_rows"],
                            counts["already"],
                            t_decoded - t0,
                            t_classified - t_decoded,
                            f", later stages {t_downstream - t_classified:.1f}" if downstream is not None else "",
                            t_bronze - t_land,
                            time.monotonic() - t_bronze,
                            lag(meta) if self.landing else "",
                        )
                finally:
                    batch.unpersist()

            if marks_only:
                # The real-time pipeline: the bronze lander (another process) appends this batch from Kafka. The
                # pipeline itself never appends to bronze while its lander may.
                assert self.behind is not None
                if keys:
                    self.behind.mark(batch_id, offset_ranges(keys))
                    log.info(
                        "%s batch %d: %d messages (%d new, %d bad, %d duplicates, %d already in the lake) marked for "
                        "the bronze lander (decode %.1f s, classify %.1f, later stages %.1f)",
                        self.app_id,
                        batch_id,
                        len(keys),
                        counts["new"],
                        counts["bad"],
                        counts["duplicate"],
                        counts["already"],
                        t_decoded - t0,
                        t_classified - t_decoded,
                        t_downstream - t_classified,
                    )
                batch.unpersist()
            else:
                land()
            self._clean = True
        except BaseException:
            # The in-memory indexes may now be ahead of the tables: rebuild them from the lake next time.
            self._seen.clear()
            self._bad = None
            self._clean = False
            batch.unpersist()
            raise

    def first_batch_is_new(self) -> None:
        """Say that the stream's first batch has never been attempted (its checkpoint has no batch logged and
        not committed, :func:`alertlake.spark.replayed_batch`): nothing downstream can hold its alerts yet, so
        silver is not searched for them, as for every later batch."""
        self._clean = True

    def recover(self, spark: SparkSession) -> int:
        """Append to bronze and quarantine the batches a stopped run marked and its lander had not appended yet
        (:class:`BronzeBehind`), before the stream starts: their messages are read again from Kafka, by offset
        (:meth:`land_marked`). Returns the number of messages read again."""
        if self.behind is None:
            return 0
        total = 0
        for batch_id, ranges in self.behind.pending():
            log.warning(
                "%s: batch %d went through the later stages and was committed, but the run stopped before its bronze "
                "append; reading its %d messages again from Kafka",
                self.app_id,
                batch_id,
                message_count(ranges),
            )
            total += self.land_marked(spark, batch_id, ranges)
        self._clean = False  # the stream's first batch may still be a retry (see write_batch)
        return total

    def land_marked(self, spark: SparkSession, batch_id: int, ranges: dict[str, dict[str, tuple[int, int]]]) -> int:
        """Append marked batch ``batch_id`` to bronze and quarantine: its messages (``ranges``) are read again from
        Kafka and go through :meth:`write_batch`, where those already in the lake are skipped, as in a replay;
        then its marker is removed. Returns the number of messages read."""
        assert self.behind is not None
        self.write_batch(self.marked_messages(spark, ranges), batch_id)
        if self.landing and os.environ.get(FAULT_ENV) == "lander-after-bronze":
            log.warning("fault injection: killing the lander after bronze, batch %d, its marker kept", batch_id)
            os.kill(os.getpid(), signal.SIGKILL)
        self.behind.done(batch_id)
        return message_count(ranges)

    def marked_messages(self, spark: SparkSession, ranges: dict[str, dict[str, tuple[int, int]]]) -> DataFrame:
        """The messages of a marked batch (its Kafka offset ``ranges``), read again from Kafka and decoded."""
        from alertlake.spark import kafka_options

        kafka = (
            spark.read.format("kafka")
            .options(**kafka_options(self.settings))
            .options(**range_options(ranges))
            .option("failOnDataLoss", "true")
            .load()
        )
        return decode_messages(kafka, self.survey, self.max_bytes)

    def classify(self, keys: list[Any]) -> dict[tuple[str, int, int], tuple[str, str]]:
        """Decide for each message of a batch: ``new`` (to bronze), ``bad`` or ``duplicate`` (to quarantine),
        or ``already`` in the lake (a retried or replayed batch: written before, skip), with a note."""
        plan: dict[tuple[str, int, int], tuple[str, str]] = {}
        quarantined = self._quarantined()
        for k in sorted(keys, key=_coords):
            where = _coords(k)
            seen = self._night_index(k["night"]) if k["ok"] else {}
            if where in quarantined:
                plan[where] = ("already", "quarantine")
            elif seen.get(k["alert_id"]) == where:
                plan[where] = ("already", "bronze")
            elif not k["ok"]:
                plan[where] = ("bad", "")
            elif k["alert_id"] in seen:
                first = ":".join(map(str, seen[k["alert_id"]]))
                plan[where] = (
                    "duplicate",
                    f"alert id {k['alert_id']} was already received at {first}; this copy "
                    f"is at {':'.join(map(str, where))}",
                )
            else:
                seen[k["alert_id"]] = where
                plan[where] = ("new", "")
        return plan

    def _night_index(self, night: str) -> dict[int, tuple[str, int, int]]:
        """Alert id -> Kafka coordinates of every alert of ``night`` in bronze, read once per run.

        Kept current by this job's own writes (one ingestion job per survey writes its bronze table), so a
        batch needs no read of the table; a restart reads it afresh, which is what makes recovery exact.
        """
        if night not in self._seen:
            rows = read_columns(
                self.settings, bronze_table(self.survey), ["alert_id", *COORDS], [("night", "=", night)]
            ).to_pylist()
            self._seen[night] = {r["alert_id"]: _coords(r) for r in rows}
        return self._seen[night]

    def _quarantined(self) -> set[tuple[str, int, int]]:
        """Coordinates of this topic's messages already in quarantine, read once per run."""
        if self._bad is None:
            rows = read_columns(self.settings, QUARANTINE, list(COORDS), [("kafka_topic", "=", self.topic)])
            self._bad = {_coords(r) for r in rows.to_pylist()}
        return self._bad

    def _append_quarantine(
        self,
        rows: DataFrame,
        decoded: DataFrame,
        duplicates: list[tuple[str, int, int]],
        size: int,
        meta: dict[str, Any],
    ) -> None:
        """Append a batch's quarantine ``rows`` (``size`` bytes of messages; ``raw`` still null for the
        ``duplicates``, at these Kafka coordinates). Exactly once either way: a retried batch finds them in
        quarantine (:meth:`classify`).

        When they are few, they are collected and appended by delta-rs, and the duplicates' bytes fetched one by
        one from Kafka on the driver: a Spark write of 80-200 rows (a job, statistics, the Delta log) and Spark's
        read of the whole batch again from Kafka for its duplicates took 3-8 s a batch on a slow machine. More,
        or a duplicate not found that way, go the Spark way."""
        from deltalake import CommitProperties, WriterProperties, write_deltalake
        from pyspark.sql import functions as F

        from alertlake.kafka import fetch_values
        from alertlake.lake import commit_retrying, delta_location_of

        if meta["quarantine_rows"] <= QUARANTINE_COLLECT_ROWS and size <= QUARANTINE_COLLECT_BYTES:
            table = rows.toArrow().select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA)
            values = fetch_values(self.settings, duplicates) if duplicates else {}
            if all(v is not None for v in values.values()):
                if values:
                    coords = zip(*(table.column(c).to_pylist() for c in COORDS), strict=True)
                    raw = [values.get(c, r) for c, r in zip(coords, table.column("raw").to_pylist(), strict=True)]
                    table = table.set_column(table.schema.get_field_index("raw"), "raw", pa.array(raw, pa.binary()))
                commit_retrying(  # the other surveys' ingestion jobs append to quarantine too
                    QUARANTINE,
                    lambda: write_deltalake(
                        delta_location_of(self.quarantine_uri),
                        table,
                        mode="append",
                        writer_properties=WriterProperties(compression="ZSTD"),  # as Spark writes the lake
                        commit_properties=CommitProperties(custom_metadata={"userMetadata": json.dumps(meta)}),
                    ),
                )
                return
            missing = [c for c, v in values.items() if v is None]
            log.warning(
                "%s: %d duplicates not fetched from Kafka one by one (e.g. %s): reading the batch again",
                self.app_id,
                len(missing),
                missing[:3],
            )
        if duplicates:  # only the Kafka columns of the batch are read again: nothing is decoded again
            wanted = F.broadcast(rows.sparkSession.createDataFrame(duplicates, COORDS_DDL))
            originals = decoded.select(*COORDS, F.col("raw").alias("original")).join(wanted, list(COORDS), "left_semi")
            rows = (
                rows.join(F.broadcast(originals), list(COORDS), "left")
                .withColumn("raw", F.coalesce("raw", "original"))
                .select(*QUARANTINE_SCHEMA.names)
            )
        self._append(rows, self.quarantine_uri, meta)

    def _append(self, rows: DataFrame, uri: str, meta: dict[str, Any]) -> None:
        writer = rows.write.format("delta").mode("append").options(**WRITE_OPTIONS)
        writer.option("userMetadata", json.dumps(meta)).save(uri)


def offset_ranges(keys: list[Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """Topic -> partition -> (first, last) Kafka offset of a batch's messages (from its keys)."""
    ranges: dict[str, dict[str, tuple[int, int]]] = {}
    for k in keys:
        parts = ranges.setdefault(k["kafka_topic"], {})
        part = str(k["kafka_partition"])
        first, last = parts.get(part, (k["kafka_offset"], k["kafka_offset"]))
        parts[part] = (min(first, k["kafka_offset"]), max(last, k["kafka_offset"]))
    return ranges


def message_count(ranges: dict[str, dict[str, tuple[int, int]]]) -> int:
    """How many Kafka messages ``ranges`` (:func:`offset_ranges`) span."""
    return sum(last - first + 1 for parts in ranges.values() for first, last in parts.values())


def lag(meta: dict[str, Any]) -> str:
    """``"; N s after the survey sent its last message"``: how far behind the survey a batch was written."""
    if not meta.get("max_kafka_timestamp"):
        return ""
    behind = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(meta["max_kafka_timestamp"])
    return f"; {behind.total_seconds():.1f} s after the survey sent its last message"


def range_options(ranges: dict[str, dict[str, tuple[int, int]]]) -> dict[str, str]:
    """Options of Spark's Kafka batch source that read exactly the messages of ``ranges`` (:func:`offset_ranges`):
    the partitions assigned, and from each one's first offset to just after its last."""
    return {
        "assign": json.dumps({t: sorted(int(p) for p in parts) for t, parts in ranges.items()}),
        "startingOffsets": json.dumps({t: {p: a for p, (a, _) in parts.items()} for t, parts in ranges.items()}),
        "endingOffsets": json.dumps({t: {p: b + 1 for p, (_, b) in parts.items()} for t, parts in ranges.items()}),
    }


class BronzeBehind:
    """The real-time pipeline's bronze, appended behind it: each micro-batch that went through the later stages
    leaves a *marker* (``_checkpoints/<app>_bronze/<batch id>.json``: the batch's Kafka offset ranges), and the
    bronze lander (:mod:`jobs.lander`, a process of its own at the lowest CPU priority) reads the marked messages
    again from Kafka, appends them to bronze and quarantine, and removes the marker.

    A micro-batch's bronze append costs as much CPU as all its later stages together (``bench/stages.py``) and the
    filter streams need none of it. Written by the pipeline, even in a background thread, it took half the
    alerts' latency on a CPU-bound machine (docs/data-engineer.md).

    Nothing is lost: a marker is written before Spark commits its batch to the checkpoint, and removed only once
    the batch's appends are committed, so a marked batch is in the lake or still marked. At start, before its
    stream and its lander, the pipeline appends the batches still marked (:meth:`IngestJob.recover`). The files go
    through Hadoop's file system, like Spark's own checkpoint, so the lake may be local or on an object store.
    """

    def __init__(self, spark: SparkSession, settings: Settings, app_id: str) -> None:
        from alertlake.lake import checkpoint_uri

        self.spark = spark
        self.checkpoint = checkpoint_uri(settings, app_id)
        self.markers = checkpoint_uri(settings, f"{app_id}_bronze")
        #: When each batch :meth:`pending` last listed was marked (epoch seconds, the marker's modification time).
        self.marked_at: dict[int, float] = {}

    def _path(self, uri: str) -> Any:
        path = self._jvm.org.apache.hadoop.fs.Path(uri)
        return path, path.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration())

    @property
    def _jvm(self) -> Any:
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        return jvm

    def mark(self, batch_id: int, ranges: dict[str, dict[str, tuple[int, int]]]) -> None:
        """Mark batch ``batch_id`` (its Kafka offset ``ranges``) for the lander. Written aside and renamed, so a
        lander listing the markers never reads one half written."""
        path, fs = self._path(f"{self.markers}/{batch_id}.json")
        temporary, _ = self._path(f"{self.markers}/{batch_id}.json.tmp")
        out = fs.create(temporary, True)
        out.write(bytearray(json.dumps({"batch_id": batch_id, "ranges": ranges}).encode()))
        out.close()
        fs.delete(path, False)  # a batch replayed after a kill is marked again
        if not fs.rename(temporary, path):
            raise RuntimeError(f"could not write the bronze marker {self.markers}/{batch_id}.json")

    def done(self, batch_id: int) -> None:
        """Remove batch ``batch_id``'s marker: its appends are committed."""
        path, fs = self._path(f"{self.markers}/{batch_id}.json")
        fs.delete(path, False)

    def pending(self) -> list[tuple[int, dict[str, dict[str, tuple[int, int]]]]]:
        """(batch id, offset ranges) of every marked batch, oldest first."""
        path, fs = self._path(self.markers)
        if not fs.exists(path):
            return []
        found = []
        self.marked_at = {}
        for status in fs.listStatus(path):
            name = status.getPath().getName()
            if not name.endswith(".json"):
                continue
            self.marked_at[int(name.removesuffix(".json"))] = status.getModificationTime() / 1000
            stream = fs.open(status.getPath())
            try:
                marker = json.loads(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
            finally:
                stream.close()
            ranges = {t: {p: (int(a), int(b)) for p, (a, b) in parts.items()} for t, parts in marker["ranges"].items()}
            found.append((int(marker["batch_id"]), ranges))
        return sorted(found)

    def wait_committed(self, batch_id: int, timeout: float = 120) -> None:
        """Wait until Spark has committed batch ``batch_id`` to the query's checkpoint (fault injection)."""
        path, fs = self._path(f"{self.checkpoint}/commits/{batch_id}")
        deadline = time.monotonic() + timeout
        while not fs.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)


# ------------------------------------------------------------------------------------------- running
def kafka_reader(spark: SparkSession, settings: Settings, topic: str, max_offsets: int) -> DataStreamReader:
    """Spark's Kafka source on a survey topic, as every ingesting query reads it: from the earliest offset, at
    most ``max_offsets`` messages a micro-batch, failing rather than skipping data lost from Kafka."""
    from alertlake.spark import kafka_options

    return (
        spark.readStream.format("kafka")
        .options(**kafka_options(settings))
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(max_offsets))
        .option("failOnDataLoss", "true")
        .option("kafka.max.partition.fetch.bytes", str(16 * 1024 * 1024))
    )


def start(
    spark: SparkSession,
    settings: Settings,
    survey: str,
    trigger: str = "continuous",
    interval: str = "2 seconds",
    max_offsets: int = 20000,
    replay_night: str | None = None,
) -> StreamingQuery:
    """Start the ingestion query of ``survey`` and return it (the caller waits or stops it)."""
    from alertlake.kafka import survey_topic

    name = f"ingest_{survey}" + (f"_replay_{replay_night.replace('-', '')}" if replay_night else "")
    job = IngestJob(settings, survey, app_id=name, topic=survey_topic(settings, survey))
    reader = kafka_reader(spark, settings, job.topic, max_offsets)
    if replay_night:
        begin, end = night_window(survey, replay_night)
        reader = reader.option("startingTimestamp", str(int(begin.timestamp() * 1000)))
        job.until = end
    job.prepare()
    warm_up(spark, survey, job.max_bytes, settings.ingest_warm_up_alerts)
    load_delta_states(spark, [job.bronze_uri, job.quarantine_uri])
    decoded = decode_messages(reader.load(), survey, job.max_bytes)
    return start_stream(settings, decoded, name, job.write_batch, trigger, interval)


def report_progress(query: StreamingQuery) -> None:
    """Log the query's rates and its consumer lag (messages in Kafka not yet read)."""
    progress = query.lastProgress
    if not progress:
        return
    lag = 0
    for source in progress.get("sources", []):
        latest, end = source.get("latestOffset") or {}, source.get("endOffset") or {}
        if isinstance(latest, str):
            latest, end = json.loads(str(latest)), json.loads(str(end or "{}"))
        for topic, parts in (latest or {}).items():
            for part, offset in parts.items():
                lag += max(0, int(offset) - int((end or {}).get(topic, {}).get(part, 0)))
    log.info(
        "%s: %.0f msg/s in, %.0f msg/s processed, consumer lag %d messages",
        query.name,
        progress.get("inputRowsPerSecond") or 0,
        progress.get("processedRowsPerSecond") or 0,
        lag,
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by the ingestion DAG and ``alertlake replay ingest``)."""
    parser = argparse.ArgumentParser(description="Kafka -> bronze ingestion of one survey")
    parser.add_argument("--survey", required=True)
    parser.add_argument("--trigger", choices=["continuous", "available-now"], default="continuous")
    parser.add_argument("--interval", default="2 seconds", help="processing-time trigger of continuous mode")
    parser.add_argument("--max-offsets", type=int, default=20000, help="messages per micro-batch at most")
    parser.add_argument("--replay-night", help="re-read the night YYYY-MM-DD from Kafka (bounded)")
    parser.add_argument("--timeout", type=float, default=0, help="continuous: stop after this many seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    from alertlake.spark import build_spark

    spark = build_spark(settings, f"alertlake-ingest-{args.survey}")
    trigger = "available-now" if args.replay_night else args.trigger
    query = start(spark, settings, args.survey, trigger, args.interval, args.max_offsets, args.replay_night)
    failures = supervise([query], args.timeout, poll=10, on_poll=lambda: report_progress(query))
    for failure in failures:
        log.error("ingestion of %s failed: %s", args.survey, failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
