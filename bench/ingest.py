"""Ingestion benchmark: sustained alerts/s Kafka -> bronze, commit latency at a fixed rate, peak memory.

    python bench/ingest.py [--alerts 200000] [--rate 1000] [--seconds 120] [--keep-cutouts]

1. Throughput: the shared ZTF sample scaled up (unique ids, one night) is loaded into a fresh topic, then
   the real ingestion job drains it (bounded run); alerts/s counts from the start of the first micro-batch
   to the last commit (the job's start-up and warm-up come before; the whole-process rate is given beside).
2. Latency: the simulator sends at a fixed rate while the job runs continuously (1 s trigger); each
   alert's latency is its batch's Delta commit time minus its Kafka timestamp (p50/p95).
3. Memory: the peak resident memory of the job's whole process tree (driver JVM and Python workers), as the
   sum of PSS (``bench/memory.py``: pages shared by the forked Python workers counted once); the RSS sum too.

Prints a table and writes bench/results/ingest.json (alerts_per_s, p95_commit_latency_s, peak_rss_gib).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alertlake.kafka import delete_topics, ensure_topic, survey_topic  # noqa: E402
from alertlake.settings import Settings  # noqa: E402
from alertlake.simulate import simulate  # noqa: E402
from bench.memory import PeakSampler  # noqa: E402

RESULTS = REPO / "bench" / "results" / "ingest.json"


def _job(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "jobs.ingest", "--survey", "ztf", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _commits(lake: Path) -> list[dict]:
    from deltalake import DeltaTable

    out = []
    for entry in DeltaTable(str(lake / "bronze" / "ztf_alerts")).history():
        meta = entry.get("userMetadata")
        if meta:
            out.append({**json.loads(meta), "committed_ms": entry["timestamp"]})
    return out


def throughput(alerts: int, drop_cutouts: bool, work: Path) -> dict[str, float]:
    prefix, lake = f"bench-{uuid.uuid4().hex[:6]}-", work / "tp-lake"
    env = {**os.environ, "ALERTLAKE_TOPIC_PREFIX": prefix, "ALERTLAKE_LAKE_ROOT": str(lake)}
    settings = Settings(topic_prefix=prefix, lake_root=str(lake))
    sent = simulate(settings, "ztf", loops=10**6, night="2026-11-24", limit=alerts, drop_cutouts=drop_cutouts)
    launched = time.monotonic()
    proc = _job(env, "--trigger", "available-now", "--max-offsets", "20000")
    sampler = PeakSampler(proc.pid)
    sampler.start()
    code = proc.wait()
    job_wall = time.monotonic() - launched
    sampler.stop()
    delete_topics(settings, [survey_topic(settings, "ztf")])
    if code:
        raise RuntimeError(f"ingestion exited with {code}")
    commits = [c for c in _commits(lake) if c["messages"]]
    first_start = min(dt.datetime.fromisoformat(c["started_at"]).timestamp() for c in commits)
    last_commit = max(c["committed_ms"] for c in commits) / 1000
    rows = sum(c["bronze_rows"] + c["quarantine_rows"] for c in commits)
    return {
        "alerts": sent.alerts,
        "megabytes": round(sent.megabytes, 1),
        "alerts_per_s": round(rows / (last_commit - first_start), 1),
        # The whole process, from launch to exit: Spark start-up, warm-up and shut-down included.
        "job_wall_s": round(job_wall, 1),
        "alerts_per_s_whole_process": round(rows / job_wall, 1),
        "peak_rss_gib": round(sampler.peak / 2**30, 2),
        "peak_rss_sum_gib": round(sampler.peak_rss_sum / 2**30, 2),
        "batches": len(commits),
    }


def latency(rate: float, seconds: float, drop_cutouts: bool, work: Path) -> dict[str, float]:
    prefix, lake = f"bench-{uuid.uuid4().hex[:6]}-", work / "lat-lake"
    env = {**os.environ, "ALERTLAKE_TOPIC_PREFIX": prefix, "ALERTLAKE_LAKE_ROOT": str(lake)}
    settings = Settings(topic_prefix=prefix, lake_root=str(lake))
    ensure_topic(settings, survey_topic(settings, "ztf"))  # empty: every alert the job sees is a measured one
    proc = _job(env, "--trigger", "continuous", "--interval", "1 second", "--max-offsets", "20000")
    sampler = PeakSampler(proc.pid)
    sampler.start()
    # Spark's start-up and the job's warm-up are not part of the steady state: send once the stream has begun
    # (its checkpoint metadata is written when the query starts), and a few seconds more.
    started = lake / "_checkpoints" / "ingest_ztf" / "metadata"
    deadline = time.monotonic() + 180
    while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)
    time.sleep(5)
    sent = simulate(
        settings,
        "ztf",
        loops=10**6,
        night="2026-11-24",
        rate=rate,
        limit=int(rate * seconds),
        drop_cutouts=drop_cutouts,
    )
    time.sleep(15)
    proc.terminate()
    proc.wait(60)
    sampler.stop()
    delete_topics(settings, [survey_topic(settings, "ztf")])
    import pandas as pd
    from deltalake import DeltaTable

    batches = {c["batch_id"]: c["committed_ms"] / 1000 for c in _commits(lake)}
    table = DeltaTable(str(lake / "bronze" / "ztf_alerts")).to_pandas(columns=["kafka_timestamp", "ingest_batch"])
    table = table[table["ingest_batch"].isin(batches)]
    sent_s = (table["kafka_timestamp"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()  # whatever the unit
    lat = table["ingest_batch"].map(batches) - sent_s
    return {
        "rate": rate,
        "sent": sent.alerts,
        "achieved_send_rate": round(sent.rate, 1),
        "ingested": len(table),
        "p50_commit_latency_s": round(float(lat.quantile(0.5)), 2),
        "p95_commit_latency_s": round(float(lat.quantile(0.95)), 2),
        "peak_rss_gib": round(sampler.peak / 2**30, 2),
        "peak_rss_sum_gib": round(sampler.peak_rss_sum / 2**30, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--keep-cutouts", action="store_true", help="send the image stamps too (~67 KB/alert)")
    args = parser.parse_args()
    drop = not args.keep_cutouts
    with tempfile.TemporaryDirectory(prefix="alertlake-bench-", dir=Settings().state_dir) as tmp:
        tp = throughput(args.alerts, drop, Path(tmp))
        lat = latency(args.rate, args.seconds, drop, Path(tmp))
    result = {
        "alerts_per_s": tp["alerts_per_s"],
        "p95_commit_latency_s": lat["p95_commit_latency_s"],
        "peak_rss_gib": max(tp["peak_rss_gib"], lat["peak_rss_gib"]),
        "throughput": tp,
        "latency": lat,
        "cutouts": not drop,
        "decoding_path": (
            "Python (alertlake.surveys in a scalar Arrow UDF over the Kafka values) validates and maps to "
            "canonical; Spark from_avro with a union reader schema decodes the native columns"
        ),
        "memory_measure": "sum of PSS over the job's process tree (bench/memory.py); RSS sum beside it",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<32}{'value':>12}")
    for key in ("alerts_per_s", "p95_commit_latency_s", "peak_rss_gib"):
        print(f"{key:<32}{result[key]:>12}")
    print(f"{'p50_commit_latency_s':<32}{lat['p50_commit_latency_s']:>12}")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
