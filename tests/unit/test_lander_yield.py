"""When the bronze lander leaves the CPU to the real-time pipeline (``jobs.lander.Yield``): pure logic, no Spark."""

from __future__ import annotations

import time

import pytest

from jobs.lander import LOAD_WINDOW_S, Yield, pipeline_load


def test_load_is_the_busy_share_of_the_window_overlaps_counted_once() -> None:
    now = 1_000.0
    assert pipeline_load([], now) == 0.0
    assert pipeline_load([(now - 30, now)], now) == pytest.approx(1.0)
    assert pipeline_load([(now - 100, now - 15)], now) == pytest.approx(0.5)  # clipped to the window
    # Two surveys' batches overlapping: their union, not their sum.
    assert pipeline_load([(now - 20, now - 5), (now - 10, now), (now - 10, now)], now) == pytest.approx(20 / 30)
    assert pipeline_load([(now - 40, now - 31)], now) == 0.0  # all before the window
    assert pipeline_load([(now - 3, now + 5)], now) == pytest.approx(3 / 30)  # not past now
    # A pipeline heard of only since its first batch, 4 s ago: busy all that time, not 4 s of 30.
    assert pipeline_load([(now - 4, now)], now, since=now - 4) == pytest.approx(1.0)
    assert pipeline_load([], now, since=now) == 0.0


def test_yields_while_the_pipeline_is_busy_until_the_oldest_batch_waited_too_long() -> None:
    rule = Yield(load=0.8, max_lag=600)
    now = time.time()
    assert not rule.now(waited=0)  # no batch heard of: an idle pipeline
    # Batches back to back over the whole window (a pipeline at capacity).
    for start in range(int(LOAD_WINDOW_S) + 10, 0, -10):
        assert rule.heard(f"batch {now - start:.3f} {now - start + 10:.3f}\n".encode())
    assert rule.now(waited=5)
    assert not rule.now(waited=600)  # bronze may not fall further behind
    assert not rule.heard(b"go\n")
    idle = Yield(load=0.8, max_lag=600)
    idle.heard(f"batch {now - 29:.3f} {now - 20:.3f}".encode())  # 9 s busy of 30: room for the lander
    assert not idle.now(waited=5)


def test_a_batch_under_way_counts_as_busy_until_it_is_done() -> None:
    rule = Yield(load=0.8, max_lag=600)
    now = time.time()
    rule.heard(f"batch {now - 31:.3f} {now - 26:.3f}".encode())
    assert rule.heard(f"begin {now - 26:.3f}".encode())  # a long batch: 26 s so far
    assert rule.now(waited=5)
    starting = Yield(load=0.8, max_lag=600)
    starting.heard(f"begin {now - 3:.3f}".encode())  # the pipeline's first batch, under way for 3 s
    assert starting.now(waited=1)
    rule.heard(f"batch {now - 26:.3f} {now - 20:.3f}".encode())  # it ended 20 s ago: 6 s busy of the last 30
    assert not rule.under_way
    assert not rule.now(waited=5)
