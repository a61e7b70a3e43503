"""Every benchmark, one after the other, then one table of their headline figures (``make bench``).

Each benchmark runs as its own process (``python bench/<name>.py``, with its own defaults) and writes its own
JSON in ``bench/results/``; this prints, from those files, the figures the issues set targets for. A benchmark
that fails is reported and the others still run; the exit status is then 1. Expect about 1 h 45 min for all of
them on a 2-core machine (``stages`` about 5 min, ``task_conf`` about 8 min, ``query`` about 17 min, ``e2e``
both modes about 35 min); ``--only`` picks some.

    python bench/run_all.py [--only decode,ingest] [--skip query]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

#: Benchmark -> (its results file, the headline keys of that file: ``a.b`` is key ``b`` of the object at ``a``),
#: in the order they run.
HEADLINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "decode": ("decode.json", ("ztf_alerts_per_s_per_core", "lsst_alerts_per_s_per_core", "simulate_alerts_per_s")),
    "ingest": ("ingest.json", ("alerts_per_s", "p95_commit_latency_s", "peak_rss_gib")),
    "enrich": (
        "enrich.json",
        ("alerts_per_s.enrich_job_steady_state", "speedup_vs_fink_science.supernova_including_features"),
    ),
    "quality": ("quality.json", ("overhead_ratio",)),
    "stages": (
        "stages.json",
        (
            "stages.decode_cache_keys.wall_s_min",
            "stages.bronze_from_avro.wall_s_min",
            "stages.bronze_delta_write.wall_s_min",
            "no_dictionary_vs_dictionaries.cpu_s_median",
        ),
    ),
    "task_conf": (
        "task_conf.json",
        (
            "off_over_on.bronze_from_avro.cpu_s_median_off_over_on",
            "off_over_on.bronze_delta_write.cpu_s_median_off_over_on",
        ),
    ),
    "query": ("query.json", ("rows", "object_lookup_p95_s", "cone_search_p95_s", "night_aggregate_s")),
    "e2e": ("e2e.json", ("alerts_per_s", "p50_latency_s", "p95_latency_s", "p99_latency_s", "peak_rss_gib")),
}


def names(only: str | None, skip: str | None) -> list[str]:
    """The benchmarks to run, in :data:`HEADLINES` order; an unknown name is an error that lists the known ones."""
    chosen = [n.strip() for n in only.split(",") if n.strip()] if only else list(HEADLINES)
    skipped = {n.strip() for n in skip.split(",") if n.strip()} if skip else set()
    unknown = sorted((set(chosen) | skipped) - set(HEADLINES))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(HEADLINES)}")
    return [n for n in HEADLINES if n in chosen and n not in skipped]


def headline(name: str) -> dict[str, Any]:
    """The headline figures of ``name``'s results file (missing keys left out, floats to 4 significant digits)."""
    file, keys = HEADLINES[name]
    data = json.loads((RESULTS / file).read_text())
    out: dict[str, Any] = {}
    for key in keys:
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[key] = float(f"{value:.4g}") if isinstance(value, float) else value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated benchmarks to run (of {', '.join(HEADLINES)})")
    parser.add_argument("--skip", help="comma-separated benchmarks not to run")
    args = parser.parse_args(argv)
    rows: list[tuple[str, str, float, dict[str, Any]]] = []
    for name in names(args.only, args.skip):
        print(f"=== bench/{name}.py", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(BENCH / f"{name}.py")])
        seconds = time.monotonic() - started
        if code != 0:
            rows.append((name, f"FAILED (exit {code})", seconds, {}))
            continue
        rows.append((name, "ok", seconds, headline(name)))
    print(f"\n{'benchmark':10s} {'status':16s} {'minutes':>7s}  headline figures (bench/results/<name>.json)")
    for name, status, seconds, figures in rows:
        shown = ", ".join(f"{key}={value}" for key, value in figures.items())
        print(f"{name:10s} {status:16s} {seconds / 60:7.1f}  {shown}")
    return 1 if any(status != "ok" for _, status, _, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
