"""Enrichment benchmark: alerts/s per science module and for the whole job, beside fink-science on the same alerts.

    .venv/bin/python bench/enrich.py [--alerts 20000] [--fink-alerts 2000]

The shared sample (real ZTF and Rubin alerts, as canonical rows) is repeated to ``--alerts`` rows with unique
alert ids. Measured in one run, on this machine:

* each module (the MLflow champion, loaded as the job loads it) on the whole frame, single process;
* the whole job: ``jobs.enrich`` on a private lake whose bronze table holds those alerts, bounded, timed from
  the query start to the last commit (module loading, Spark, quality cuts, all modules, Delta write, quality gate)
  as ``enrich_job``; and its steady state, ``enrich_job_steady_state``: the batches after the first (bronze is
  written as 4 files, one per micro-batch), i.e. what a running stream sustains once started;
* fink-science 7.4.0 (PyPI) functions on the same ZTF alerts, called as Spark would call them (pandas batches of
  10,000 rows, ``spark.sql.execution.arrow.maxRecordsPerBatch``), in their own virtualenv
  (``~/.cache/alertlake/fink-venv``: its dependencies clash with ours): cross-match
  ``crossmatch_other_catalog`` (VSX, GCVS) + ``crossmatch_mangrove``, light-curve features
  ``extract_features_ad_raw``, early SN Ia ``rfscore_sigmoid_full``. The slow ones run on ``--fink-alerts``.

Writes ``bench/results/enrich.json``: ``alerts_per_s`` (module or ``enrich_job`` -> rate),
``speedup_vs_fink_science`` (module -> our rate / fink's, null where not measured) and the machine's facts.
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alertlake import modules as registry  # noqa: E402
from alertlake.settings import get_settings  # noqa: E402
from alertlake.surveys.canonical import HISTORY_ENTRY  # noqa: E402
from jobs import enrich  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "enrich.json"
FINK_VENV = get_settings().cache_dir / "fink-venv"
FINK_VERSION = "7.4.0"
FINK_EQUIVALENT = {"xmatch": "xmatch", "features": "features", "supernova": "snia"}
#: fink-science 7.4.0 declares no dependencies; these are the versions its code and pickled models work with
#: (its random forest needs scikit-learn 1.2, whose wheels need numpy < 2), checked on 2026-11-25.
FINK_REQUIREMENTS = [
    f"fink-science=={FINK_VERSION}",
    "fink-utils==0.79.0",
    "fink-tns==0.11",  # fink-science 7.4 imports fink_tns.utils, gone from 0.12 on
    "actsnclass==1.2",
    "scikit-learn==1.2.2",
    "numpy<2",
    "pandas<2.3",
    "astropy<7",
    "pyarrow<20",
    "light-curve<0.10",
    "pyspark==3.5.*",
    "line_profiler",
    "requests",
    "matplotlib",
    "seaborn",
]
#: Not on PyPI: early SN Ia features of rfscore_sigmoid_full, from its public repository (pip VCS URL).
ACTSNFINK = "actsnfink @ git+https://github.com/emilleishida/fink_sn_activelearning"
NIGHT = "2026-11-24"

# Runs inside fink's own virtualenv: reads the alerts, times each fink-science function, prints JSON.
FINK_SCRIPT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from fink_science.ztf.xmatch.processor import crossmatch_other_catalog, crossmatch_mangrove
from fink_science.ztf.ad_features.processor import extract_features_ad_raw
from fink_science.ztf.random_forest_snia.processor import rfscore_sigmoid_full

def raw(f):
    f = getattr(f, "func", f)
    return getattr(f, "__wrapped__", f)

alerts = pd.read_parquet(sys.argv[1])
n_slow = int(sys.argv[2])
batch = 10_000
out = {}

def timed(name, n, fn):
    fn(alerts.iloc[: min(n, 50)])  # warm-up: imports and catalogue caches of the first call are not counted
    t = time.perf_counter()
    for start in range(0, n, batch):
        fn(alerts.iloc[start : min(n, start + batch)].reset_index(drop=True))
    out[name] = {"alerts": n, "seconds": time.perf_counter() - t}

xm, mg = raw(crossmatch_other_catalog), raw(crossmatch_mangrove)
def xmatch(df):
    cand, ra, dec = df["alert_id"], df["ra"], df["dec"]
    xm(cand, ra, dec, pd.Series(["vsx"]), pd.Series([1.5]))
    xm(cand, ra, dec, pd.Series(["gcvs"]), pd.Series([1.5]))
    mg(cand, ra, dec, pd.Series([1.5]))
timed("xmatch", len(alerts), xmatch)

feat = raw(extract_features_ad_raw)
def features(df):
    for r in df.itertuples():
        feat(r.cmagpsf, r.cjd, r.csigmapsf, r.cfid, r.object_id, r.cdistnr, r.cmagnr, r.csigmagnr, r.cisdiffpos)
timed("features", min(n_slow, len(alerts)), features)

snia = raw(rfscore_sigmoid_full)
def sn(df):
    snia(df["cjd"], df["cfid"], df["cmagpsf"], df["csigmapsf"], pd.Series(["Unknown"] * len(df)), df["ndethist"])
timed("snia", min(n_slow, len(alerts)), sn)
print("FINK_RESULT " + json.dumps(out))
"""


def scaled_alerts(n: int) -> pd.DataFrame:
    """The real shared sample repeated to ``n`` canonical rows with unique alert ids, all on one night."""
    sample = registry.sample_alerts().drop(columns=["quality_pass", "quality_reason"])
    copies = -(-n // len(sample))
    frame = pd.concat([sample] * copies, ignore_index=True).iloc[:n].copy()
    frame["alert_id"] = np.arange(len(frame), dtype=np.int64) + 10**15
    frame["night"] = NIGHT
    return frame


def time_modules(alerts: pd.DataFrame) -> dict[str, float]:
    """alerts/s of each champion module (as loaded by the job) on ``alerts``, single process; and of the cuts."""
    from alertlake.quality_cuts import quality_cuts

    rates: dict[str, float] = {}
    started = time.perf_counter()
    flags = quality_cuts(alerts)
    rates["quality_cuts"] = len(alerts) / (time.perf_counter() - started)
    frame = alerts.join(flags)
    # The history as the job hands it to modules (``jobs.enrich._enrich_batch``): Arrow-backed, not Python dicts.
    history = pa.array(frame["history"].tolist(), type=pa.list_(HISTORY_ENTRY), from_pandas=True)
    frame["history"] = enrich.history_series(history, frame.index)
    for cls in registry.execution_order(list(registry.all_modules().values())):
        module = registry.load(cls.name).module
        inputs = frame[list(cls.inputs)]
        module.predict(inputs.head(50))  # warm-up
        started = time.perf_counter()
        out = module.predict(inputs)
        rates[cls.name] = len(inputs) / (time.perf_counter() - started)
        frame = frame.join(out)
    return rates


def time_job(alerts: pd.DataFrame) -> dict[str, Any]:
    """The whole bounded enrichment job over a private lake holding ``alerts`` as ZTF bronze rows."""
    import pyarrow as pa

    from alertlake.spark import build_spark
    from alertlake.surveys.canonical import SCHEMA
    from jobs.ingest import bronze_schema

    lake = get_settings().model_copy(
        update={"lake_root": tempfile.mkdtemp(prefix="alertlake-bench-enrich-"), "trino_register": False}
    )
    canonical = pa.Table.from_pandas(alerts[list(SCHEMA.names)], schema=SCHEMA, preserve_index=False)
    stamp = pa.array([dt.datetime.now(dt.UTC)] * len(alerts), pa.timestamp("us", tz="UTC"))
    given = {
        "canonical": pa.StructArray.from_arrays([c.combine_chunks() for c in canonical.columns], fields=list(SCHEMA)),
        "kafka_timestamp": stamp,
        "night": pa.array(alerts["night"]),
    }
    # Bronze's other columns (native fields, Kafka coordinates) are not read by the enrichment: left null.
    full = bronze_schema("ztf")
    table = pa.table([given.get(f.name, pa.nulls(len(alerts), f.type)) for f in full], schema=full)
    # Written with delta-rs in 4 appends: 4 files, as a stream of ingestion batches leaves them.
    from deltalake import write_deltalake

    target = str(lake.lake_path / "bronze" / "ztf_alerts")
    step = -(-len(table) // 4)
    for start in range(0, len(table), step):
        write_deltalake(target, table.slice(start, step), partition_by=["night"], mode="append")
    spark = build_spark(lake, "alertlake-bench-enrich")
    started = time.perf_counter()
    # One bronze file per micro-batch: the first batch carries the start-up (module loading, first Spark
    # actions), the others are the steady state of a running stream.
    summary = enrich.run(lake, surveys=["ztf"], trigger="available-now", spark=spark, max_files=1)
    seconds = time.perf_counter() - started
    spark.stop()
    steady = summary["history"][1:]
    return {
        "alerts": summary["rows"],
        "seconds": seconds,
        "batches": summary["batches"],
        "steady_alerts": sum(b["rows"] for b in steady),
        "steady_seconds": sum(b["seconds"] for b in steady),
        "batch_phases": [
            {"rows": b["rows"], "seconds": round(b["seconds"], 2), **b["phases"]} for b in summary["history"]
        ],
    }


def fink_inputs(alerts: pd.DataFrame) -> pd.DataFrame:
    """The ZTF alerts in fink-science's input shape: per-alert arrays of the history plus the alert (``c*``)."""
    ztf = alerts[alerts["survey"] == "ztf"].reset_index(drop=True)
    fid = {"g": 1, "r": 2, "i": 3}
    rows: dict[str, list[Any]] = {k: [] for k in ("cjd", "cfid", "cmagpsf", "csigmapsf", "cisdiffpos", "ndethist")}
    for hist, mjd, band, mag, err, pos in zip(
        ztf["history"], ztf["mjd"], ztf["band"], ztf["mag"], ztf["mag_err"], ztf["is_positive"], strict=True
    ):
        entries = [h for h in (hist if hist is not None else []) if h["kind"] == "detection"]
        jd = [h["mjd"] + 2400000.5 for h in entries] + [mjd + 2400000.5]
        rows["cjd"].append(np.asarray(jd, dtype=float))
        rows["cfid"].append(np.asarray([fid.get(h["band"], 3) for h in entries] + [fid.get(band, 3)], dtype=int))
        rows["cmagpsf"].append(np.asarray([h["mag"] for h in entries] + [mag], dtype=float))
        rows["csigmapsf"].append(np.asarray([h["mag_err"] for h in entries] + [err], dtype=float))
        rows["cisdiffpos"].append(
            np.asarray(["t" if (h["flux"] or 0) > 0 else "f" for h in entries] + ["t" if pos else "f"])
        )
        rows["ndethist"].append(len(jd))
    frame = ztf[["alert_id", "object_id", "ra", "dec"]].copy()
    for key, values in rows.items():
        frame[key] = values
    # The canonical alert has no reference-source fields: fink's DC-magnitude branch is not taken (as when far).
    lengths = [len(j) for j in frame["cjd"]]
    frame["cdistnr"] = pd.Series([np.full(n, 99.0) for n in lengths], index=frame.index, dtype=object)
    frame["cmagnr"] = pd.Series([np.full(n, np.nan) for n in lengths], index=frame.index, dtype=object)
    frame["csigmagnr"] = pd.Series([np.full(n, np.nan) for n in lengths], index=frame.index, dtype=object)
    return frame


def time_fink(alerts: pd.DataFrame, n_slow: int) -> dict[str, Any]:
    """Run the fink-science functions in fink's virtualenv; returns their timings or why they could not run."""
    python = FINK_VENV / "bin" / "python"
    if not python.exists():
        return {"error": f"no fink-science virtualenv at {FINK_VENV}: run with --install-fink"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.parquet"
        fink_inputs(alerts).to_parquet(path)
        proc = subprocess.run(
            [str(python), "-c", FINK_SCRIPT, str(path), str(n_slow)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYSPARK_PYTHON": str(python)},
            timeout=3600,
        )
    for line in proc.stdout.splitlines():
        if line.startswith("FINK_RESULT "):
            return dict(json.loads(line.removeprefix("FINK_RESULT ")))
    return {"error": f"fink-science failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}"}


def install_fink(actsnfink: str = ACTSNFINK) -> None:
    """Create fink-science's own virtualenv in the cache (never in AlertLake's: its pins clash with ours)."""
    if not (FINK_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(FINK_VENV)], check=True)
    uv = Path(sys.executable).parent / "uv"
    installer = [str(uv), "pip", "install", "--python", str(FINK_VENV / "bin" / "python")]
    subprocess.run([*installer, *FINK_REQUIREMENTS, actsnfink], check=True)


def fink_version() -> str | None:
    python = FINK_VENV / "bin" / "python"
    if not python.exists():
        return None
    proc = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('fink-science'))"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() or None


def machine() -> dict[str, Any]:
    """Facts about where the figures were measured."""
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln), "")
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, write ``bench/results/enrich.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--fink-alerts", type=int, default=2_000, help="alerts for fink's slow functions")
    parser.add_argument("--skip-job", action="store_true", help="module and fink figures only")
    parser.add_argument("--install-fink", action="store_true", help="first create fink-science's virtualenv")
    parser.add_argument("--actsnfink", default=ACTSNFINK, help="pip requirement (or local folder) for actsnfink")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.install_fink:
        install_fink(args.actsnfink)
    facts = machine()
    alerts = scaled_alerts(args.alerts)
    rates = time_modules(alerts)
    job = None if args.skip_job else time_job(alerts)
    if job:
        rates["enrich_job"] = job["alerts"] / job["seconds"]
        if job["steady_seconds"]:
            rates["enrich_job_steady_state"] = job["steady_alerts"] / job["steady_seconds"]
    fink = time_fink(alerts, args.fink_alerts)
    fink_rates = {k: v["alerts"] / v["seconds"] for k, v in fink.items() if isinstance(v, dict)}
    speedup: dict[str, float | None] = {m: None for m in registry.all_modules()}
    for module, fink_name in FINK_EQUIVALENT.items():
        if fink_name in fink_rates:
            speedup[module] = rates[module] / fink_rates[fink_name]
    # fink's SN Ia function computes its own light-curve features; ours reads the features module's outputs.
    if "snia" in fink_rates:
        both = 1.0 / (1.0 / rates["features"] + 1.0 / rates["supernova"])
        speedup["supernova_including_features"] = both / fink_rates["snia"]
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": facts,
        "alerts": args.alerts,
        "alerts_per_s": rates,
        "speedup_vs_fink_science": speedup,
        "fink_science": {
            "version": fink_version(),
            "virtualenv": str(FINK_VENV),
            "alerts_per_s": fink_rates,
            "timings": {k: v for k, v in fink.items() if isinstance(v, dict)},
            "error": fink.get("error"),
            "functions": {
                "xmatch": "crossmatch_other_catalog (vsx, gcvs) + crossmatch_mangrove, astropy match_to_catalog_sky",
                "features": "ad_features.extract_features_ad_raw (light-curve, per alert)",
                "supernova": "random_forest_snia.rfscore_sigmoid_full (early SN Ia, sigmoid fit + random forest)",
            },
        },
        "job": job,
        "notes": (
            "Module rates: one process, whole frame in one predict call (the job calls predict per Arrow batch), "
            "with the history Arrow-backed as the job passes it. "
            "fink-science functions called on pandas batches of 10,000 rows as Spark would, in their own "
            "virtualenv; our xmatch searches 4 catalogues (VSX, GCVS, SPICY, Mangrove), fink's calls 3. "
            "actsnfink (needed by rfscore_sigmoid_full) is not on PyPI: installed from its public repository. "
            "supernova alone reads precomputed features; supernova_including_features adds the features module's "
            "time, the fair comparison with rfscore_sigmoid_full (which fits its own sigmoid features). fink's "
            "ad_features computes ~26 features per band (g and r); ours 7 light-curve features + counts in the "
            "alert's band."
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'measure':<16}{'alerts/s':>14}{'fink alerts/s':>16}{'speedup':>10}")
    for name, rate in rates.items():
        fr = fink_rates.get(FINK_EQUIVALENT.get(name, ""))
        sp = speedup.get(name)
        print(f"{name:<16}{rate:>14,.0f}{(f'{fr:,.0f}' if fr else '-'):>16}{(f'{sp:,.1f}x' if sp else '-'):>10}")
    if fink.get("error"):
        print(f"fink-science: {fink['error']}")
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
