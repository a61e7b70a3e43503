"""Alert stream simulator: replays survey alert files into Kafka in the survey's real wire format.

A small real sample becomes a large stream: every loop over the sample is a *copy* whose alert, source and
object ids are remapped (unique alert ids, consistent object ids within a copy), and observation times can
be moved onto one chosen night. ``bad`` mode mixes in one message of every bad class
(:mod:`alertlake.surveys.badmessages`), so ingestion's quarantine can be exercised end to end.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alertlake.settings import Settings
from alertlake.surveys import DecodedAlert, Remapper, Survey, get_survey
from alertlake.surveys.badmessages import BadSample, bad_messages
from alertlake.surveys.samples import sample_messages

_MJD_EPOCH = dt.date(1858, 11, 17)


@dataclass(frozen=True)
class Source:
    """One sample alert ready to be replayed: its native record, version and original message.

    ``remapper`` is the survey's fast path for copies of this alert (:meth:`Survey.remapper`), if it has one.
    """

    alert: DecodedAlert
    message: bytes
    night: str
    remapper: Remapper | None = None


def with_remapper(survey: Survey, source: Source) -> Source:
    """``source`` with the survey's fast remapper (the same source when the survey has none for it)."""
    fast = survey.remapper(source.alert, source.message)
    return source if fast is None else Source(source.alert, source.message, source.night, fast)


@dataclass
class Summary:
    """What a simulation sent."""

    topic: str
    alerts: int = 0
    bad: int = 0
    bytes: int = 0
    seconds: float = 0.0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    alert_ids: list[int] = field(default_factory=list)  # filled when asked (keep_ids), for audits and tests

    @property
    def rate(self) -> float:
        """Achieved alerts per second (good and bad messages)."""
        return (self.alerts + self.bad) / self.seconds if self.seconds else 0.0

    @property
    def megabytes(self) -> float:
        """Payload sent, in MB (10^6 bytes)."""
        return self.bytes / 1e6


def file_messages(survey: Survey, path: Path) -> list[bytes]:
    """The Kafka messages stored in one alert file, as the survey would send them."""
    data = path.read_bytes()
    return survey.file_to_messages(data)


def load_sources(survey: Survey, paths: Iterable[Path] = ()) -> list[Source]:
    """Decode every alert of ``paths`` (files or folders of ``*.avro``), or of the shared samples if none given.

    Messages that do not decode are skipped with a note on stderr: a sample folder may hold broken files
    on purpose (use ``bad`` mode to send bad messages).
    """
    import sys

    messages: list[bytes] = []
    files: list[Path] = []
    for path in paths:
        files += sorted(path.rglob("*.avro")) if path.is_dir() else [path]
    if files:
        for file in files:
            try:
                messages += file_messages(survey, file)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other files
                print(f"skipping {file}: {exc}", file=sys.stderr)
    else:
        messages = [s.message for s in sample_messages(survey.name, real_only=True)]
    sources = []
    for message in messages:
        try:
            for alert, row in survey.read(message, max_bytes=None):
                sources.append(Source(alert, message, row["night"]))
        except Exception as exc:  # noqa: BLE001
            print(f"skipping an undecodable sample message: {exc}", file=sys.stderr)
    if not sources:
        raise ValueError(f"no decodable {survey.name} alerts found in {[str(p) for p in paths] or 'the samples'}")
    return sources


def night_shift_days(source_night: str, target_night: str | None) -> float:
    """Whole days that move ``source_night`` onto ``target_night`` (0 when no target), keeping time of night."""
    if not target_night:
        return 0.0
    return float((dt.date.fromisoformat(target_night) - dt.date.fromisoformat(source_night)).days)


def messages(
    survey: Survey,
    sources: list[Source],
    loops: int,
    remap: bool = True,
    night: str | None = None,
    bad: bool = False,
    limit: int | None = None,
    first_copy: int = 0,
) -> Iterator[tuple[bytes, bytes, BadSample | None, int | None]]:
    """Yield ``(key, value, bad_sample, alert_id)`` for the whole simulated stream.

    Loop ``i`` (0-based) replays every source as copy ``first_copy + i`` when ``remap`` (copy 0 keeps the
    original ids, so by default the first loop is the sample as it was; another ``first_copy`` sends alerts
    the lake has not seen yet, e.g. for a second demo). Keys are object ids, so one object's alerts stay in order
    on one partition. In ``bad`` mode each loop also sends one message of every bad class.

    A source whose alert id an earlier source already has (the shared ZTF samples hold the official example
    packet in two schema versions) is sent in copy 0 only, as the samples are; in the remapped copies it
    would repeat that id, so every alert id of copies 1, 2, ... is unique.
    """
    sent = 0
    shifts = [night_shift_days(source.night, night) for source in sources]
    seen: set[int] = set()
    repeats = []
    for source in sources:
        alert_id = survey.alert_id(source.alert.record)
        repeats.append(alert_id in seen)
        seen.add(alert_id)
    for loop in range(loops):
        copy = first_copy + loop if remap else 0
        for source, shift, repeat in zip(sources, shifts, repeats, strict=True):
            if limit is not None and sent >= limit:
                return
            if repeat and copy != 0:
                continue
            if copy == 0 and shift == 0.0:
                record, value = source.alert.record, source.message
            elif source.remapper is not None:  # the same message, built by rewriting only ids and times
                value, object_id, alert_id = source.remapper(copy, shift)
                yield object_id.encode(), value, None, alert_id
                sent += 1
                continue
            else:
                record = survey.remap(source.alert.record, copy, shift)
                value = survey.encode(record, source.alert.schema_version)
            yield survey.object_id(record).encode(), value, None, survey.alert_id(record)
            sent += 1
        if bad:
            good = sources[loop % len(sources)]
            base = good.message
            if remap or night:
                record = survey.remap(good.alert.record, copy, night_shift_days(good.night, night))
                base = survey.encode(record, good.alert.schema_version)
            for sample in bad_messages(survey.name, base, seed=loop):
                yield f"bad-{sample.kind}".encode(), sample.message, sample, None


def simulate(
    settings: Settings,
    survey_name: str,
    paths: Iterable[Path] = (),
    topic: str | None = None,
    rate: float = 0.0,
    loops: int = 1,
    remap: bool = True,
    night: str | None = None,
    bad: bool = False,
    limit: int | None = None,
    drop_cutouts: bool = False,
    progress: Callable[[int], Any] | None = None,
    keep_ids: bool = False,
    first_copy: int = 0,
    max_seconds: float | None = None,
) -> Summary:
    """Send the simulated stream to Kafka and return what was sent.

    ``rate`` is in messages per second (0 = as fast as possible); pacing is by the wall clock, so short
    stalls are caught up. ``drop_cutouts`` sends alerts without image stamps (for scale tests where the
    stamps would only fill the disk). ``max_seconds`` stops sending after that long (benchmarks); the
    summary's time includes waiting for Kafka to acknowledge everything sent.
    """
    from alertlake import kafka

    survey = get_survey(survey_name)
    topic = topic or kafka.survey_topic(settings, survey_name)
    sources = load_sources(survey, [Path(p) for p in paths])
    if drop_cutouts:
        sources = [
            Source(
                DecodedAlert(rec := survey.without_cutouts(s.alert.record), s.alert.schema_version),
                survey.encode(rec, s.alert.schema_version),
                s.night,
            )
            for s in sources
        ]
    sources = [with_remapper(survey, s) for s in sources]
    kafka.ensure_topic(settings, topic)
    producer = kafka.producer(settings)
    summary = Summary(topic)
    start = time.monotonic()
    for i, (key, value, sample, alert_id) in enumerate(
        messages(survey, sources, loops, remap, night, bad, limit, first_copy)
    ):
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: let librdkafka deliver, then retry
        producer.poll(0)
        summary.bytes += len(value)
        if sample is None:
            summary.alerts += 1
            if keep_ids and alert_id is not None:
                summary.alert_ids.append(alert_id)
        else:
            summary.bad += 1
            summary.bad_by_reason[sample.reason] = summary.bad_by_reason.get(sample.reason, 0) + 1
        if progress:
            progress(1)
        if max_seconds is not None and time.monotonic() - start >= max_seconds:
            break
        if rate > 0:
            ahead = (i + 1) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    remaining = producer.flush(120)
    summary.seconds = time.monotonic() - start
    if remaining:
        raise RuntimeError(f"{remaining} messages were not acknowledged by Kafka at {settings.kafka_bootstrap_servers}")
    return summary
