"""The real-time pipeline: survey topic -> bronze -> silver -> filter topics in one micro-batch, one Spark app.

The three streaming jobs (:mod:`jobs.ingest`, :mod:`jobs.enrich`, :mod:`jobs.distribute`) chain through Delta:
each stage polls the table the previous one writes, so an alert waits for three micro-batches, and on a small
machine three JVMs compete for the cores. This job runs the same stages on the same micro-batch, one after the
other, in one Spark application:

1. the survey topic's micro-batch is decoded and classified exactly as :class:`jobs.ingest.IngestJob` does
   (new, bad, duplicate, or already in the lake);
2. the batch's accepted alerts, still cached, are enriched by :class:`jobs.enrich.EnrichJob` (quality cuts,
   science modules, provenance) and gated by the data-quality checks. One query takes to the driver what the
   filters read of the batch, with the row-level columns of the batch figures and of the checks, which pyarrow
   reduces there (:meth:`jobs.enrich.BatchFigures.read`): no aggregation job of their own;
3. if the gate passed, the same silver rows, still cached, go to the filters and their Kafka topics through
   :class:`jobs.distribute.DistributeJob` (``gold.filter_hits``, exactly once). A held batch is not sent;
   ``alertlake replay filter`` sends it once released;
4. only then are the rows committed to silver (keyed insert): the filter streams wait for none of these writes.
   With them first, an alert's latency under load (1,000 alerts/s, ``bench/e2e.py``, 2-minute runs side by
   side) went from p50 14.2 s, p95 19.1 s to 9.3 s, 14.9 s;
5. the batch is marked for bronze: its Kafka offset ranges in a small file (:class:`jobs.ingest.BronzeBehind`).
   The bronze lander (:mod:`jobs.lander`), a child process at the lowest CPU priority that waits while the
   pipeline is busy (told when each micro-batch begins and ends), reads the marked messages again from Kafka and
   appends them to bronze and quarantine, behind the pipeline. Appended by the pipeline,
   even in a background thread, bronze held half the alerts' latency on a CPU-bound machine. That is how a
   continuous run writes bronze; a bounded one (``--trigger available-now``, a catch-up) appends each batch in
   line after its filter messages, as ``--bronze inline`` does.

``gold.objects`` is kept current from silver by :mod:`jobs.objects` (delta-rs and pyarrow, no Spark) every
``--objects-interval``, off the latency path: in a thread of this process, or (``--no-objects``) in a
``python -m jobs.objects`` process of its own at low CPU priority, which is how the real-time DAG runs it.

Exactly once across a kill: each stage keeps its own guarantee, keyed by the micro-batch id, which Spark
replays unchanged after a restart. Silver skips alerts already there, distribution (app id ``pipeline_<survey>``)
skips a batch already recorded in ``gold.filter_hits`` and finds in Kafka the messages a killed run sent but did
not record, and bronze skips messages already in the lake. As silver is written before bronze, a killed attempt
may leave a batch in silver and not in bronze; Spark replays it as the first batch of the next run, so silver is
searched for the alerts of a run's first batch when the checkpoint shows such a batch (logged, not committed);
otherwise, and from the second batch on, alerts new to bronze are new to silver.
A batch committed to the checkpoint but not yet appended by the lander when the run stopped stays marked: the
next run appends it, reading its messages again from Kafka, before its stream and its lander start
(:meth:`jobs.ingest.IngestJob.recover`; :mod:`jobs.lander` says how the two never append the same batch).

Before its stream starts, the pipeline warms up by running its own query over copies of the survey's sample
alerts, sent to a warm-up topic, into a scratch lake that it then removes (:func:`rehearse`): the first real
micro-batches then run compiled code.

The pipeline writes and distributes the alerts it reads; it replaces, and must not run beside, the three
streaming jobs for the same surveys (their checkpoints would not know what it did). Bounded catch-up, replays
and recomputations stay with the separate jobs.

    python -m jobs.pipeline [--survey ztf --survey lsst] [--trigger continuous|available-now] [--interval 1s]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alertlake.filters import FILTERS_DIR, FilterSet, load_filters
from alertlake.lake import checkpoint_uri, table_uri
from alertlake.quality import PASSED
from alertlake.settings import Settings, get_settings, job_settings
from alertlake.spark import Projection, Query, load_delta_states, replayed_batch, start_stream, supervise
from jobs import distribute, enrich, ingest
from jobs import objects as objects_job
from jobs.lander import BronzeLander

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

    from alertlake.quality import Verdict

log = logging.getLogger("alertlake.pipeline")

SURVEYS = ("ztf", "lsst")


def app_id(survey: str) -> str:
    """Query name, checkpoint, enrichment batch prefix and distribution app id of a survey's pipeline."""
    return f"pipeline_{survey}"


@dataclass
class PipelineJob:
    """One survey's pipeline: the three stages' jobs, applied in turn to each micro-batch."""

    ingest: ingest.IngestJob
    enrich: enrich.EnrichJob
    distribute: distribute.DistributeJob
    held: list[str] = field(default_factory=list)  # enrichment batch keys the gate held (not distributed)
    #: Told when every micro-batch begins and ends: the bronze lander yields while the pipeline is busy.
    lander: BronzeLander | None = None
    #: The warm-up's run (:func:`rehearse`): the filters select and encode, nothing is sent or recorded.
    rehearsal: bool = False

    def write_batch(self, decoded: DataFrame, batch_id: int) -> None:
        """Ingest, enrich and distribute one micro-batch (each stage exactly once, keyed by ``batch_id``)."""
        started = time.time()
        if self.lander is not None:
            self.lander.batch_started(started)
        try:
            self._write_batch(decoded, batch_id)
        finally:
            if self.lander is not None:
                self.lander.batch_done(started, time.time())

    def _write_batch(self, decoded: DataFrame, batch_id: int) -> None:
        t0 = time.monotonic()

        def distribute_rows(rows: DataFrame, verdict: Verdict | None, table: pa.Table) -> None:
            if self.rehearsal:
                self.distribute.warm_up(rows, table)
                return
            if verdict is not None and verdict.status != PASSED:
                self.held.append(verdict.batch_key)
                log.error("%s batch %d held by the quality gate: not distributed", self.ingest.app_id, batch_id)
                return
            self.distribute.write_batch(rows, batch_id, gated=True, table=table)

        downstream = enrich.Downstream(reads=self.distribute.read_columns, run=distribute_rows)

        def enrich_rows(accepted: DataFrame, all_new: bool) -> None:
            self.enrich.write_batch(accepted, batch_id, downstream=downstream, known_new=all_new)

        self.ingest.write_batch(decoded, batch_id, downstream=enrich_rows)
        log.info("%s batch %d: through the pipeline in %.1f s", self.ingest.app_id, batch_id, time.monotonic() - t0)


def warm_up_stages(
    enrichment: enrich.EnrichJob, distribution: distribute.DistributeJob
) -> Callable[[DataFrame, str | None], None]:
    """The in-memory warm-up's later stages, used when the warm-up through the stream's own query
    (:func:`rehearse`) cannot run (no warm-up topic can be made, say).

    What the pipeline adds to the ingestion warm-up, on the sample alerts: enrichment, so every Python worker
    has loaded the module versions before the first real batch (9.7 s of enrichment for the first 1,310 alerts of
    a cold run, against 2.3 s for 20,000 once warm), then the quality gate's aggregates and checks (nothing
    recorded) and the filters with the Avro encoding of what they select (nothing sent). With these two, the first
    batch of a benchmark run distributed in 0.4-0.5 s instead of 1.0 s; its enrichment still took 2.3-2.8 s for
    about 900 alerts (against 1.0 s for 7,400 once warm). Given the warm-up's temporary folder (Spark local), the
    enriched rows are also written in it as silver is, so the first batch's silver write does not compile its paths
    either."""
    from alertlake import quality

    def run(accepted: DataFrame, scratch: str | None) -> None:
        rows = enrich.silver_rows(accepted, enrichment.refs, "warm-up").persist()
        try:
            plan = quality.gate_plan(enrich.SILVER, rows)
            columns = enrich.BatchFigures.driver_columns(enrichment.refs, plan, distribution.read_columns(rows))
            table = enrich.BatchFigures.read(rows, plan, Projection(columns))
            figures = enrich.BatchFigures.from_table(table, enrichment.refs, plan)
            try:
                quality.verdict_status(
                    quality.evaluate(plan.checks, plan.column_types, plan.aggregates, figures.gate_stats)
                )
                distribution.warm_up(rows, table)
                if scratch is not None:
                    enrichment.warm_up_write(rows, figures, f"{scratch}/silver")
            except Exception:  # warming up is an optimisation: never a reason not to start
                log.warning(
                    "warm-up of the gate, the filters or the silver write failed; the first batch will be slower",
                    exc_info=True,
                )
        finally:
            rows.unpersist()

    return run


#: How long a warm-up topic keeps its messages: each start sends its own and reads only those.
WARM_UP_RETENTION_MS = 3_600_000
#: The warm-up query is stopped after this long (2,000 alerts took 30-40 s): the stream starts cold rather than late.
WARM_UP_TIMEOUT_S = 600


def warm_up_topic(settings: Settings, survey: str) -> str:
    """The topic ``survey``'s pipeline sends its warm-up alerts to (internal: no stream user is granted it)."""
    from alertlake.kafka import survey_topic

    return f"{survey_topic(settings, survey)}.warm-up"


def scratch_settings(settings: Settings, survey: str) -> Settings:
    """``settings`` with the lake moved to the warm-up's scratch folder (inside the lake, so that it works on an
    object store as well) and nothing registered in Trino."""
    return settings.model_copy(
        update={"lake_root": f"{settings.lake_uri}/_warm_up/{app_id(survey)}", "trino_register": False}
    )


def _delete_tree(spark: SparkSession, uri: str) -> None:
    """Remove folder ``uri`` and everything in it, through Hadoop's file system (local or object store)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if fs.exists(path):
        fs.delete(path, True)


def rehearse(
    spark: SparkSession,
    settings: Settings,
    survey: str,
    refs: list[enrich.ModuleRef],
    filters: FilterSet,
    marks_only: bool,
    alerts: int,
    rounds: int = 2,
) -> int:
    """Warm the pipeline up by running its own streaming query, over copies of the survey's sample alerts, before
    the real one starts; return how many alerts went through (0: skipped).

    The copies (unique ids, no stamps) are sent to :func:`warm_up_topic`, and a bounded query of the same code as
    the real one (Kafka source, decoder, :class:`PipelineJob`) reads them in ``rounds`` micro-batches into a
    scratch lake (:func:`scratch_settings`, removed after). Its filters select and encode, nothing is sent.
    ``marks_only``: the batches are marked for a bronze lander, as the real query's are with one (no lander
    reads the scratch markers); otherwise each appends bronze itself.

    The warm-up that builds its batch from the sample messages in memory (:func:`jobs.ingest.warm_up`) left the
    first real micro-batch cold: Spark generated 39-48 new classes in it, in every stage, as the stream's plans
    (a Kafka scan, a cached micro-batch) are not that warm-up's. Here the same plans run first: in
    ``bench/e2e.py`` the first real batch took 2.6-3.9 s for 479-651 alerts, against 4.9-6.8 s for 139-549
    (docs/data-engineer.md).
    """
    import json

    from alertlake.kafka import ensure_topic, survey_topic
    from alertlake.reconcile import kafka_ranges
    from alertlake.simulate import simulate

    if alerts <= 0:
        return 0
    t0 = time.monotonic()
    name = app_id(survey)
    topic = warm_up_topic(settings, survey)
    partitions = len(kafka_ranges(settings, survey_topic(settings, survey), None)) or 2  # tasks as the stream's
    ensure_topic(settings, topic, partitions, config={"retention.ms": str(WARM_UP_RETENTION_MS)})
    starting = {topic: {str(p): end for p, (_, end) in kafka_ranges(settings, topic, None).items()}}
    sent = simulate(settings, survey, topic=topic, loops=alerts, limit=alerts, drop_cutouts=True, first_copy=1)
    scratch = scratch_settings(settings, survey)
    _delete_tree(spark, scratch.lake_uri)  # what a killed run left
    query = None
    try:
        ingest_job = ingest.IngestJob(scratch, survey, app_id=name, topic=topic)
        ingest_job.prepare()
        if marks_only:
            ingest_job.behind = ingest.BronzeBehind(spark, scratch, name)
        enrich_job = enrich.EnrichJob(scratch, app_id=name, refs=refs)
        enrich_job.prepare()
        job = PipelineJob(
            ingest_job, enrich_job, distribute.DistributeJob(scratch, filters, app_id=name), rehearsal=True
        )
        per_batch = max(1, -(-sent.alerts // max(1, rounds)))
        reader = ingest.kafka_reader(spark, scratch, topic, per_batch).option("startingOffsets", json.dumps(starting))
        decoded = ingest.decode_messages(reader.load(), survey, ingest_job.max_bytes, with_bytes=not marks_only)
        query = start_stream(scratch, decoded, f"{name}_warm_up", job.write_batch, "available-now")
        if not query.awaitTermination(WARM_UP_TIMEOUT_S):
            raise RuntimeError(f"the warm-up query had not read its {sent.alerts} alerts after {WARM_UP_TIMEOUT_S} s")
        if query.exception() is not None:
            raise RuntimeError(str(query.exception()))
    finally:
        if query is not None and query.isActive:
            query.stop()
        _delete_tree(spark, scratch.lake_uri)
    log.info(
        "%s warmed up through its own query: %d alerts of %s in %d batches, %.1f s",
        name,
        sent.alerts,
        topic,
        len(enrich_job.history),
        time.monotonic() - t0,
    )
    return sent.alerts


def start(
    spark: SparkSession,
    settings: Settings,
    survey: str,
    refs: list[enrich.ModuleRef],
    trigger: str = "continuous",
    interval: str = "1 second",
    max_offsets: int = 20000,
    topic_suffix: str = "",
    filters_dir: Path = FILTERS_DIR,
    lander: BronzeLander | None = None,
) -> tuple[StreamingQuery, PipelineJob]:
    """Start ``survey``'s pipeline query (Kafka source, as :func:`jobs.ingest.start`); return it and its job.
    ``lander``: each batch is marked for the bronze lander (:mod:`jobs.lander`), which is told when the pipeline
    is busy; without one, each batch is appended to bronze in line."""
    from alertlake.kafka import survey_topic

    name = app_id(survey)
    ingest_job = ingest.IngestJob(settings, survey, app_id=name, topic=survey_topic(settings, survey))
    enrich_job = enrich.EnrichJob(settings, app_id=name, refs=refs)
    enrich_job.prepare()
    silver = spark.read.format("delta").load(table_uri(settings, enrich.SILVER))
    filters = load_filters(filters_dir, columns=silver.columns)
    for flt, reason in filters.rejected.items():
        log.error("filter %s not distributed: %s", flt, reason)
    distribute_job = distribute.DistributeJob(settings, filters, app_id=name, topic_suffix=topic_suffix)
    distribute_job.prepare(spark, silver.schema)
    ingest_job.prepare()
    # Batches an earlier run marked and its lander had not appended: appended now, before the stream (and the
    # lander of this run) starts.
    ingest_job.behind = ingest.BronzeBehind(spark, settings, name)
    ingest_job.recover(spark)
    if not lander:
        ingest_job.behind = None  # bronze and quarantine appended by each batch itself
    try:
        rehearse(
            spark, settings, survey, refs, distribute_job.filters, lander is not None, settings.ingest_warm_up_alerts
        )
    except Exception:  # warming up is an optimisation: never a reason not to start
        log.warning("warm-up through the stream's own query failed; warming up in memory instead", exc_info=True)
        ingest.warm_up(
            spark,
            survey,
            ingest_job.max_bytes,
            settings.ingest_warm_up_alerts,
            downstream=warm_up_stages(enrich_job, distribute_job),
            bronze=not lander,
        )
    if settings.ingest_warm_up_alerts > 0:  # once, after the warm-up's rounds: the pool holds all its workers now
        try:
            rounds, workers = enrich.load_on_every_worker(spark, refs)
            log.info("modules loaded on every Python worker: %d seen in %d rounds", workers, rounds)
        except Exception:  # warming up is an optimisation: never a reason not to start
            log.warning("warm-up could not load the modules on every Python worker", exc_info=True)
    # The tables each micro-batch commits to with Spark: their state now, not in the first batch.
    written = [enrich_job.silver_uri] + ([] if lander else [ingest_job.bronze_uri, ingest_job.quarantine_uri])
    load_delta_states(spark, written)
    # A batch of an earlier run, stopped before its commit, is run again first and may be in silver already
    # (silver is written before the batch commits): only then is silver searched for the first batch's alerts.
    replay = replayed_batch(spark, checkpoint_uri(settings, name))
    if replay is None:
        ingest_job.first_batch_is_new()
    else:
        log.info("%s: batch %d of a stopped run is run again: silver is searched for its alerts", name, replay)
    reader = ingest.kafka_reader(spark, settings, ingest_job.topic, max_offsets)
    # With the lander (``behind`` set), each batch only marks its messages: their bytes are not needed here.
    with_bytes = ingest_job.behind is None
    decoded = ingest.decode_messages(reader.load(), survey, ingest_job.max_bytes, with_bytes=with_bytes)
    job = PipelineJob(ingest_job, enrich_job, distribute_job, lander=lander)
    log.info("%s: %s -> bronze -> silver -> %s", name, ingest_job.topic, ", ".join(distribute_job.topics()))
    return start_stream(settings, decoded, name, job.write_batch, trigger, interval), job


def run(
    settings: Settings | None = None,
    surveys: Sequence[str] = SURVEYS,
    trigger: str = "continuous",
    interval: str = "1 second",
    objects_interval: str = "30 seconds",
    objects: bool = True,
    max_offsets: int = 20000,
    timeout: float = 0,
    topic_suffix: str = "",
    spark: SparkSession | None = None,
    bronze: str | None = None,
) -> dict[str, Any]:
    """Run the pipeline of ``surveys`` until stopped (or ``timeout`` seconds, or caught up when bounded).

    ``objects``: also keep gold.objects current in this process (a thread); off when ``jobs.objects`` runs
    beside it at low CPU priority (the real-time DAG), so that it never takes the pipeline's CPU.
    ``bronze``: ``lander`` (bronze and quarantine appended behind the pipeline by :mod:`jobs.lander`, at low CPU
    priority) or ``inline`` (by each micro-batch, after its filter messages). By default, ``lander`` when
    continuous; ``inline`` when bounded, a catch-up where the lander would only add a JVM and a second decode of
    every message (about 0.9 CPU-ms per alert in all)."""
    settings = settings or get_settings()
    bronze = bronze or ("inline" if trigger == "available-now" else "lander")
    lander = BronzeLander(settings, {s: app_id(s) for s in surveys})
    lander.reap()  # a lander an earlier run left must not append while the batches it left are recovered
    refs, spark = enrich.modules_and_spark(settings, "alertlake-pipeline", spark)  # MLflow down: fails first
    if bronze == "lander":
        lander.start()  # it starts Spark meanwhile, and appends nothing before go()
    try:
        started = [
            start(
                spark,
                settings,
                s,
                refs,
                trigger,
                interval,
                max_offsets,
                topic_suffix,
                lander=lander if bronze == "lander" else None,
            )
            for s in surveys
        ]
    except BaseException:
        lander.stop()
        raise
    lander.go()
    queries: list[Query] = [q for q, _ in started]
    if trigger == "available-now":
        for query, _ in started:  # objects after the alerts of this run are in silver
            query.awaitTermination()
        lander.stop()  # and the run ends once they are in bronze
    if objects:
        queries.append(objects_job.start(settings, trigger, objects_interval))
    queries.append(lander)  # last: stopped (every marked batch appended) once the streams have stopped
    failures = supervise(queries, timeout)
    if failures:
        raise RuntimeError("pipeline failed: " + "; ".join(failures))
    return {
        "surveys": list(surveys),
        "versions": {r.name: r.version for r in refs},
        "silver_batches": sum(len(job.enrich.history) for _, job in started),
        "silver_rows": sum(b["rows"] for _, job in started for b in job.enrich.history),
        "sent": {s: dict(job.distribute.counts) for s, (_, job) in zip(surveys, started, strict=True)},
        "held": [k for _, job in started for k in job.held],
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (the real-time pipeline DAG and the end-to-end benchmark run this)."""
    parser = argparse.ArgumentParser(description="survey topics -> bronze -> silver -> filter topics, one app")
    parser.add_argument("--survey", action="append", choices=SURVEYS, help="survey(s); default all")
    parser.add_argument("--trigger", choices=["continuous", "available-now"], default="continuous")
    parser.add_argument("--interval", default="1 second", help="processing-time trigger of continuous mode")
    parser.add_argument("--objects-interval", default="30 seconds", help="how often gold.objects is MERGEd")
    parser.add_argument("--max-offsets", type=int, default=20000, help="messages per micro-batch at most")
    parser.add_argument(
        "--no-objects",
        action="store_true",
        help="leave gold.objects to a jobs.objects process (run at low CPU priority)",
    )
    parser.add_argument("--timeout", type=float, default=0, help="continuous: stop after this many seconds")
    parser.add_argument(
        "--bronze",
        choices=["lander", "inline"],
        help="lander: bronze appended behind the pipeline by a process at low CPU priority (jobs.lander); "
        "inline: by each micro-batch. Default: lander when continuous, inline when bounded",
    )
    parser.add_argument(
        "--topic-suffix",
        default=os.environ.get("ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX", ""),
        help="append to every filter topic (staging, tests; env ALERTLAKE_DISTRIBUTE_TOPIC_SUFFIX); live: none",
    )
    parser.add_argument(
        "--no-trino",
        action="store_true",
        help="register no table in Trino: a throw-away lake (env ALERTLAKE_TRINO_REGISTER=false)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = run(
            surveys=args.survey or list(SURVEYS),
            trigger=args.trigger,
            interval=args.interval,
            objects_interval=args.objects_interval,
            objects=not args.no_objects,
            max_offsets=args.max_offsets,
            timeout=args.timeout,
            topic_suffix=args.topic_suffix,
            settings=job_settings(args.no_trino),
            bronze=args.bronze,
        )
    except (RuntimeError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
