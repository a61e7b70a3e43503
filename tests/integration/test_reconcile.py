"""Reconciliation's Kafka side on a real broker: a night's offsets are found from message timestamps."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from alertlake.reconcile import kafka_ranges
from alertlake.settings import Settings

pytestmark = pytest.mark.integration


def test_night_window_selects_the_offsets_stamped_inside_it(services: Settings) -> None:
    from alertlake.kafka import admin, ensure_topic, producer

    topic = f"alertlake.test-reconcile-{uuid.uuid4().hex[:8]}"
    ensure_topic(services, topic, partitions=1)
    night = (dt.datetime(2026, 1, 5, 20, tzinfo=dt.UTC), dt.datetime(2026, 1, 6, 20, tzinfo=dt.UTC))
    stamps = [
        night[0] - dt.timedelta(hours=2),  # the night before: offsets 0-1
        night[0] - dt.timedelta(minutes=1),
        night[0],  # inside: offsets 2-5
        night[0] + dt.timedelta(hours=3),
        night[0] + dt.timedelta(hours=10),
        night[1] - dt.timedelta(milliseconds=1),
        night[1],  # the next night: offsets 6-7
        night[1] + dt.timedelta(hours=1),
    ]
    out = producer(services)
    for i, stamp in enumerate(stamps):
        out.produce(topic, value=str(i).encode(), partition=0, timestamp=int(stamp.timestamp() * 1000))
    assert out.flush(30) == 0
    try:
        assert kafka_ranges(services, topic, night) == {0: (2, 6)}
        assert kafka_ranges(services, topic, (night[1], night[1] + dt.timedelta(days=1))) == {0: (6, 8)}
        assert kafka_ranges(services, topic, (night[0] - dt.timedelta(days=1), night[0])) == {0: (0, 2)}
        assert kafka_ranges(services, topic, None) == {0: (0, 8)}
        future = (night[1] + dt.timedelta(days=30), night[1] + dt.timedelta(days=31))
        assert kafka_ranges(services, topic, future) == {0: (8, 8)}
    finally:
        client = admin(services)
        for future_result in client.delete_topics([topic]).values():
            future_result.result(timeout=30)
