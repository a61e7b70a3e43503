"""``make bench`` (bench/run_all.py): which benchmarks it runs, and the headline figures it reads back."""

from __future__ import annotations

import pytest

from bench import run_all


def test_all_in_order_and_skip() -> None:
    assert run_all.names(None, None) == ["decode", "ingest", "enrich", "quality", "stages", "task_conf", "query", "e2e"]
    assert run_all.names("e2e,decode", None) == ["decode", "e2e"]
    assert run_all.names(None, "query, e2e") == ["decode", "ingest", "enrich", "quality", "stages", "task_conf"]


def test_unknown_benchmark_is_named_with_the_known_ones() -> None:
    with pytest.raises(SystemExit, match=r"unknown benchmark\(s\) decod; known: decode, ingest"):
        run_all.names("decod", None)


@pytest.mark.parametrize("name", list(run_all.HEADLINES))
def test_every_headline_key_is_in_the_committed_results(name: str) -> None:
    """A benchmark that renames a figure must rename it here too, or the table would silently lose it."""
    figures = run_all.headline(name)
    assert list(figures) == list(run_all.HEADLINES[name][1])
    assert all(isinstance(v, int | float) for v in figures.values()), figures
