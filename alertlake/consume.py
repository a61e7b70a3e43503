"""Reading AlertLake's filter streams, and the message convention they follow (Fink's).

Convention (what ``fink-client``'s ``AlertConsumer`` expects, so scientists' existing code works unchanged):

* the message **value** is one enriched alert encoded as *schemaless* Avro (no container header, no
  Confluent magic byte);
* the message **key** is the Avro schema of that value, as JSON text. A reader parses the key and decodes
  the value with it; no schema registry is involved.

:func:`stream_schema` derives that schema from the Arrow schema of the silver rows, :func:`encode` writes a value,
:func:`decode_message` reads one back. :func:`consume` is the engine of ``alertlake consume``: subscribe, decode,
stop on a count or a duration, and hand every alert to callbacks (live summary, file writers).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa

from alertlake.settings import Settings

#: Avro record name of an enriched alert (namespace ``alertlake``).
RECORD_NAME = "alert"
NAMESPACE = "alertlake"
#: Kafka headers the distribution job adds (fink-client ignores headers): where and when a message was made.
HEADER_APP = "alertlake-app"
HEADER_BATCH = "alertlake-batch"
HEADER_ALERT_ID = "alertlake-alert-id"


class ConsumeError(Exception):
    """A consumer cannot do what was asked (unknown topic, bad offset or timestamp...); says what to do."""


# --- the stream convention ------------------------------------------------------------------------------------


def _avro_type(arrow: pa.DataType, name: str) -> Any:
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_boolean(arrow):
        return "boolean"
    if pa.types.is_int64(arrow):
        return "long"
    if pa.types.is_integer(arrow):
        return "int"
    if pa.types.is_float32(arrow):
        return "float"
    if pa.types.is_floating(arrow):
        return "double"
    if pa.types.is_binary(arrow) or pa.types.is_large_binary(arrow):
        return "bytes"
    if pa.types.is_timestamp(arrow):
        return {"type": "long", "logicalType": "timestamp-micros"}
    if pa.types.is_date(arrow):
        return {"type": "int", "logicalType": "date"}
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return {"type": "array", "items": _nullable(_avro_type(arrow.value_type, f"{name}_item"))}
    if pa.types.is_struct(arrow):
        return {
            "type": "record",
            "name": name,
            "fields": [
                {"name": f.name, "type": _nullable(_avro_type(f.type, f"{name}_{f.name}")), "default": None}
                for f in arrow
            ],
        }
    raise ValueError(f"column {name!r}: Arrow type {arrow} has no Avro equivalent in the stream convention")


def _nullable(avro: Any) -> list[Any]:
    return ["null", avro]


def stream_schema(schema: pa.Schema, doc: str = "") -> dict[str, Any]:
    """The Avro schema (JSON form) of enriched alerts with Arrow ``schema``: every field nullable, default null."""
    return {
        "type": "record",
        "name": RECORD_NAME,
        "namespace": NAMESPACE,
        "doc": doc or "An AlertLake enriched alert: canonical columns, quality cuts, science modules, provenance.",
        "fields": [{"name": f.name, "type": _nullable(_avro_type(f.type, f.name)), "default": None} for f in schema],
    }


def schema_key(schema: dict[str, Any]) -> bytes:
    """The message key: the Avro schema as compact JSON (UTF-8)."""
    return json.dumps(schema, separators=(",", ":")).encode()


@lru_cache(maxsize=64)
def _parse_key(key: bytes) -> Any:
    return fastavro.parse_schema(json.loads(key))


def encoder(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
    """A function writing one record as schemaless Avro with ``schema`` (parsed once)."""
    parsed = fastavro.parse_schema(schema)

    def encode(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    return encode


def decode_message(key: bytes | None, value: bytes) -> dict[str, Any]:
    """Decode a filter-stream message: the schema from the key, the alert from the value."""
    if not key:
        raise ConsumeError("message has no key: AlertLake streams carry the alert's Avro schema (JSON) in the key")
    try:
        parsed = _parse_key(key)
    except (ValueError, TypeError) as exc:
        raise ConsumeError(f"message key is not an Avro schema in JSON: {exc}") from exc
    record: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value), parsed)  # type: ignore[assignment]
    return record


# --- consuming ------------------------------------------------------------------------------------------------


@dataclass
class Received:
    """One decoded alert and where it came from."""

    topic: str
    partition: int
    offset: int
    timestamp: dt.datetime
    alert: dict[str, Any]
    key: bytes


@dataclass
class ConsumeOptions:
    """What to read and when to stop (see ``alertlake consume --help``)."""

    topics: Sequence[str]
    group_id: str | None = None
    offset_reset: str = "earliest"  # earliest | latest: where a new group starts
    from_time: dt.datetime | None = None  # replay: start every partition at the first message at/after this time
    max_alerts: int | None = None
    max_seconds: float | None = None
    idle_seconds: float | None = None  # stop when nothing arrived for this long
    commit: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    #: (key, value) -> the alert; a reader that needs a few fields may decode only those.
    decode: Callable[[bytes | None, bytes], dict[str, Any]] = decode_message


def parse_time(text: str) -> dt.datetime:
    """An ISO time (``2026-01-05T03:00``, ``2026-01-05``; UTC unless it says) or epoch milliseconds."""
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC)
        value = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError) as exc:
        raise ConsumeError(
            f"bad timestamp {text!r}: give an ISO time such as 2026-01-05T03:00:00 (UTC) or epoch milliseconds"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def check_topics(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    """Partitions per topic; :class:`ConsumeError` naming unknown topics and listing the available streams."""
    from alertlake.kafka import admin

    if not topics:
        raise ConsumeError("give at least one topic (see `alertlake consume --list`)")
    try:
        metadata = admin(settings).list_topics(timeout=10)
    except Exception as exc:
        raise ConsumeError(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc}") from exc
    unknown = [t for t in topics if t not in metadata.topics]
    if unknown:
        streams = sorted(t for t in metadata.topics if t.startswith("alertlake.") and ".test-" not in t)
        shown = ", ".join(streams[:40]) + (f" ... ({len(streams)} in all)" if len(streams) > 40 else "")
        raise ConsumeError(
            f"unknown topic(s): {', '.join(unknown)}. Available AlertLake streams: {shown or 'none'} "
            "(`alertlake consume --list`)"
        )
    return {t: len(metadata.topics[t].partitions) for t in topics}


def list_streams(settings: Settings) -> list[str]:
    """The AlertLake filter topics Kafka has (``alertlake.<survey>.<filter>[...]``)."""
    from alertlake.kafka import admin

    return sorted(t for t in admin(settings).list_topics(timeout=10).topics if t.startswith("alertlake."))


def _start_offsets(consumer: Any, partitions: dict[str, int], when: dt.datetime) -> list[Any]:
    from confluent_kafka import TopicPartition

    millis = int(when.timestamp() * 1000)
    wanted = [TopicPartition(t, p, millis) for t, n in partitions.items() for p in range(n)]
    found = consumer.offsets_for_times(wanted, timeout=10)
    out = []
    for tp in found:
        if tp.error:
            raise ConsumeError(f"cannot find offsets at {when.isoformat()} in {tp.topic}[{tp.partition}]: {tp.error}")
        # -1: no message at or after that time: start at the end (nothing to replay in that partition).
        if tp.offset < 0:
            _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            tp.offset = high
        out.append(tp)
    return out


def _received(msg: Any, decode: Callable[[bytes | None, bytes], dict[str, Any]] = decode_message) -> Received:
    _, millis = msg.timestamp()
    return Received(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        timestamp=dt.datetime.fromtimestamp(millis / 1000, dt.UTC),
        alert=decode(msg.key(), msg.value()),
        key=msg.key(),
    )


def iter_alerts(settings: Settings, options: ConsumeOptions) -> Iterator[Received]:
    """Yield decoded alerts from ``options.topics`` until a limit is reached (count, duration or idle time)."""
    from confluent_kafka import KafkaError

    from alertlake.kafka import consumer as make_consumer

    if options.offset_reset not in ("earliest", "latest"):
        raise ConsumeError(f"bad offset reset {options.offset_reset!r}: use 'earliest' or 'latest'")
    if options.max_alerts is not None and options.max_alerts <= 0:
        raise ConsumeError("--max-alerts must be positive")
    partitions = check_topics(settings, options.topics)
    group = options.group_id or f"alertlake-consume-{int(time.time())}"
    # A named group resumes where it stopped, at least once: each message's offset is stored once the caller has
    # taken it, and librdkafka commits the stored offsets every second and when the consumer closes. (A commit
    # request per message, as before, was one OffsetCommit write for the broker per alert read.)
    commits = options.commit and options.group_id is not None
    auto = {"enable.auto.commit": True, "enable.auto.offset.store": False, "auto.commit.interval.ms": 1000}
    config = {"auto.offset.reset": options.offset_reset, **(auto if commits else {}), **options.extra}
    consumer = make_consumer(settings, group, **config)
    try:
        if options.from_time is not None:
            consumer.assign(_start_offsets(consumer, partitions, options.from_time))
        else:
            consumer.subscribe(list(options.topics))
        started = last = time.monotonic()
        count = 0
        while True:
            now = time.monotonic()
            if options.max_seconds is not None and now - started >= options.max_seconds:
                return
            if options.idle_seconds is not None and now - last >= options.idle_seconds:
                return
            msg: Any = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                err = msg.error()
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.code() in (KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET):
                    raise ConsumeError(f"offset out of range in {msg.topic()}[{msg.partition()}]: {err.str()}")
                raise ConsumeError(f"Kafka error on {msg.topic()}: {err.str()}")
            last = time.monotonic()
            yield _received(msg, options.decode)
            if commits:
                consumer.store_offsets(message=msg)
            count += 1
            if options.max_alerts is not None and count >= options.max_alerts:
                return
    finally:
        consumer.close()


def seek_offset(settings: Settings, topic: str, partition: int, offset: int) -> None:
    """Check that ``offset`` exists in ``topic[partition]``; :class:`ConsumeError` with the valid range if not."""
    from confluent_kafka import TopicPartition

    from alertlake.kafka import consumer as make_consumer

    partitions = check_topics(settings, [topic])
    if not 0 <= partition < partitions[topic]:
        raise ConsumeError(f"topic {topic} has partitions 0..{partitions[topic] - 1}, not {partition}")
    consumer = make_consumer(settings, "alertlake-consume-check")
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()
    if not low <= offset < max(high, low + 1) or offset >= high:
        raise ConsumeError(
            f"bad offset {offset} for {topic}[{partition}]: messages there have offsets {low}..{high - 1}"
            if high > low
            else f"bad offset {offset} for {topic}[{partition}]: the partition is empty"
        )


def iter_from_offset(
    settings: Settings, topic: str, partition: int, offset: int, max_alerts: int | None, idle_seconds: float = 5.0
) -> Iterator[Received]:
    """Yield alerts of ``topic[partition]`` from ``offset`` on (checked first, see :func:`seek_offset`)."""
    from confluent_kafka import TopicPartition

    from alertlake.kafka import consumer as make_consumer

    seek_offset(settings, topic, partition, offset)
    consumer = make_consumer(settings, f"alertlake-consume-{int(time.time())}")
    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        count, last = 0, time.monotonic()
        while max_alerts is None or count < max_alerts:
            if time.monotonic() - last > idle_seconds:
                return
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            count += 1
            yield _received(msg)
    finally:
        consumer.close()


# --- saving ---------------------------------------------------------------------------------------------------


class AlertWriter:
    """Writes received alerts to an Avro container (one schema: the stream's) or a Parquet file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = path.suffix.lower().lstrip(".")
        if self.format not in ("avro", "parquet"):
            raise ConsumeError(f"cannot save to {path}: the file name must end in .avro or .parquet")
        self.records: list[dict[str, Any]] = []
        self.schema: dict[str, Any] | None = None

    def add(self, received: Received) -> None:
        """Keep one alert (with its topic, partition and offset) for writing."""
        if self.schema is None:
            self.schema = json.loads(received.key)
        self.records.append(received.alert | {"_topic": received.topic, "_offset": received.offset})

    def close(self) -> int:
        """Write the file (nothing if no alert arrived); returns the number of alerts written."""
        if not self.records or self.schema is None:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "avro":
            schema = dict(self.schema)
            schema["fields"] = [
                *schema["fields"],
                {"name": "_topic", "type": ["null", "string"], "default": None},
                {"name": "_offset", "type": ["null", "long"], "default": None},
            ]
            with self.path.open("wb") as out:
                fastavro.writer(out, fastavro.parse_schema(schema), self.records)
        else:
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(self.records), self.path)
        return len(self.records)
