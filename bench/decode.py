"""Decode + canonical-mapping throughput per core, for ZTF and Rubin, on the shared sample alerts.

Single process, one core. Each measurement repeats the whole sample until it has run ``--seconds``. The naive
baseline (one ``fastavro.reader`` per ZTF message; ``lsst.alert.packet``'s ``Schema.deserialize`` after a
registry lookup per Rubin message) is measured in the same run, without the mapping.

    python bench/decode.py [--seconds 3]

Prints a table and writes ``bench/results/decode.json``. ``simulate_alerts_per_s`` is left null here: the
simulator benchmark fills it.
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

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alertlake.surveys import get_survey
from alertlake.surveys.samples import sample_messages

RESULTS = Path(__file__).resolve().parent / "results" / "decode.json"


def rate(messages: list[bytes], work: Callable[[bytes], int], seconds: float) -> float:
    """Alerts per second of ``work`` (which returns the number of alerts it handled) over repeated passes."""
    for message in messages[:5]:  # warm caches (schema parsing) before timing
        work(message)
    done = 0
    start = time.perf_counter()
    while True:
        for message in messages:
            done += work(message)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


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
    args = parser.parse_args()

    ztf, lsst = get_survey("ztf"), get_survey("lsst")
    ztf_messages = [s.message for s in sample_messages("ztf")]
    lsst_messages = [s.message for s in sample_messages("lsst", real_only=True)]

    def ztf_fast(message: bytes) -> int:
        return len(ztf.to_canonical(ztf.decode_alerts(message)))

    def ztf_decode_only(message: bytes) -> int:
        return len(ztf.decode_alerts(message))

    def ztf_naive(message: bytes) -> int:
        return sum(1 for _ in fastavro.reader(io.BytesIO(message)))

    def lsst_fast(message: bytes) -> int:
        return len(lsst.to_canonical(lsst.decode_alerts(message)))

    from lsst.alert.packet import SchemaRegistry

    registry = SchemaRegistry.all_schemas_from_filesystem()

    def lsst_naive(message: bytes) -> int:
        schema = registry.get_by_id(int.from_bytes(message[1:5], "big"))
        schema.deserialize(message[5:])
        return 1

    figures = {
        "ztf_alerts_per_s_per_core": rate(ztf_messages, ztf_fast, args.seconds),
        "ztf_decode_only_alerts_per_s_per_core": rate(ztf_messages, ztf_decode_only, args.seconds),
        "ztf_naive_fastavro_reader_alerts_per_s_per_core": rate(ztf_messages, ztf_naive, args.seconds),
        "lsst_alerts_per_s_per_core": rate(lsst_messages, lsst_fast, args.seconds),
        "lsst_naive_alert_packet_alerts_per_s_per_core": rate(lsst_messages, lsst_naive, args.seconds),
    }
    result = {
        **{key: round(value, 1) for key, value in figures.items()},
        "simulate_alerts_per_s": None,
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
    print(f"{'measurement':<{width}}  alerts/s/core")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:>13,.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if RESULTS.exists():  # keep what other benchmarks (the simulator) wrote
        previous = json.loads(RESULTS.read_text())
        if previous.get("simulate_alerts_per_s") is not None:
            result["simulate_alerts_per_s"] = previous["simulate_alerts_per_s"]
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
