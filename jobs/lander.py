"""The bronze lander: the real-time pipeline's micro-batches appended to bronze and quarantine, behind it, by a
process of its own at the lowest CPU priority.

The pipeline (:mod:`jobs.pipeline`) decodes, enriches and distributes each micro-batch, then leaves a marker
with the batch's Kafka offset ranges (:class:`jobs.ingest.BronzeBehind`) instead of appending it to bronze. The
lander, its child process, polls the markers, reads each marked batch again from Kafka, decodes it, appends it to
bronze and quarantine exactly as the ingestion job does (:meth:`jobs.ingest.IngestJob.write_batch`), then removes
the marker.

Why a process: the bronze append (Spark's ``from_avro`` into the union of the survey's versions, then Parquet)
costs about as much CPU as all the later stages of a batch, and on a CPU-bound machine it held half the alerts'
latency, written in line or in a background thread of the pipeline (docs/data-engineer.md). In a process at
``nice 19`` that also waits while the pipeline is busy (:class:`Yield`: the pipeline says on the lander's standard
input when each micro-batch begins and ends), it takes only the CPU the latency path leaves: under a burst bronze
falls behind and catches up after it, within ``bronze_lander_max_lag_s``. Its logs say how far behind the survey
each batch landed; ``bench/e2e.py`` reports the lag.

Exactly once, across kills of either process:

- one writer: the lander is the only process appending the pipeline's batches. The pipeline kills any lander
  left by an earlier run (its JVM and Python workers too, found by :data:`LANDER_ENV`) before it appends, at
  start, the batches still marked (:meth:`jobs.ingest.IngestJob.recover`); only then is the new lander started.
  The lander dies with the pipeline (``PR_SET_PDEATHSIG``, and its JVM when its standard input closes);
- in order: the lander appends the marked batches oldest first and classifies each one against bronze and
  quarantine as the pipeline did, so a message already there (appended before a kill, marker not yet removed)
  is skipped, and the same alerts are new, bad or duplicates as in the pipeline's batch;
- a marker is removed only once its batch's appends are committed, and the pipeline restarts a lander that
  died (:attr:`BronzeLander.restarts` times in a row before it fails the run).

When the pipeline stops, its streams first, it closes the lander's standard input: the lander appends what is
still marked, then exits.

    python -m jobs.lander --job ztf=pipeline_ztf --parent <pipeline pid>   (started by jobs.pipeline)
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alertlake.settings import REPO_ROOT, Settings, get_settings
from jobs import ingest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("alertlake.lander")

#: Set in the lander's environment (so in its JVM's and Python workers' too) to the key of its lake and
#: pipelines (:func:`lander_key`): how a new pipeline finds and kills a lander left by an earlier one.
LANDER_ENV = "ALERTLAKE_LANDER"
#: Fault injection, in :data:`jobs.ingest.FAULT_ENV` (the pipeline's kill/restart test):
#: ``before-bronze:<batch id>`` kills the pipeline and the lander once the pipeline has committed that batch to
#: its checkpoint and before the lander appends it; ``lander-after-bronze`` kills the lander alone after its
#: first append and before it removes that batch's marker. A lander the pipeline restarts has no fault.
LANDER_FAULTS = ("before-bronze:", "lander-after-bronze")
#: How far back the lander looks at the pipeline's batches to tell whether it is busy (:func:`pipeline_load`), and
#: how many of them it keeps for that (two surveys' streams of 1-second batches fit).
LOAD_WINDOW_S = 30.0
PIPELINE_SPANS = 64


def lander_key(settings: Settings, apps: dict[str, str]) -> str:
    """The key of the lander of these pipelines (survey -> app id) on this lake."""
    text = settings.lake_uri + "|" + ",".join(f"{s}={a}" for s, a in sorted(apps.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lander_processes(key: str) -> list[int]:
    """Processes of this user whose environment carries ``ALERTLAKE_LANDER=<key>`` (a lander, its JVM, its
    Python workers). Linux ``/proc``; only processes on this host, where the pipeline starts its lander."""
    wanted = f"{LANDER_ENV}={key}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # another user's process, or gone
            continue
    return found


def reap(key: str, timeout: float = 30) -> int:
    """Kill (SIGKILL) every process of the lander ``key`` still running, and wait until they are gone: nothing
    may append a batch while the pipeline appends it. Returns how many were killed."""
    pids = lander_processes(key)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while pids and lander_processes(key):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of an earlier bronze lander survive SIGKILL: {lander_processes(key)}")
        time.sleep(0.1)
    if pids:
        log.warning("killed %d processes an earlier bronze lander left: %s", len(pids), pids)
    return len(pids)


class BronzeLander:
    """The pipeline's side: starts the lander, restarts it when it dies, drains it when the pipeline stops.

    Shaped like a streaming query for :func:`alertlake.spark.supervise`: it is active while its lander runs, and
    its ``exception()`` says why it failed when it died more than :attr:`restarts` times in a row."""

    def __init__(self, settings: Settings, apps: dict[str, str], restarts: int = 3) -> None:
        self.settings = settings
        self.apps = apps
        self.restarts = restarts
        self.key = lander_key(settings, apps)
        self.name = "bronze-lander"
        self.started = 0  # landers started so far
        self._error: str | None = None
        self._draining = threading.Event()
        self._going = False
        self._spans: list[str] = []  # the pipeline's recent batches as "batch <start> <end>" lines (epoch seconds)
        self._open: set[float] = set()  # start times of the micro-batches under way
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="bronze-lander", daemon=True)

    def reap(self) -> int:
        """Kill a lander left by an earlier run of these pipelines (before :meth:`start`, before any append)."""
        return reap(self.key)

    def start(self) -> None:
        """Start the lander: it starts Spark, then waits for :meth:`go` (the pipeline is still appending what an
        earlier run left marked). No warm-up: at the lowest CPU priority, one on 2,000 sample alerts had not ended
        when a 2-minute load at 600 alerts/s did."""
        self._thread.start()

    def go(self) -> None:
        """Let the lander append the marked batches (the pipeline has appended those an earlier run left)."""
        with self._lock:
            self._going = True
            self._tell(self._proc)

    def batch_started(self, started: float) -> None:
        """Tell the lander that the pipeline began a micro-batch at ``started`` (epoch seconds): it counts as busy
        until :meth:`batch_done` (the lander yields while the pipeline is busy most of the time, :class:`Yield`)."""
        with self._lock:
            self._open.add(started)
            self._say(f"begin {started:.3f}")

    def batch_done(self, started: float, ended: float) -> None:
        """Tell the lander that the pipeline was busy with a micro-batch from ``started`` to ``ended``."""
        line = f"batch {started:.3f} {ended:.3f}"
        with self._lock:
            self._open.discard(started)
            self._spans = [*self._spans[-(PIPELINE_SPANS - 1) :], line]
            self._say(line)

    def _say(self, line: str) -> None:
        self._write(self._proc, [line])

    @staticmethod
    def _write(proc: subprocess.Popen[bytes] | None, lines: list[str], close: bool = False) -> None:
        """Write ``lines`` to the lander's standard input (then close it with ``close``); nothing if it is gone."""
        if proc is None or proc.stdin is None or proc.stdin.closed:
            return
        try:
            proc.stdin.write(b"".join(line.encode() + b"\n" for line in lines))
            proc.stdin.flush()
            if close:
                proc.stdin.close()
        except (BrokenPipeError, ValueError):  # it died: the supervising thread starts another
            pass

    def _tell(self, proc: subprocess.Popen[bytes] | None) -> None:
        """Say to a lander what it may do: land (``go`` line), then land what is marked and exit (end of input),
        with the pipeline's recent batches (a lander started again yields as the last one did)."""
        lines = [*self._spans, *(f"begin {t:.3f}" for t in sorted(self._open))] + (["go"] if self._going else [])
        self._write(proc, lines, close=self._draining.is_set())

    @property
    def isActive(self) -> bool:
        return self._thread.is_alive()

    def exception(self) -> str | None:
        return self._error

    def stop(self) -> None:
        """Let the lander append what is still marked, then wait for it to exit (the streams are stopped)."""
        with self._lock:
            self._draining.set()
            self._tell(self._proc)
        if self._thread.is_alive():
            self._thread.join()

    def _spawn(self) -> subprocess.Popen[bytes]:
        args = [f"--job={survey}={app}" for survey, app in sorted(self.apps.items())]
        env = {**os.environ, **self.settings.environment(secrets=False), LANDER_ENV: self.key}
        if self.started or not env.get(ingest.FAULT_ENV, "").startswith(LANDER_FAULTS):
            env.pop(ingest.FAULT_ENV, None)  # a fault is injected once, into the first lander
        self.started += 1
        return subprocess.Popen(
            [sys.executable, "-m", "jobs.lander", *args, f"--parent={os.getpid()}"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
        )

    def _supervise(self) -> None:
        """Run the lander; start it again when it dies. This thread lives as long as its lander: the lander's
        ``PR_SET_PDEATHSIG`` fires when the thread that started it ends."""
        failures = 0
        while True:
            if self.started:
                # The dead lander's JVM may still be finishing a write until it sees its input close: it must be
                # gone before another lander looks at bronze.
                self.reap()
            with self._lock:
                self._proc = proc = self._spawn()
                self._tell(proc)  # a lander started again: told at once what the last one was told
            began = time.monotonic()
            code = proc.wait()
            if code == 0 and self._draining.is_set():
                log.info("bronze lander: every marked batch appended")
                return
            if time.monotonic() - began > 600:
                failures = 0  # it had been working: not a lander that cannot start
            failures += 1
            if failures > self.restarts:
                self._error = f"the bronze lander exited with code {code}, {failures} times in a row; see its log"
                log.error("%s", self._error)
                return
            log.error(
                "the bronze lander exited with code %d; starting it again (its batches stay marked: nothing lost)",
                code,
            )
            time.sleep(min(30, 2 ** (failures - 1)))


# ------------------------------------------------------------------------------------------- the lander itself
def die_with_parent(parent: int) -> None:
    """Be killed when the pipeline dies (Linux ``PR_SET_PDEATHSIG``); exit now if it is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as exc:
        log.warning("bronze lander: cannot ask to die with the pipeline (%s)", exc)
    if os.getppid() != parent:
        raise SystemExit(f"bronze lander: the pipeline (process {parent}) is gone")


def pipeline_load(
    spans: Iterable[tuple[float, float]], now: float, window: float = LOAD_WINDOW_S, since: float | None = None
) -> float:
    """The share of the last ``window`` seconds before ``now`` the pipeline spent in micro-batches (``spans``:
    (start, end) of its recent batches, those of its surveys' streams overlapping counted once). Heard of only
    ``since`` then (its first batch), the share of the time since."""
    window = min(window, now - since) if since is not None else window
    if window <= 0:
        return 0.0
    busy, reach = 0.0, now - window
    for start, end in sorted(spans):
        start, end = max(start, reach), min(end, now)
        if end > start:
            busy += end - start
            reach = end
    return busy / window


@dataclass
class Yield:
    """When the lander leaves the CPU to the pipeline: while the pipeline was busy more than ``load`` of the last
    :data:`LOAD_WINDOW_S` seconds, unless the oldest marked batch has waited ``max_lag`` seconds.

    At nice 19 the lander still took a quarter of the machine under a sustained load (the CPU the pipeline left
    in its one-thread phases), and it slowed the pipeline far more than that share: in 2-minute runs at 1,000
    alerts/s (``bench/e2e.py``), p95 was 40.3 s with it running (speed 0.57 of ``decode.json``) against 22.9 s
    with it stopped while the survey sent (speed 0.43), and bronze was complete 145 s and 174 s after the load."""

    load: float = 0.8
    max_lag: float = 600.0
    spans: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=PIPELINE_SPANS))
    under_way: set[float] = field(default_factory=set)  # start times of the pipeline's batches not yet done
    since: float | None = None  # start of the first batch heard of: the pipeline's first window is shorter

    def heard(self, line: bytes) -> bool:
        """Take a ``begin <start>`` or ``batch <start> <end>`` line from the pipeline; False for any other line."""
        kind, *values = line.split() or [b""]
        if kind == b"begin" and len(values) == 1:
            start = float(values[0])
            self.under_way.add(start)
        elif kind == b"batch" and len(values) == 2:
            start, end = float(values[0]), float(values[1])
            self.under_way.discard(start)
            self.spans.append((start, end))
        else:
            return False
        self.since = start if self.since is None else min(self.since, start)
        return True

    def now(self, waited: float) -> bool:
        """Whether to wait rather than append, the oldest marked batch having waited ``waited`` seconds. A batch
        under way counts as busy up to now: a long one must not look like a pause."""
        clock = time.time()
        spans = [*self.spans, *((start, clock) for start in self.under_way)]
        return waited < self.max_lag and pipeline_load(spans, clock, since=self.since) > self.load


#: Spark's Kafka connector for the lander's reads: each marked batch is one batch query with a group id of its own,
#: so the consumer it opens per partition (and the records fetched past the batch's last offset) are never used again,
#: yet Spark's pools keep both for 5 minutes, up to 64 consumers. In a 5-minute benchmark at 1,000 alerts/s the lander,
#: draining bronze's backlog a batch every few seconds, ran out of its 2 GB heap four minutes in ("GC overhead limit
#: exceeded"; it was started again, nothing lost). Draining 90 batches of a prefilled topic it held 56 consumers and
#: 7,824 live fetched records (about 30 KB each), still growing (`jmap -histo:live`); with these settings, 4 consumers
#: and 800-1,900 records, level. The pools keep at most four consumers (idle ones go after 30 s) and drop fetched
#: records idle for 5 s.
ONE_OFF_KAFKA_READS = {
    "spark.kafka.consumer.cache.capacity": "4",
    "spark.kafka.consumer.cache.timeout": "30s",
    "spark.kafka.consumer.cache.evictorThreadRunInterval": "10s",
    "spark.kafka.consumer.fetchedData.cache.timeout": "5s",
    "spark.kafka.consumer.fetchedData.cache.evictorThreadRunInterval": "5s",
}


def land(
    spark: SparkSession,
    jobs: list[ingest.IngestJob],
    draining: threading.Event,
    poll: float = 0.5,
    yielding: Yield | None = None,
) -> int:
    """Append every marked batch of ``jobs`` (oldest first) until ``draining`` is set and none is left; returns
    the number of messages read. With ``yielding``, a batch waits while the pipeline is busy (:class:`Yield`);
    nothing waits once the pipeline stops."""
    total, said = 0, 0.0
    while True:
        drained = draining.is_set()  # before listing: a batch marked before the streams stopped is listed
        work = [(job, batch_id, ranges) for job in jobs for batch_id, ranges in job.behind.pending()]  # type: ignore[union-attr]
        if not work:
            if drained:
                return total
            draining.wait(poll)
            continue
        now = time.monotonic()
        waited = time.time() - min(job.behind.marked_at.get(batch_id, time.time()) for job, batch_id, _ in work)  # type: ignore[union-attr]
        waiting = yielding is not None and not drained and yielding.now(waited)
        if (len(work) > 1 or waiting) and now - said > 30:
            said = now
            log.info(
                "bronze lander: %d batches (%d messages) waiting%s",
                len(work),
                sum(ingest.message_count(r) for _, _, r in work),
                f", the oldest {waited:.0f} s: the pipeline is busy" if waiting else "",
            )
        if waiting:
            draining.wait(max(poll, 2.0))  # the markers are listed again less often while the pipeline is busy
            continue
        job, batch_id, ranges = work[0]  # one at a time: whether to yield is asked again before the next one
        if os.environ.get(ingest.FAULT_ENV) == f"before-bronze:{batch_id}" and job.behind is not None:
            job.behind.wait_committed(batch_id)  # committed to the checkpoint: Spark will not replay it
            log.warning("fault injection: killing the pipeline and the lander before bronze, batch %d", batch_id)
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        total += job.land_marked(spark, batch_id, ranges)  # the lander-after-bronze fault is in there


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (started by :class:`BronzeLander`)."""
    parser = argparse.ArgumentParser(description="append the real-time pipeline's marked batches to bronze")
    parser.add_argument("--job", action="append", required=True, help="survey=app id of a pipeline (repeatable)")
    parser.add_argument("--parent", type=int, required=True, help="the pipeline's process id")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between looks for new markers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the pipeline, which then drains its lander
    settings = get_settings()
    os.nice(settings.bronze_lander_nice)  # before Spark: its JVM and Python workers inherit it
    going, draining = threading.Event(), threading.Event()
    yielding = Yield(settings.bronze_lander_yield_load, settings.bronze_lander_max_lag_s)

    def listen() -> None:
        """The pipeline's word: its batches' spans, a ``go`` line, then the end of our input when it stops (or
        dies)."""
        for line in sys.stdin.buffer:
            if line.strip() == b"go":
                going.set()
            else:
                yielding.heard(line)
        draining.set()

    threading.Thread(target=listen, name="stdin", daemon=True).start()

    from alertlake.kafka import survey_topic
    from alertlake.spark import build_spark

    conf = {"spark.driver.memory": settings.bronze_lander_memory, "spark.ui.enabled": "false", **ONE_OFF_KAFKA_READS}
    spark = build_spark(settings, "alertlake-bronze-lander", conf)
    jobs = []
    for pair in args.job:
        survey, _, app = pair.partition("=")
        job = ingest.IngestJob(settings, survey, app_id=app, topic=survey_topic(settings, survey), landing=True)
        job.behind = ingest.BronzeBehind(spark, settings, app)
        jobs.append(job)
    while not going.is_set():
        if draining.is_set():
            log.info("bronze lander: the pipeline stopped before it let the lander append; nothing done")
            return 0
        going.wait(0.5)
    log.info("bronze lander of %s: nice %d, pid %d", ", ".join(args.job), os.nice(0), os.getpid())
    try:
        total = land(spark, jobs, draining, args.poll, yielding)  # a load above 1 is never reached: never waits
    except Exception:
        log.exception("bronze lander failed")
        return 1
    log.info("bronze lander: %d messages read again and appended; nothing left marked", total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
