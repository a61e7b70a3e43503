"""Decode + canonical-mapping throughput per core, for ZTF and Rubin, and the simulator's rate into Kafka.

Decoding: single process, one core, on the shared sample alerts. Each measurement repeats the whole sample
until it has run ``--seconds``. The headline figures (``ztf_alerts_per_s_per_core``,
``lsst_alerts_per_s_per_core``) time ``Survey.read``: decode, canonical mapping and validation, what ingestion
runs on every message (for ZTF only the fields the mapping reads are decoded; the full record is decoded on
first access, which ingestion never makes). ``*_full_decode_map`` decodes every field first
(``decode_alerts`` + ``to_canonical``). The naive baselines (one ``fastavro.reader`` per ZTF message;
``lsst.alert.packet``'s ``Schema.deserialize`` after a registry lookup per Rubin message) are without mapping.
Rates are per wall-clock second; ``per_cpu_second`` gives the same per second of this process's CPU time,
which other load on the machine disturbs less.

Simulator: ``simulate`` as fast as possible into the local Kafka (``alertlake.settings``), full ZTF alerts
with cutouts, remapped copies shifted to one night, ``--simulate-alerts`` of them (default 100,000), on a
topic prefix of its own that is deleted afterwards. The time includes waiting for Kafka's acknowledgements.

    python bench/decode.py [--seconds 3] [--simulate-alerts 100000 | --no-simulate]

Prints a table and writes ``bench/results/decode.json`` (with the load average before and after).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alertlake.surveys import get_survey
from alertlake.surveys.samples import sample_messages

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"


def rate(messages: list[bytes], work: Callable[[bytes], int], seconds: float) -> tuple[float, float]:
    """Alerts per wall-clock second and per CPU second of ``work`` (which returns how many alerts it handled)."""
    for message in messages:  # warm caches (schema parsing, generated readers) before timing
        work(message)
    done = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        for message in messages:
            done += work(message)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, done / (time.process_time() - cpu_start)


def simulate_rate(alerts: int) -> dict[str, Any]:
    """Send ``alerts`` remapped full ZTF alerts to a throw-away topic of the local Kafka; what was achieved."""
    from alertlake import kafka
    from alertlake.settings import get_settings
    from alertlake.simulate import simulate

    settings = get_settings().model_copy(update={"topic_prefix": f"bench-decode-{os.getpid()}-{int(time.time())}."})
    topic = kafka.survey_topic(settings, "ztf")
    admin = kafka.admin(settings)
    cpu_start = time.process_time()
    try:
        summary = simulate(settings, "ztf", loops=10**6, night="2026-11-24", limit=alerts, first_copy=1)
    finally:
        if topic in admin.list_topics(timeout=10).topics:
            for future in admin.delete_topics([topic], operation_timeout=60).values():
                future.result()
    return {
        "alerts": summary.alerts,
        "seconds": round(summary.seconds, 1),
        "megabytes": round(summary.megabytes),
        "alerts_per_s": round(summary.rate, 1),
        "megabytes_per_s": round(summary.megabytes / summary.seconds, 1),
        "process_cpu_seconds": round(time.process_time() - cpu_start, 1),
        "kafka": settings.kafka_bootstrap_servers,
        "mode": "as fast as possible, full ZTF alerts with cutouts, remapped copies 1.., shifted to 2026-11-24",
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum duration of each measurement")
    parser.add_argument("--simulate-alerts", type=int, default=100_000, help="alerts the simulator sends")
    parser.add_argument("--no-simulate", action="store_true", help="skip the simulator (keep the last figure)")
    args = parser.parse_args()
    load_before = load_average()

    ztf, lsst = get_survey("ztf"), get_survey("lsst")
    ztf_messages = [s.message for s in sample_messages("ztf")]
    lsst_messages = [s.message for s in sample_messages("lsst", real_only=True)]

    def ztf_read(message: bytes) -> int:
        return len(ztf.read(message))

    def ztf_full(message: bytes) -> int:
        return len(ztf.to_canonical(ztf.decode_alerts(message)))

    def ztf_decode_only(message: bytes) -> int:
        return len(ztf.decode_alerts(message))

    def ztf_naive(message: bytes) -> int:
        return sum(1 for _ in fastavro.reader(io.BytesIO(message)))

    def lsst_read(message: bytes) -> int:
        return len(lsst.read(message))

    from lsst.alert.packet import SchemaRegistry

    registry = SchemaRegistry.all_schemas_from_filesystem()

    def lsst_naive(message: bytes) -> int:
        schema = registry.get_by_id(int.from_bytes(message[1:5], "big"))
        schema.deserialize(message[5:])
        return 1

    measured = {
        "ztf_alerts_per_s_per_core": rate(ztf_messages, ztf_read, args.seconds),
        "ztf_full_decode_map_alerts_per_s_per_core": rate(ztf_messages, ztf_full, args.seconds),
        "ztf_decode_only_alerts_per_s_per_core": rate(ztf_messages, ztf_decode_only, args.seconds),
        "ztf_naive_fastavro_reader_alerts_per_s_per_core": rate(ztf_messages, ztf_naive, args.seconds),
        "lsst_alerts_per_s_per_core": rate(lsst_messages, lsst_read, args.seconds),
        "lsst_naive_alert_packet_alerts_per_s_per_core": rate(lsst_messages, lsst_naive, args.seconds),
    }
    figures = {key: wall for key, (wall, _) in measured.items()}
    load_after_decode = load_average()
    simulator = None if args.no_simulate else simulate_rate(args.simulate_alerts)
    result: dict[str, Any] = {
        **{key: round(value, 1) for key, value in figures.items()},
        "simulate_alerts_per_s": simulator["alerts_per_s"] if simulator else None,
        "per_cpu_second": {key: round(cpu, 1) for key, (_, cpu) in measured.items()},
        "simulate": simulator,
        "load_average": {"before": load_before, "after_decode": load_after_decode, "after": load_average()},
        "samples": {
            "ztf_messages": len(ztf_messages),
            "lsst_messages": len(lsst_messages),
            "ztf_mean_bytes": round(sum(map(len, ztf_messages)) / len(ztf_messages)),
            "lsst_mean_bytes": round(sum(map(len, lsst_messages)) / len(lsst_messages)),
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "fastavro": fastavro.__version__,
            "platform": platform.platform(),
        },
    }
    width = max(map(len, figures))
    print(f"{'measurement':<{width}}  alerts/s/core  per CPU s")
    for key, (wall, cpu) in measured.items():
        print(f"{key:<{width}}  {wall:>13,.0f}  {cpu:>9,.0f}")
    if simulator:
        print(
            f"simulate: {simulator['alerts']:,} alerts, {simulator['megabytes']:,} MB in {simulator['seconds']} s: "
            f"{simulator['alerts_per_s']:,.0f} alerts/s ({simulator['megabytes_per_s']} MB/s)"
        )
    print(f"load average before {load_before}, after {result['load_average']['after']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if RESULTS.exists() and simulator is None:  # --no-simulate keeps the last simulator figures
        previous = json.loads(RESULTS.read_text())
        result["simulate_alerts_per_s"] = previous.get("simulate_alerts_per_s")
        result["simulate"] = previous.get("simulate")
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
