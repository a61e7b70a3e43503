"""End-to-end latency: survey topic -> ingest -> enrich (+ quality gate) -> distribute -> filter topics.

Starts the three streaming jobs as processes on a fresh benchmark lake (so no checkpoint or table of the live
lake is touched; the filter topics get a ``.bench-<id>`` suffix so live streams are untouched), feeds the ZTF
topic with ``alertlake simulate --rate R --night N --drop-cutouts`` for ``--minutes``, and reads every filter
topic meanwhile. A message's latency is its filter-topic timestamp minus the survey message's timestamp (carried
in the alert as ``kafka_timestamp``); only alerts sent during this run are counted.

Cutouts are dropped by default (``--keep-cutouts`` to keep them): silver carries no stamps, so they only cost
ingest decode time, and at 1,000 alerts/s x 70 KB they would be 70 MB/s through a single local broker.

    python bench/e2e.py [--rate 1000] [--minutes 5] [--night 2026-01-05] [--mode both|pipeline|jobs]

Two ways of running the stages are measured, one after the other on fresh lakes and topics (``--mode both``,
the default): ``pipeline`` (:mod:`jobs.pipeline`, the three stages per micro-batch in one Spark application)
and ``jobs`` (the three streaming jobs as three processes chained through Delta). The JSON's top-level figures
are the pipeline's; ``jobs_mode`` holds the other run and ``pipeline_vs_jobs`` their ratios. CPU seconds used
during the load (each job's process tree, each local service, the simulator, this process) are reported beside
them, with the share of the whole machine's CPU that was busy (``machine.cpu_while_sending``, and
``cpu_during_load`` with the drain) and how fast the machine decodes ZTF alerts that day against
``bench/results/decode.json`` (``machine.speed``): runs of different days compare only through these.

In pipeline mode bronze is appended behind the filter streams by the pipeline's lander (:mod:`jobs.lander`, at
the lowest CPU priority; ``--bronze inline`` appends it in the pipeline instead): the jobs run until it has
caught up, and ``bronze`` reports how far behind the survey each alert of the run reached bronze (its batch's
``ingest_time`` minus its ``kafka_timestamp``) and when the last one did, after sending ended.

Prints a table and writes ``bench/results/e2e.json`` (alerts_per_s, p50/p95/p99_latency_s, peak_rss_gib, ...).
``alerts_per_s`` is the rate at which alerts sent during the run reached silver (the pipeline's sustained
throughput): their count over the time from the first send to the last of them enriched, after a drain period;
the simulator's achieved send rate is reported beside it.

``--competing-load DUTY`` runs one busy loop per core beside everything, each busy ``DUTY`` of the time: the same
host made slower on purpose, to measure the latency's margin without waiting for a slow hour. What the loops took
is in the JSON (``competing_load``); ``bench/results/e2e_competing_load.json`` holds such a run
(``--competing-load 0.4``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alertlake.consume import ConsumeError, ConsumeOptions, iter_alerts  # noqa: E402
from alertlake.filters import load_filters  # noqa: E402
from alertlake.kafka import delete_topics, ensure_topic, survey_topic  # noqa: E402
from alertlake.settings import Settings  # noqa: E402
from bench.memory import PeakSampler  # noqa: E402
from jobs.pipeline import warm_up_topic  # noqa: E402

RESULTS = REPO / "bench" / "results" / "e2e.json"
DECODE_RESULTS = REPO / "bench" / "results" / "decode.json"


def machine_speed(seconds: float = 5.0) -> dict[str, Any]:
    """How fast this machine is today, for comparing runs of different days: ZTF sample alerts decoded per
    second on one core (``Survey.read``, as ``bench/decode.py`` measures it), measured before the jobs start,
    and its ratio to the figure in ``bench/results/decode.json``. On this kind of host the same work has taken
    up to twice as long from one day to the next."""
    from alertlake.surveys import get_survey
    from alertlake.surveys.samples import sample_messages
    from bench.decode import rate

    ztf = get_survey("ztf")
    per_wall_s, per_cpu_s = rate([s.message for s in sample_messages("ztf")], lambda m: len(ztf.read(m)), seconds)
    out: dict[str, Any] = {
        "ztf_decode_alerts_per_s_per_core": round(per_wall_s, 1),
        "ztf_decode_alerts_per_cpu_s": round(per_cpu_s, 1),
    }
    try:
        reference = json.loads(DECODE_RESULTS.read_text())["ztf_alerts_per_s_per_core"]
        out["vs_decode_json"] = round(per_wall_s / reference, 2)
    except (OSError, ValueError, KeyError, ZeroDivisionError):
        pass
    return out


def timestamp_decoder() -> Callable[[bytes | None, bytes], dict[str, Any]]:
    """A filter message -> ``{"kafka_timestamp": ...}``, all the latency needs of it, for :class:`ConsumeOptions`.

    The key's schema (Fink's convention) gets a reader generated once (:mod:`alertlake.surveys.avro_projection`)
    that steps over the other values: this process reads every message of every filter topic on the same two
    cores as the pipeline, and a whole decode of each made it one of the largest users of CPU besides the jobs."""
    from alertlake.surveys.avro_projection import compile_projection

    readers: dict[bytes, Any] = {}

    def plain(branch: Any) -> Any:  # timestamp-micros -> its long: decoded below
        return branch["type"] if isinstance(branch, dict) and "logicalType" in branch else branch

    def decode(key: bytes | None, value: bytes) -> dict[str, Any]:
        reader = readers.get(key or b"")
        if reader is None:
            schema = json.loads(key or b"{}")
            for f in schema["fields"]:
                if f["name"] == "kafka_timestamp":
                    f["type"] = [plain(b) for b in f["type"]] if isinstance(f["type"], list) else plain(f["type"])
            reader = readers[key or b""] = compile_projection(schema, {"kafka_timestamp": True})
        micros = reader(value, 0)[0].get("kafka_timestamp")
        return {"kafka_timestamp": None if micros is None else EPOCH + dt.timedelta(microseconds=micros)}

    return decode


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def cpu_jiffies() -> tuple[int, int, int]:
    """(busy, idle, stolen) clock ticks of all the machine's CPUs since boot (Linux ``/proc/stat``)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, idle + iowait, steal


def busy_fractions(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """Share of the machine's CPU time that was busy, and stolen by the hypervisor, between two snapshots."""
    busy, idle, steal = (b - a for a, b in zip(before, after, strict=True))
    total = busy + idle + steal
    return {"busy": round(busy / total, 3), "stolen": round(steal / total, 3)} if total else {}


def silver_throughput(lake: Path, send_start: dt.datetime) -> tuple[int, float]:
    """Alerts sent from ``send_start`` on that reached silver, and the rate at which they did: their count over
    the time from the first send to the last of them enriched (not the send rate: a pipeline that falls behind
    reaches silver more slowly than alerts arrive)."""
    from deltalake import DeltaTable

    silver = DeltaTable(str(lake / "silver" / "alerts")).to_pyarrow_table(columns=["kafka_timestamp", "enrich_time"])
    rows = [
        (sent, done)
        for sent, done in zip(*(silver.column(c).to_pylist() for c in ("kafka_timestamp", "enrich_time")), strict=True)
        if sent is not None and sent >= send_start
    ]
    if len(rows) < 2:
        return len(rows), 0.0
    last = max(done for _, done in rows)
    return len(rows), len(rows) / (last - send_start).total_seconds()


def wait_for_bronze(lake: Path, timeout: float) -> float | None:
    """Wait until the pipeline's bronze lander has appended every marked batch (no marker left); the seconds it
    took, or None if it did not within ``timeout`` seconds."""
    markers = lake / "_checkpoints" / "pipeline_ztf_bronze"
    t0 = time.monotonic()
    while any(markers.glob("*.json")):
        if time.monotonic() - t0 > timeout:
            print(f"bronze: batches still marked {timeout:.0f} s after the load; see the pipeline's log")
            return None
        time.sleep(1)
    return time.monotonic() - t0


def bronze_lag(lake: Path, send_start: dt.datetime, send_end: dt.datetime) -> dict[str, Any]:
    """How far behind the survey the alerts sent during the run reached bronze: ``ingest_time`` (when their batch
    was appended) minus ``kafka_timestamp``, and when the last of them did, counted from the end of sending."""
    from deltalake import DeltaTable

    table = DeltaTable(str(lake / "bronze" / "ztf_alerts")).to_pyarrow_table(columns=["kafka_timestamp", "ingest_time"])
    rows = [
        (sent, landed)
        for sent, landed in zip(*(table.column(c).to_pylist() for c in ("kafka_timestamp", "ingest_time")), strict=True)
        if sent is not None and sent >= send_start
    ]
    if not rows:
        return {"alerts": 0}
    lag = np.array([(landed - sent).total_seconds() for sent, landed in rows])
    return {
        "alerts": len(rows),
        "p50_lag_s": round(float(np.percentile(lag, 50)), 1),
        "p95_lag_s": round(float(np.percentile(lag, 95)), 1),
        "max_lag_s": round(float(lag.max()), 1),
        "last_after_sending_s": round((max(landed for _, landed in rows) - send_end).total_seconds(), 1),
    }


def lander_restarts(log: Path) -> int:
    """How many times the pipeline started its bronze lander again after it died (from the pipeline's log)."""
    if not log.exists():
        return 0
    with log.open(errors="replace") as lines:
        # Not its last failure ("... N times in a row"), after which the pipeline stops instead.
        return sum("the bronze lander exited with code" in line and "starting it again" in line for line in lines)


def service_pids(settings: Settings) -> dict[str, int]:
    """The local services' main processes (``<state_dir>/run/<service>.pid``), by service name."""
    pids = {}
    for path in sorted((settings.state_dir / "run").glob("*.pid")):
        try:
            pids[path.stem] = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return pids


def start(args: list[str], env: dict[str, str], log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    """Start ``python <args>`` with its output in ``log`` (at a lower CPU priority with ``nice``)."""
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )


#: What ``alertlake.spark.start_stream`` logs once a job's streaming query has started (its warm-up done).
STARTED = re.compile(rb"alertlake\.spark: streaming query \S+ started \(continuous\)")


def wait_until_started(jobs: dict[str, subprocess.Popen[bytes]], work: Path, timeout: float) -> bool:
    """Wait until every Spark job has started its streaming queries (after its warm-up), so the load meets
    running jobs, not starting ones; False (with the reason printed) if a job exited or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    spark_jobs = [name for name in jobs if name != "objects"]  # jobs.objects has no Spark query
    while True:
        for name, proc in jobs.items():
            if proc.poll() is not None:
                print(f"{name} exited early (code {proc.returncode}); see {work / (name + '.log')}")
                return False
        waiting = [n for n in spark_jobs if not STARTED.search((work / f"{n}.log").read_bytes())]
        if not waiting:
            return True
        if time.monotonic() > deadline:
            print(f"{', '.join(waiting)}: no streaming query started within {timeout:.0f} s; see their logs")
            return False
        time.sleep(2)


def wait_for_reader(settings: Settings, topics: list[str], read: dict[tuple[str, int], int], timeout: float) -> bool:
    """Wait until ``read`` (last offset read per topic partition) reaches the end of every topic; False if it
    did not within ``timeout`` seconds."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**settings.kafka_config(), "group.id": "bench-e2e-watermarks"})
    try:
        metadata = consumer.list_topics(timeout=10)
        ends = {
            (topic, part): consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[1]
            for topic in topics
            for part in metadata.topics[topic].partitions
        }
    finally:
        consumer.close()
    deadline = time.monotonic() + timeout
    while any(read.get(tp, -1) < end - 1 for tp, end in ends.items() if end > 0):
        if time.monotonic() > deadline:
            print(f"the reader did not reach the end of the filter topics in {timeout:.0f} s")
            return False
        time.sleep(1)
    return True


def run(args: argparse.Namespace, mode: str, speed: dict[str, Any], bronze: str = "lander") -> dict[str, Any] | None:
    """One benchmark run in ``mode`` (``pipeline`` or ``jobs``; the pipeline's ``bronze`` by its lander or inline);
    None when a job exited before the load."""
    run_id = uuid.uuid4().hex[:8]
    work = REPO / ".state" / f"bench-e2e-{run_id}"
    work.mkdir(parents=True)
    suffix = f".bench-{run_id}"
    # A survey topic of the run's own (prefix): the jobs start on an empty topic, not behind whatever earlier
    # demos and tests left in the shared one.
    prefix = f"bench-e2e-{run_id}-"
    env = {
        **os.environ,
        "ALERTLAKE_TOPIC_PREFIX": prefix,
        "ALERTLAKE_LAKE_ROOT": str(work / "lake"),
        "ALERTLAKE_TRINO_REGISTER": "false",
        "ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX": suffix,
    }
    settings = Settings(lake_root=str(work / "lake"), topic_prefix=prefix)
    filters = load_filters()
    topics = sorted(f.topic(s, suffix) for f in filters for s in f.surveys)
    for topic in [survey_topic(settings, "ztf"), *topics]:
        ensure_topic(settings, topic)

    if mode == "pipeline":
        # As the real-time DAG runs it: gold.objects kept by a process of its own at the lowest CPU priority.
        jobs = {
            "pipeline": start(
                ["-m", "jobs.pipeline", "--survey=ztf", "--interval=1 second", "--no-objects", "--bronze", bronze],
                env,
                work / "pipeline.log",
            ),
            "objects": start(
                ["-m", "jobs.objects", "--interval", args.objects_interval],
                env,
                work / "objects.log",
                nice=19,
            ),
        }
    else:
        jobs = {
            "ingest": start(
                ["-m", "jobs.ingest", "--survey", "ztf", "--interval", "1 second"], env, work / "ingest.log"
            ),
            "enrich": start(
                ["-m", "jobs.enrich", "--survey", "ztf", "--interval", "1 second"], env, work / "enrich.log"
            ),
            "distribute": start(["-m", "jobs.distribute", "--interval", "1 second"], env, work / "distribute.log"),
        }
    memory = PeakSampler(*(p.pid for p in jobs.values()), every=1.0)
    services = service_pids(settings)
    # Only the services' CPU is reported (they compete for the same cores), sampled every 5 s: reading the
    # memory of every service process twice a second cost the benchmark process itself about 0.4 of a core.
    service_cpu = PeakSampler(*services.values(), memory=False, every=5.0)
    stop = threading.Event()

    latencies: list[float] = []
    sent_at: list[float] = []  # seconds from the start of the load to each message's survey timestamp
    per_topic: dict[str, int] = {}
    read: dict[tuple[str, int], int] = {}  # last offset read per (topic, partition)
    seen: set[tuple[str, int, int]] = set()  # a group rebalance may deliver a message twice: count it once
    send_start = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)  # set when the load starts; nothing counts before

    def read_topics() -> None:
        options = ConsumeOptions(
            topics=topics, group_id=f"bench-e2e-{run_id}", max_seconds=None, decode=timestamp_decoder()
        )
        try:
            for received in iter_alerts(settings, options):
                where = (received.topic, received.partition, received.offset)
                read[where[:2]] = max(received.offset, read.get(where[:2], -1))
                if where in seen:
                    continue
                seen.add(where)
                source = received.alert.get("kafka_timestamp")
                if source is None or source < send_start:
                    continue
                latencies.append((received.timestamp - source).total_seconds())
                sent_at.append((source - send_start).total_seconds())
                per_topic[received.topic] = per_topic.get(received.topic, 0) + 1
                if stop.is_set():
                    return
        except ConsumeError:
            if not stop.is_set():  # after the run its topics are deleted under the reader: expected
                raise

    memory.start()
    service_cpu.start()
    threading.Thread(target=read_topics, daemon=True).start()
    print(f"benchmark {run_id}: jobs starting, lake {work / 'lake'}")
    if not wait_until_started(jobs, work, args.warmup):
        for proc in jobs.values():
            proc.terminate()
        return None
    send_start = dt.datetime.now(dt.UTC)
    print(f"benchmark {run_id}: streaming queries started; sending from {send_start:%H:%M:%S} UTC")
    expected = int(args.rate * args.minutes * 60)
    simulate = [
        sys.executable,
        "-m",
        "alertlake.cli",
        "simulate",
        "--survey",
        "ztf",
        "--rate",
        str(args.rate),
        "--night",
        args.night,
        "--loops",
        str(10**6),
        "--limit",
        str(expected),
    ]
    if not args.keep_cutouts:
        simulate.append("--drop-cutouts")
    cpu_before, services_before = memory.cpu_seconds, service_cpu.cpu_seconds
    parts_before = {name: memory.cpu_by_part(p.pid) for name, p in jobs.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before, machine_before = resource.getrusage(resource.RUSAGE_SELF), cpu_jiffies()
    t0 = time.monotonic()
    subprocess.run(simulate, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    send_seconds = time.monotonic() - t0
    send_end = dt.datetime.now(dt.UTC)
    machine_sent = cpu_jiffies()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(args.drain)
    load_seconds = time.monotonic() - t0
    cpu_after, services_after = memory.cpu_seconds, service_cpu.cpu_seconds
    parts_after = {name: memory.cpu_by_part(p.pid) for name, p in jobs.items()}
    self_after, machine_after = resource.getrusage(resource.RUSAGE_SELF), cpu_jiffies()
    memory.stop()
    service_cpu.stop()
    # The reader (Python, in this process) can fall behind on a saturated machine: let it read every message the
    # jobs sent (the latency of each is its own message timestamps, whenever it is read).
    caught_up = wait_for_reader(settings, topics, read, timeout=600)
    stop.set()
    # Bronze is appended behind the filter streams (the pipeline's lander, at the lowest CPU priority): the jobs
    # run until it has caught up, and how far behind the survey it was is reported.
    bronze_wait = wait_for_bronze(work / "lake", timeout=1800) if mode == "pipeline" else 0.0
    # CPU seconds each job (its JVM and Python workers) used from the first send to the end of the drain, and the
    # simulator's own (it competes for the same two cores).
    cpu = {name: round(cpu_after[p.pid] - cpu_before[p.pid], 1) for name, p in jobs.items()}
    cpu |= {name: round(services_after[pid] - services_before[pid], 1) for name, pid in services.items()}
    cpu["simulate"] = round(
        (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime), 1
    )
    # This process too: it reads every filter message (fink-client's decoding) and samples the others.
    cpu["bench.reader"] = round(
        (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime), 1
    )
    # The same split by part of each job's tree: its JVM, its Python driver, Spark's Python workers, the lander's.
    parts = {
        name: {
            part: round(seconds - parts_before[name].get(part, 0.0), 1)
            for part, seconds in sorted(parts_after[name].items())
        }
        for name in jobs
    }
    for proc in jobs.values():
        proc.terminate()
    for proc in jobs.values():
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

    # ~9 GB of alerts: do not keep them; nor the pipeline's warm-up topic (its copies of the sample alerts)
    delete_topics(
        settings,
        [survey_topic(settings, "ztf"), *topics, *([warm_up_topic(settings, "ztf")] if mode == "pipeline" else [])],
    )
    in_run, through = silver_throughput(work / "lake", send_start)
    lat = np.array(latencies) if latencies else np.array([np.nan])
    result: dict[str, Any] = {
        "alerts_per_s": round(through, 1),
        "p50_latency_s": round(float(np.percentile(lat, 50)), 2),
        "p95_latency_s": round(float(np.percentile(lat, 95)), 2),
        "p99_latency_s": round(float(np.percentile(lat, 99)), 2),
        # The whole run's p95 above is the figure; this splits it by the minute of the load the alert was sent in,
        # so the start of the load (cold jobs, the backlog they build) can be told from the rest.
        "p95_latency_by_minute_s": p95_by_minute(sent_at, latencies),
        # The filter streams' latency above; bronze's (each alert's batch appended) here.
        "bronze": {
            **bronze_lag(work / "lake", send_start, send_end),
            "waited_after_filter_streams_s": None if bronze_wait is None else round(bronze_wait, 1),
            # A lander that died (and was started again by the pipeline) is a fault even when nothing was lost.
            "lander_restarts": lander_restarts(work / "pipeline.log") if mode == "pipeline" else 0,
        },
        "peak_rss_gib": round(memory.peak / 2**30, 2),
        "peak_rss_sum_gib": round(memory.peak_rss_sum / 2**30, 2),
        "memory_measure": "sum of PSS over the jobs' process trees, read as their RSS grows (bench/memory.py); "
        "RSS sum beside it",
        "pss_readings": memory.pss_readings,
        "mode": mode,
        "pipeline_bronze": bronze if mode == "pipeline" else None,
        "target_rate": args.rate,
        "sent_alerts": expected,
        "send_rate_achieved": round(expected / send_seconds, 1),
        "silver_alerts_of_run": in_run,
        "filter_messages": len(latencies),
        "reader_caught_up": caught_up,
        "messages_per_topic": per_topic,
        "minutes": args.minutes,
        "cpu_seconds_during_load": cpu,
        "cpu_seconds_during_load_by_part": parts,
        "load_seconds": round(load_seconds, 1),
        "cutouts": bool(args.keep_cutouts),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
            # Every process's share, not only those above: a machine busy all the time is CPU-bound. While the
            # simulator sends, and over the whole load (sending and the drain after it, as the CPU seconds above).
            "cpu_while_sending": busy_fractions(machine_before, machine_sent),
            "cpu_during_load": busy_fractions(machine_before, machine_after),
            "speed": speed,
        },
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return result


#: A competing process (``--competing-load``): busy ``duty`` of every 50 ms on one thread until terminated.
BUSY_LOOP = """
import sys, time
duty, period = float(sys.argv[1]), 0.05
while True:
    start = time.monotonic()
    while time.monotonic() - start < duty * period:
        pass
    time.sleep(max(0.0, period - (time.monotonic() - start)))
"""


class CompetingLoad:
    """``processes`` busy loops at normal priority, each busy ``duty`` of the time when it gets a core: this host
    made slower on purpose (other tenants, a slow hour), so that the latency's margin can be measured at will."""

    def __init__(self, processes: int, duty: float) -> None:
        self.processes, self.duty = processes, duty
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = self.seconds = self.cpu_seconds = 0.0

    def __enter__(self) -> CompetingLoad:
        self.started = time.monotonic()
        self.procs = [
            subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(self.duty)]) for _ in range(self.processes)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_seconds = 0.0
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            _, _, usage = os.wait4(proc.pid, 0)  # its CPU time, as the kernel accounted it
            proc.returncode = -15  # reaped here: Popen must not wait for it again
            self.cpu_seconds += usage.ru_utime + usage.ru_stime
        self.seconds = time.monotonic() - self.started

    def figures(self) -> dict[str, float]:
        """What the competing processes took: CPU seconds, wall seconds, and their mean share of the machine's
        cores."""
        cores = os.cpu_count() or 1
        return {
            "processes": self.processes,
            "duty": self.duty,
            "cpu_seconds": round(self.cpu_seconds, 1),
            "seconds": round(self.seconds, 1),
            "share_of_machine": round(self.cpu_seconds / max(self.seconds * cores, 1e-9), 3),
        }


def p95_by_minute(sent_at: list[float], latencies: list[float]) -> list[float | None]:
    """p95 latency of the messages whose alert was sent in each minute of the load (None: no message)."""
    if not latencies:
        return []
    minute = np.floor(np.array(sent_at) / 60.0).astype(int)
    lat = np.array(latencies)
    return [
        round(float(np.percentile(lat[minute == m], 95)), 2) if (minute == m).any() else None
        for m in range(int(minute.max()) + 1)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=1000.0, help="alerts per second sent to the ZTF topic")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to send")
    parser.add_argument("--night", default="2026-01-05", help="observing night the alerts are moved onto")
    parser.add_argument("--keep-cutouts", action="store_true", help="send the image stamps too")
    parser.add_argument(
        "--warmup",
        type=float,
        default=900.0,
        help="at most this many seconds for the jobs to start their streaming queries (warm-up included); the load "
        "starts once they have",
    )
    parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait for the tail after sending")
    parser.add_argument(
        "--mode",
        choices=["pipeline", "jobs", "both"],
        default="both",
        help="pipeline: jobs.pipeline (the three stages per micro-batch in one Spark app); jobs: the three "
        "streaming jobs as three processes chained through Delta; both: one after the other, side by side in "
        "the JSON (the first mode's figures at the top level, the other's under jobs_mode, and their ratios)",
    )
    parser.add_argument(
        "--objects-interval",
        default="30 seconds",
        help="pipeline mode: how often the jobs.objects process MERGEs gold.objects (the real-time DAG's default)",
    )
    parser.add_argument(
        "--bronze",
        choices=["lander", "inline", "both"],
        default="lander",
        help="pipeline mode: bronze appended by its lander process (the default) or by each micro-batch; both: "
        "one run each, in turn (the lander's figures at the top level, the other's under inline_bronze, and ratios)",
    )
    parser.add_argument(
        "--competing-load",
        type=float,
        default=0.0,
        metavar="DUTY",
        help="run one busy loop per core beside everything (speed measurement included), each busy DUTY (0-1) of "
        "the time: a slower machine on purpose; what they took is in the JSON (competing_load)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not 0.0 <= args.competing_load <= 1.0:
        parser.error("--competing-load is a duty between 0 and 1")
    if not args.competing_load:
        return measure(args)
    competing = CompetingLoad(os.cpu_count() or 1, args.competing_load)
    with competing:
        code = measure(args)
    print(f"competing load: {competing.figures()}")
    if code == 0:  # the figures are only known once the loops have stopped
        result = json.loads(args.output.read_text())
        result["competing_load"] = competing.figures()
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return code


def measure(args: argparse.Namespace) -> int:
    """Run the benchmark runs ``args`` ask for, print their table and write their JSON; 0 when all ran."""

    modes = ["pipeline", "jobs"] if args.mode == "both" else [args.mode]
    from jobs.enrich import ensure_registered

    # As the real-time DAG does: a module with no champion yet (a fresh set-up) is registered first, so the jobs
    # do not stop at start-up for want of one.
    print(f"science modules: {ensure_registered()}")
    plan = [(mode, mode, "lander" if args.bronze == "both" else args.bronze) for mode in modes]
    if args.bronze == "both" and "pipeline" in modes:
        plan.append(("pipeline-inline", "pipeline", "inline"))
    runs: dict[str, dict[str, Any]] = {}
    for label, mode, bronze in plan:
        speed = machine_speed()  # before each run: it drifts within an hour on this kind of host
        print(f"machine speed: {speed}")
        outcome = run(args, mode, speed, bronze)
        if outcome is None:
            return 1
        runs[label] = outcome
    result = dict(runs[modes[0]])
    if "pipeline-inline" in runs:
        inline = runs["pipeline-inline"]
        result["inline_bronze"] = inline
        result["lander_vs_inline"] = {
            "throughput_ratio": round(runs["pipeline"]["alerts_per_s"] / max(inline["alerts_per_s"], 1e-9), 2),
            "p95_latency_ratio": round(runs["pipeline"]["p95_latency_s"] / max(inline["p95_latency_s"], 1e-9), 3),
            "peak_memory_ratio": round(runs["pipeline"]["peak_rss_gib"] / max(inline["peak_rss_gib"], 1e-9), 2),
        }
    modes = list(runs)
    if "jobs" in runs and "pipeline" in runs:
        jobs_run = runs["jobs"]
        result["jobs_mode"] = jobs_run
        result["pipeline_vs_jobs"] = {
            "throughput_ratio": round(result["alerts_per_s"] / max(jobs_run["alerts_per_s"], 1e-9), 2),
            "p95_latency_ratio": round(result["p95_latency_s"] / max(jobs_run["p95_latency_s"], 1e-9), 3),
            "peak_memory_ratio": round(result["peak_rss_gib"] / max(jobs_run["peak_rss_gib"], 1e-9), 2),
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("alerts_per_s", "send_rate_achieved", "p50_latency_s", "p95_latency_s", "p99_latency_s", "peak_rss_gib")
    print(f"{'':22s} " + " ".join(f"{m:>12s}" for m in modes))
    for key in keys:
        print(f"{key:22s} " + " ".join(f"{runs[m][key]:>12}" for m in modes))
    for mode in modes:
        print(f"{mode}: p95 by minute of the load (s): {runs[mode]['p95_latency_by_minute_s']}")
    for mode in modes:
        machine = runs[mode]["machine"]
        sending, load = machine["cpu_while_sending"], machine["cpu_during_load"]
        print(
            f"{mode}: machine CPU busy {sending.get('busy')} while sending, {load.get('busy')} over the load "
            f"(stolen {load.get('stolen')}); speed {machine['speed'].get('vs_decode_json')} x decode.json"
        )
    for mode in modes:
        bronze = runs[mode]["bronze"]
        print(
            f"{mode}: bronze behind the survey p50/p95/max {bronze.get('p50_lag_s')}/{bronze.get('p95_lag_s')}/"
            f"{bronze.get('max_lag_s')} s; last alert of the run in bronze {bronze.get('last_after_sending_s')} s "
            f"after sending ended; lander restarts {bronze.get('lander_restarts')}"
        )
    for mode in modes:
        r = runs[mode]
        print(
            f"{mode}: p95 <= 10 s: {'met' if r['p95_latency_s'] <= 10 else 'NOT met'}; "
            f"<= 12 GiB: {'met' if r['peak_rss_gib'] <= 12 else 'NOT met'}"
        )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
