"""AlertLake's Spark plugin (one SQL conf per task, :mod:`alertlake.spark_plugin`) on and off, side by side.

The same batch as ``bench/stages.py`` (the shared sample ZTF alerts without their stamps, repeated to
``--alerts``, decoded and cached before anything is timed) goes to bronze's columns through Spark's
``from_avro`` (noop sink), then to a Delta table as bronze is written. A Spark session's plugins are fixed when
it starts, so each setting runs in a process of its own; the processes alternate (on, off, off, on, ...) so that
a drift of the machine's speed weighs on both alike. Each process runs every measurement once untimed, then
``--repeats`` times. The table gives, per setting, the minimum wall and CPU time (the whole process tree) over
its processes and the median of their medians; the JSON adds the ratios off/on of those medians.

    python bench/task_conf.py [--alerts 14000] [--repeats 3] [--rounds 2] [--output bench/results/task_conf.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.decode import load_average
from bench.stages import write_result

RESULTS = Path(__file__).resolve().parent / "results" / "task_conf.json"
SETTING = "ALERTLAKE_SPARK_TASK_CONF_CACHE"


def child(alerts: int, repeats: int) -> dict[str, Any]:
    """In a process whose setting is already chosen: the measurements, and how many tasks the plugin served."""
    from alertlake.lake import ensure_table
    from alertlake.settings import get_settings
    from alertlake.spark import WRITE_OPTIONS, build_spark
    from bench.stages import bronze_batch, measure_in_turn, sample_batch
    from jobs import ingest

    settings = get_settings()
    spark = build_spark(settings, "alertlake-bench-task-conf")
    spark.sparkContext.setLogLevel("ERROR")
    tmp = tempfile.mkdtemp(prefix="alertlake-bench-task-conf-")
    try:
        kafka_like, count, _ = sample_batch(spark, alerts, keep_cutouts=False)
        bronze = bronze_batch(kafka_like)
        ensure_table(f"file://{tmp}/bronze", ingest.bronze_schema("ztf"), "night", ingest.BRONZE_PROPERTIES)
        stages = {
            "bronze_from_avro": lambda: bronze.write.format("noop").mode("overwrite").save(),
            "bronze_delta_write": lambda: (
                bronze.write.format("delta").mode("append").options(**WRITE_OPTIONS).save(f"{tmp}/bronze")
            ),
        }
        for work in stages.values():
            work()  # JIT compilation, first write
        figures = measure_in_turn(stages, repeats)
        try:
            served = int(spark._jvm.org.alertlake.spark.TaskConfPlugin.tasksGivenConf())  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - the class is absent when the plugin is off
            served = 0
        return {"alerts": count, "stages": figures, "tasks_given_conf": served}
    finally:
        spark.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=14_000, help="alerts in the batch (the samples repeated)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement in each process")
    parser.add_argument("--rounds", type=int, default=2, help="processes of each setting (alternating)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.alerts, args.repeats)))
        return

    load_before = load_average()
    order = [("on", "off") if r % 2 == 0 else ("off", "on") for r in range(args.rounds)]
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for pair in order:
        for setting in pair:
            env = {**os.environ, SETTING: "true" if setting == "on" else "false"}
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--alerts", str(args.alerts), "--repeats", str(args.repeats)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                raise SystemExit(f"the {setting} run failed:\n{out.stderr[-3000:]}")
            runs[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"plugin {setting}: {runs[setting][-1]['stages']}", flush=True)
    if runs["on"][0]["tasks_given_conf"] == 0:
        raise SystemExit("the plugin served no task in the 'on' runs: it is not active (is it built? make install)")

    alerts = runs["on"][0]["alerts"]
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for setting, found in runs.items():
        for stage in found[0]["stages"]:
            per_run = [run["stages"][stage] for run in found]
            figures.setdefault(stage, {})[setting] = {
                "wall_s_min": min(m["wall_s_min"] for m in per_run),
                "wall_s_median": round(statistics.median(m["wall_s_median"] for m in per_run), 2),
                "cpu_s_min": min(m["cpu_s_min"] for m in per_run),
                "cpu_s_median": round(statistics.median(m["cpu_s_median"] for m in per_run), 2),
                "cpu_ms_per_alert": round(1000 * min(m["cpu_s_min"] for m in per_run) / alerts, 3),
            }
    print(f"\n{alerts:,} ZTF alerts without stamps; {args.rounds} processes per setting, {args.repeats} runs each")
    print(
        f"{'stage':20s} {'plugin':>6s} {'wall min':>9s} {'median':>7s} {'CPU min':>8s} {'median':>7s} {'ms/alert':>9s}"
    )
    for stage, by_setting in figures.items():
        for setting, f in by_setting.items():
            print(
                f"{stage:20s} {setting:>6s} {f['wall_s_min']:9.2f} {f['wall_s_median']:7.2f} {f['cpu_s_min']:8.2f} "
                f"{f['cpu_s_median']:7.2f} {f['cpu_ms_per_alert']:9.3f}"
            )
    ratios = {
        stage: {
            f"{m}_median_off_over_on": round(by["off"][f"{m}_median"] / by["on"][f"{m}_median"], 2)
            for m in ("wall_s", "cpu_s")
        }
        for stage, by in figures.items()
    }
    print("off/on (medians):", ratios)
    result = {
        "alerts": alerts,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "stages": figures,
        "off_over_on": ratios,
    }
    write_result(args.output, result, load_before)


if __name__ == "__main__":
    main()
