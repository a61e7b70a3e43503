"""Reconciliation of one survey's night across stages: Kafka -> bronze + quarantine -> silver -> distributed.

Proves, offset by offset, that every message Kafka holds for the night is in exactly one of bronze or
quarantine, then follows the bronze alert ids through silver (and its data-quality gate) to the filter topics
(``gold.filter_hits``). Every gap is listed by Kafka offset or alert id. The night's messages are the offsets
whose Kafka timestamps fall in the night's window at the survey's observatory (``offsets_for_times``), or
every offset Kafka still holds when no night is given.

Reads the lake with delta-rs (only the key columns), so a reconciliation needs no Spark session.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from alertlake.quality import BATCHES, HELD, read_table
from alertlake.settings import Settings

#: How many missing offsets / alert ids a report lists per gap (the counts are always complete).
LISTED = 20
Coord = tuple[str, int, int]


@dataclass
class Report:
    """Counts per stage of one survey's night, and every gap found."""

    survey: str
    night: str | None
    topic: str
    kafka_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)  # partition -> [first, end)
    kafka_messages: int = 0
    bronze_rows: int = 0
    quarantine_rows: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    silver_rows: int = 0
    silver_held: int = 0
    distributed_alerts: int = 0
    filter_hits: int = 0
    missing_offsets: list[Coord] = field(default_factory=list)  # in Kafka, in neither bronze nor quarantine
    doubled_offsets: list[Coord] = field(default_factory=list)  # in both, or twice
    missing_in_silver: list[int] = field(default_factory=list)  # bronze alert ids not in silver
    distributed_while_held: list[int] = field(default_factory=list)  # alert ids sent from a held batch
    distributed_not_in_silver: list[int] = field(default_factory=list)

    @property
    def kafka_ok(self) -> bool:
        """True when every Kafka message is in exactly one of bronze or quarantine (the ingestion contract)."""
        return not (self.missing_offsets or self.doubled_offsets)

    @property
    def ok(self) -> bool:
        """True when no stage lost or doubled anything, and nothing of a held batch was distributed."""
        return not (
            self.missing_offsets
            or self.doubled_offsets
            or self.missing_in_silver
            or self.distributed_while_held
            or self.distributed_not_in_silver
        )

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain values (for JSON and the nightly report)."""
        return {
            "survey": self.survey,
            "night": self.night,
            "kafka_messages": self.kafka_messages,
            "bronze_rows": self.bronze_rows,
            "quarantine_rows": self.quarantine_rows,
            "quarantine_reasons": dict(self.quarantine_reasons),
            "silver_rows": self.silver_rows,
            "silver_held": self.silver_held,
            "distributed_alerts": self.distributed_alerts,
            "filter_hits": self.filter_hits,
            "missing_offsets": len(self.missing_offsets),
            "doubled_offsets": len(self.doubled_offsets),
            "missing_in_silver": len(self.missing_in_silver),
            "distributed_while_held": len(self.distributed_while_held),
            "distributed_not_in_silver": len(self.distributed_not_in_silver),
            "ok": self.ok,
        }

    def render(self) -> str:
        """A plain-text report: stage counts, then each gap with its first offsets / alert ids."""
        night = self.night or "all nights"
        ranges = ", ".join(f"p{p}:[{a},{b})" for p, (a, b) in sorted(self.kafka_ranges.items())) or "none"
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.quarantine_reasons.items())) or "none"
        lines = [
            f"{self.survey} {night}: {'OK' if self.ok else 'GAPS FOUND'}",
            f"  kafka {self.topic} offsets {ranges}: {self.kafka_messages} messages",
            f"  = bronze {self.bronze_rows} + quarantine {self.quarantine_rows} ({reasons})",
            f"  silver {self.silver_rows} of {self.bronze_rows} bronze alerts ({self.silver_held} in held batches)",
            f"  distributed {self.distributed_alerts} alerts ({self.filter_hits} filter hits)",
        ]
        gaps: list[tuple[str, list[Any]]] = [
            ("in Kafka but in neither bronze nor quarantine", [":".join(map(str, c)) for c in self.missing_offsets]),
            ("in bronze and quarantine, or twice", [":".join(map(str, c)) for c in self.doubled_offsets]),
            ("bronze alert ids not in silver", self.missing_in_silver),
            ("alert ids distributed from a held batch", self.distributed_while_held),
            ("alert ids distributed but not in silver", self.distributed_not_in_silver),
        ]
        for what, items in gaps:
            if items:
                shown = ", ".join(map(str, items[:LISTED])) + (" ..." if len(items) > LISTED else "")
                lines.append(f"  GAP {len(items)} {what}: {shown}")
        return "\n".join(lines)


def kafka_ranges(
    settings: Settings, topic: str, night_window: tuple[dt.datetime, dt.datetime] | None
) -> dict[int, tuple[int, int]]:
    """Offsets ``[first, end)`` per partition of ``topic``: of the window's timestamps, or all Kafka holds."""
    from confluent_kafka import TopicPartition

    from alertlake.kafka import consumer

    client = consumer(settings, group_id="alertlake-reconcile")
    try:
        metadata = client.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}  # no topic yet: nothing was sent, nothing to reconcile
        out: dict[int, tuple[int, int]] = {}
        for partition in sorted(metadata.partitions):
            low, high = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if night_window is None:
                out[partition] = (low, high)
                continue
            begin, end = (int(t.timestamp() * 1000) for t in night_window)
            # One lookup per call: given the same partition twice in one request, the client answers only one.
            found = [
                client.offsets_for_times([TopicPartition(topic, partition, t)], timeout=10)[0] for t in (begin, end)
            ]
            # -1: no message at or after that time, i.e. the range runs to the end of the partition.
            first = found[0].offset if found[0].offset >= 0 else high
            last = found[1].offset if found[1].offset >= 0 else high
            out[partition] = (max(first, low), max(last, low))
        return out
    finally:
        client.close()


def offset_gaps(ranges: dict[int, tuple[int, int]], topic: str, seen: list[Coord]) -> tuple[list[Coord], list[Coord]]:
    """``(missing, doubled)``: offsets of ``ranges`` absent from ``seen``, and those present more than once."""
    counts = Counter(c for c in seen if c[0] == topic and c[1] in ranges and ranges[c[1]][0] <= c[2] < ranges[c[1]][1])
    missing = [
        (topic, p, o) for p, (a, b) in sorted(ranges.items()) for o in range(a, b) if (topic, p, o) not in counts
    ]
    doubled = sorted(c for c, n in counts.items() if n > 1)
    return missing, doubled


def reconcile(settings: Settings, survey: str, night: str | None) -> Report:
    """Reconcile ``survey``'s ``night`` (``YYYY-MM-DD``, by Kafka timestamp; None: everything) across stages."""
    from alertlake.kafka import survey_topic
    from alertlake.lake import night_window
    from jobs.ingest import QUARANTINE, bronze_table

    topic = survey_topic(settings, survey)
    ranges = kafka_ranges(settings, topic, night_window(survey, night) if night else None)
    report = Report(survey, night, topic, kafka_ranges=ranges)
    report.kafka_messages = sum(b - a for a, b in ranges.values())

    def in_ranges() -> Any:
        cond = None
        for p, (a, b) in ranges.items():
            part = (pc.field("kafka_partition") == p) & (pc.field("kafka_offset") >= a) & (pc.field("kafka_offset") < b)
            cond = part if cond is None else cond | part
        topic_cond = pc.field("kafka_topic") == topic
        return topic_cond & cond if cond is not None else topic_cond & (pc.field("kafka_offset") < 0)

    coords = ["kafka_topic", "kafka_partition", "kafka_offset"]
    bronze = read_table(settings, bronze_table(survey), [*coords, "alert_id"], in_ranges() if ranges else None)
    quarantine = read_table(settings, QUARANTINE, [*coords, "reason"], in_ranges() if ranges else None)
    report.bronze_rows, report.quarantine_rows = bronze.num_rows, quarantine.num_rows
    report.quarantine_reasons = dict(Counter(quarantine.column("reason").to_pylist())) if quarantine.num_rows else {}
    seen = [
        (t, p, o)
        for table in (bronze, quarantine)
        if table.num_rows
        for t, p, o in zip(*(table.column(c).to_pylist() for c in coords), strict=True)
    ]
    report.missing_offsets, report.doubled_offsets = offset_gaps(ranges, topic, seen)

    alert_ids = set(bronze.column("alert_id").to_pylist()) if bronze.num_rows else set()
    ids = list(alert_ids)
    by_survey = pc.field("survey") == survey
    silver = read_table(
        settings, "silver.alerts", ["alert_id", "enrich_batch"], by_survey & pc.field("alert_id").isin(ids)
    )
    silver_ids = (
        dict(zip(silver.column("alert_id").to_pylist(), silver.column("enrich_batch").to_pylist(), strict=True))
        if silver.num_rows
        else {}
    )
    report.silver_rows = len(silver_ids)
    report.missing_in_silver = sorted(alert_ids - set(silver_ids))
    held_batches = read_table(settings, BATCHES, ["batch_key"], pc.field("status") == HELD)
    held = set(held_batches.column("batch_key").to_pylist()) if held_batches.num_rows else set()
    held_ids = {a for a, b in silver_ids.items() if b in held}
    report.silver_held = len(held_ids)

    hits = read_table(settings, "gold.filter_hits", ["alert_id"], by_survey & pc.field("alert_id").isin(ids))
    sent = hits.column("alert_id").to_pylist() if hits.num_rows else []
    report.filter_hits, report.distributed_alerts = len(sent), len(set(sent))
    report.distributed_while_held = sorted(set(sent) & held_ids)
    report.distributed_not_in_silver = sorted(set(sent) - set(silver_ids))
    return report
