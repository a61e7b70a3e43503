"""Bronze -> silver: quality cuts and every science module on every alert, with provenance per module.

One Spark Structured Streaming query per survey reads ``bronze.<survey>_alerts`` incrementally (Delta source).
Each micro-batch is

1. *enriched* in one vectorised pass per Arrow batch (``mapInArrow``): the canonical columns go to pandas
   once, :mod:`alertlake.quality_cuts` flags them, then every science module runs in dependency order
   (:func:`alertlake.modules.execution_order`) through :func:`alertlake.modules.run_module_safely` on the alerts
   that passed the cuts (Fink's order: science is only trusted on alerts that pass). The ``history`` column goes
   to the features module as an Arrow-backed column and back to Spark untouched, so no light curve is ever
   turned into Python objects. A module that raises gives null outputs and an error code for those rows
   (``<module>_error``); the batch and the stream go on;
2. *stamped* with provenance: ``<module>_version`` and ``<module>_model_uri`` of the model version that ran.
   Versions are resolved once per run (``models:/<name>@champion``, or a version pinned with
   ``--module name@version``) on the driver, downloaded once into the cache, and broadcast to the executors,
   which load each model once per Python worker. The driver reads each downloaded version's module name,
   params and artifacts (:class:`alertlake.modules.SavedModule`), so a worker on the same machine rebuilds the
   module without importing MLflow (10 s instead of 16-17 s for the five modules in a fresh worker, on a slow
   machine); elsewhere it loads the version through MLflow. A moved alias takes effect at the next run;
3. *written idempotently*, keyed on ``(survey, alert_id)``: a row already in ``silver.alerts`` is not written
   again (a retried batch, or a night already recomputed by a replay), and the batch's figures go into the
   Delta commit (``userMetadata``); then the data-quality gate (:func:`alertlake.quality.gate_batch`) records
   its verdict. The figures and the gate's in-batch checks are one aggregation, one Spark action, over the
   persisted rows (:class:`BatchFigures`): the gate adds no pass over the data. In the real-time pipeline
   (:mod:`jobs.pipeline`) not even that: the query that brings the columns the filters read to the driver
   brings the figures' and the checks' row-level columns with them, and pyarrow reduces them there.

The same code runs continuously (processing-time trigger) or bounded (``--trigger available-now``), and
recomputes a night with pinned versions (:func:`replay_enrich`, ``alertlake replay enrich``): a batch read of
the night's bronze rows whose result overwrites the night (``replaceWhere``); the previous result stays
readable by Delta time travel.

    python -m jobs.enrich [--survey ztf --survey lsst] [--trigger continuous|available-now] [--module sso@3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import pyarrow as pa

from alertlake import modules as registry
from alertlake import quality
from alertlake.lake import table_uri
from alertlake.modules import OUTPUT_TYPES, ScienceModule, error_column, null_outputs, run_module_safely
from alertlake.quality_cuts import QUALITY_COLUMNS, quality_cuts
from alertlake.settings import Settings, get_settings
from alertlake.spark import (
    WRITE_OPTIONS,
    ArrowMap,
    Projection,
    load_delta_states,
    start_stream,
    supervise,
    with_batch_values,
)
from alertlake.surveys.canonical import COLUMN_NAMES
from alertlake.surveys.canonical import SCHEMA as CANONICAL_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

log = logging.getLogger("alertlake.enrich")

SILVER = "silver.alerts"
SURVEYS = ("ztf", "lsst")
KEY = ("survey", "alert_id")
#: Columns silver carries beside the canonical, quality and module columns.
LINEAGE = pa.schema(
    [
        pa.field("kafka_timestamp", pa.timestamp("us", tz="UTC")),  # from bronze: end-to-end latency
        pa.field("enrich_batch", pa.string()),  # "<job>:<batch id>", the data-quality gate's batch key
        pa.field("enrich_time", pa.timestamp("us", tz="UTC")),
    ]
)


@dataclass
class Downstream:
    """What the real-time pipeline does next with an enriched batch, before it is committed to silver.

    ``reads(rows)``: the columns (``{name: column}`` of the silver rows) it reads on the driver. They come there
    with the batch figures' and the gate's row-level columns, in one Spark action (:meth:`BatchFigures.read`).
    ``run(rows, verdict, table)``: called with the silver rows (cached), the gate's verdict and that table.
    """

    reads: Callable[[DataFrame], Mapping[str, Any]]
    run: Callable[[DataFrame, quality.Verdict | None, pa.Table], None]


# Progress bars of MLflow downloads would flood job and task logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class InjectedFault(RuntimeError):
    """Raised by a module put in fault-drill mode (``--fault-drill NAME``): rehearses a module failing."""


# ------------------------------------------------------------------------------------------- model versions
@dataclass(frozen=True)
class ModuleRef:
    """One module version as a run uses it: what the driver resolved and broadcasts to the executors."""

    name: str
    version: int
    uri: str  # models:/<name>/<version>, recorded in every row
    outputs: dict[str, str]
    local_path: str | None = None  # downloaded copy in the cache (None: executors load from the URI)
    fault_drill: bool = False
    saved: registry.SavedModule | None = None  # read from local_path on the driver: workers load without MLflow

    @property
    def provenance(self) -> dict[str, Any]:
        """The provenance columns' values for this version."""
        return {f"{self.name}_version": self.version, f"{self.name}_model_uri": self.uri}


def parse_pins(specs: Iterable[str]) -> dict[str, str]:
    """``["sso@3", "xmatch@champion"]`` -> ``{"sso": "3", "xmatch": "champion"}``, checking module names."""
    pins: dict[str, str] = {}
    known = registry.all_modules()
    for spec in specs:
        name, sep, ref = spec.partition("@")
        if not sep or not ref:
            raise ValueError(f"--module {spec!r}: expected NAME@VERSION (e.g. sso@3) or NAME@ALIAS")
        if name not in known:
            raise ValueError(f"--module {spec!r}: unknown module {name!r}; known: {', '.join(known)}")
        pins[name] = ref
    return pins


def ensure_registered(alias: str = "champion") -> dict[str, int]:
    """Register (as ``alias``) every module that has no version under that alias yet; return name -> version.

    Modules are registered in dependency order and dependencies built here are reused. Fails fast with
    :class:`alertlake.modules.MlflowUnreachable` naming the URL when MLflow does not answer.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = registry.require_mlflow()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions: dict[str, int] = {}
    prepared: dict[str, ScienceModule] = {}
    for cls in registry.execution_order(list(registry.all_modules().values())):
        try:
            versions[cls.name] = int(client.get_model_version_by_alias(cls.name, alias).version)
            continue
        except MlflowException:
            pass
        module = cls()
        registered = registry.register(module, alias=alias, prepared=prepared)
        prepared[cls.name] = module
        versions[cls.name] = registered.version
        log.info("registered module %s as version %d @%s", cls.name, registered.version, alias)
    return versions


def resolve_modules(
    settings: Settings, pins: dict[str, str] | None = None, fault_drill: Iterable[str] = ()
) -> list[ModuleRef]:
    """Resolve every module once (champion unless pinned), in execution order, and cache its files locally.

    Raises :class:`alertlake.modules.MlflowUnreachable` naming the URL when MLflow does not answer, and a
    clear error when a module has no champion (run ``alertlake modules register NAME --alias champion``).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    pins = dict(pins or {})
    drill = set(fault_drill)
    classes = registry.execution_order(list(registry.all_modules().values()))
    unknown = (set(pins) | drill) - {c.name for c in classes}
    if unknown:
        raise ValueError(f"unknown modules {sorted(unknown)}; known: {', '.join(c.name for c in classes)}")
    uri = registry.require_mlflow(settings.mlflow_tracking_uri)
    # models:/ downloads resolve through the process-wide registry URI, whatever the client says.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    refs = []
    for cls in classes:
        ref = pins.get(cls.name, "champion")
        try:
            mv = registry.model_version(client, cls.name, ref)
        except MlflowException as exc:
            raise RuntimeError(
                f"module {cls.name!r} has no version {ref!r} in MLflow at {uri}: register it "
                f"(`alertlake modules register {cls.name} --alias champion`) or pin an existing version ({exc})"
            ) from exc
        version = int(mv.version)
        model_uri = registry.model_uri(cls.name, version)
        local = registry.cached_model(settings.cache_dir, uri, cls.name, version, mv.run_id or "norun")
        saved = registry.SavedModule.read(local)
        if saved.name != cls.name:
            raise registry.ModuleError(f"{model_uri} holds module {saved.name!r}, not {cls.name!r}")
        refs.append(
            ModuleRef(
                cls.name, version, model_uri, dict(cls.outputs), str(local), fault_drill=cls.name in drill, saved=saved
            )
        )
        log.info("module %s: %s -> version %d (%s)", cls.name, ref, version, model_uri)
    return refs


def modules_and_spark(
    settings: Settings,
    app_name: str,
    spark: SparkSession | None = None,
    pins: dict[str, str] | None = None,
    fault_drill: Iterable[str] = (),
) -> tuple[list[ModuleRef], SparkSession]:
    """:func:`resolve_modules` and a Spark session (``spark``, or a new one named ``app_name``), the slow parts
    overlapped: importing MLflow and the module classes (11 s of Python on a slow machine) runs in a thread
    while the JVM starts (6-9 s, mostly in another process). MLflow's reachability is checked first, so an
    unreachable server still fails before Spark starts."""
    import threading

    if spark is None:
        registry.require_mlflow(settings.mlflow_tracking_uri)  # resolve_modules asks again; this one is first
        import pyspark.sql  # noqa: F401  (before the thread starts: the two never import pyspark's modules at once)

        from alertlake.spark import build_spark

        def load() -> None:
            import mlflow.pyfunc  # noqa: F401  (imported for its import time only)

            registry.all_modules()

        loading = threading.Thread(target=load, name="import-mlflow", daemon=True)
        loading.start()
        spark = build_spark(settings, app_name)
        loading.join()  # a failed import raises again, with its traceback, in resolve_modules
    return resolve_modules(settings, pins, fault_drill), spark


# Executor side: each Python worker loads a model version once and keeps it for every later batch.
_LOADED: dict[str, ScienceModule] = {}


def _module_for(ref: ModuleRef) -> ScienceModule:
    module = _LOADED.get(ref.uri)
    if module is None:
        # Import the module classes before any model prepends its own code copy (holding only that module and
        # its dependencies) to sys.path: every model then uses the one `modules` package.
        registry.all_modules()

        if ref.saved is not None and all(Path(p).exists() for p in ref.saved.artifacts.values()):
            module = ref.saved.instantiate()  # the driver's cache is this machine's: no MLflow import here
        else:  # an executor on another machine: MLflow downloads the version
            import mlflow.pyfunc

            source = ref.local_path if ref.local_path and Path(ref.local_path, "MLmodel").exists() else ref.uri
            module = mlflow.pyfunc.load_model(source).unwrap_python_model().module
        if module is None or dict(module.outputs) != ref.outputs:
            raise registry.ModuleError(
                f"{ref.uri} loaded with outputs {getattr(module, 'outputs', None)}, expected {ref.outputs}"
            )
        _LOADED[ref.uri] = module
    return module


def _has_loaded(refs: Sequence[ModuleRef]) -> bool:
    return all(r.uri in _LOADED for r in refs)


def _load_here(refs: Sequence[ModuleRef]) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function of :func:`load_on_every_worker`: this worker's pid, whether it had every module
    already, and then loads them."""
    wanted = [r for r in refs if not r.fault_drill]

    def load(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for _ in batches:
            pass
        had = _has_loaded(wanted)  # by reference: a closure would see its own pickled copy of _LOADED
        for ref in wanted:
            _module_for(ref)
        yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "had": [had]})

    return load


def load_on_every_worker(spark: SparkSession, refs: Sequence[ModuleRef], max_rounds: int = 4) -> tuple[int, int]:
    """Have every idle Python worker load the module versions, so a batch's enrichment never lands on a worker
    that only decoded (which loads every module first: 6.7 s of a first batch's 9.0 s in one benchmark run).

    Spark hands idle workers out first in, first out. Each round runs twice as many one-row tasks as there are task
    slots, and reports each worker's pid and whether it had the modules already; rounds go on until one finds
    every worker it met already loaded (at most ``max_rounds``). Returns (rounds run, workers seen)."""
    slots = max(2, spark.sparkContext.defaultParallelism)
    tasks = 2 * slots
    seen: set[int] = set()
    for round_no in range(1, max_rounds + 1):
        rows = spark.range(tasks, numPartitions=tasks).mapInArrow(_load_here(refs), "pid long, had boolean").collect()
        seen.update(r.pid for r in rows)
        if all(r.had for r in rows):
            return round_no, len(seen)
    return max_rounds, len(seen)


class _FaultDrill(ScienceModule):
    """Base of modules in fault-drill mode: ``predict`` always raises :class:`InjectedFault`."""

    inputs: ClassVar[list[str]] = []

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        raise InjectedFault(f"fault drill: module {self.name} made to fail on a batch of {len(alerts)} alerts")


def _fault_drill(ref: ModuleRef) -> ScienceModule:
    """A stand-in with the module's name and outputs whose ``predict`` raises (``--fault-drill NAME``)."""
    cls = type(f"FaultDrill_{ref.name}", (_FaultDrill,), {"name": ref.name, "outputs": dict(ref.outputs)})
    return cls()


# ------------------------------------------------------------------------------------------- the pure core
def enrich_frame(
    alerts: pd.DataFrame, modules: Sequence[tuple[str, ScienceModule]], timings: dict[str, float] | None = None
) -> pd.DataFrame:
    """Quality cuts, then every module (in the given order) on the alerts that pass: the pure core of the job.

    ``alerts`` holds canonical columns. Returns, on ``alerts.index``, ``quality_pass``, ``quality_reason`` and for
    each module its declared outputs (null for rows that failed the cuts or when the module failed) and
    ``<module>_error``. ``timings`` (optional) receives the seconds spent in each module.
    """
    flags = quality_cuts(alerts)
    passing = flags["quality_pass"].to_numpy(dtype=bool)
    frame = alerts.join(flags)
    chosen = frame.loc[passing]
    result = [flags]
    for name, module in modules:
        full = null_outputs(module.outputs, frame.index)
        errors = pd.Series(None, index=frame.index, name=error_column(name), dtype=object)
        if len(chosen):
            started = time.perf_counter()
            outputs, codes = run_module_safely(module, chosen[list(module.inputs)])
            if timings is not None:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
            for col in full.columns:
                full.loc[passing, col] = outputs[col].to_numpy()
            errors.loc[passing] = codes.to_numpy()
            chosen = chosen.join(outputs)
        result.extend([full, errors.to_frame()])
    return pd.concat(result, axis=1)


def module_columns(refs: Sequence[ModuleRef]) -> pa.Schema:
    """Arrow schema of what the enrichment adds per row: quality columns, then per module outputs and error."""
    fields = [pa.field("quality_pass", pa.bool_()), pa.field("quality_reason", pa.string())]
    for ref in refs:
        fields += [pa.field(c, OUTPUT_TYPES[t].arrow) for c, t in ref.outputs.items()]
        fields.append(pa.field(error_column(ref.name), pa.string()))
    return pa.schema(fields)


def silver_schema(refs: Sequence[ModuleRef]) -> pa.Schema:
    """Columns of ``silver.alerts``: canonical, quality, per module (outputs, version, model URI, error), lineage."""
    fields = list(CANONICAL_SCHEMA) + [
        pa.field(c, pa.bool_() if t == "boolean" else pa.string()) for c, t in QUALITY_COLUMNS.items()
    ]
    for ref in refs:
        fields += [pa.field(c, OUTPUT_TYPES[t].arrow) for c, t in ref.outputs.items()]
        fields += [
            pa.field(f"{ref.name}_version", pa.int32()),
            pa.field(f"{ref.name}_model_uri", pa.string()),
            pa.field(error_column(ref.name), pa.string()),
        ]
    return pa.schema(fields + list(LINEAGE))


def enricher(refs: Sequence[ModuleRef]) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: each input batch (canonical columns + lineage) gains the module columns.

    ``refs`` (a few hundred bytes) travel inside the task closure: Spark ships it to every executor with the
    task binary, which is how the versions resolved once on the driver reach the Python workers.
    """
    resolved = list(refs)

    def enrich(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        modules = [(r.name, _fault_drill(r) if r.fault_drill else _module_for(r)) for r in resolved]
        added = module_columns(resolved)
        for batch in batches:
            yield _enrich_batch(batch, modules, added)

    return enrich


def history_series(history: pa.Array | pa.ChunkedArray, index: pd.Index | None = None) -> pd.Series:
    """The ``history`` column as modules get it: Arrow-backed, so the features module flattens it without
    building Python objects per entry."""
    chunked = history if isinstance(history, pa.ChunkedArray) else pa.chunked_array([history])
    return pd.Series(pd.arrays.ArrowExtensionArray(chunked), index=index)


def _enrich_batch(
    batch: pa.RecordBatch, modules: Sequence[tuple[str, ScienceModule]], added: pa.Schema
) -> pa.RecordBatch:
    plain = [c for c in COLUMN_NAMES if c != "history" and c in batch.schema.names]
    alerts = pa.Table.from_batches([batch.select(plain)]).to_pandas()
    if "history" in batch.schema.names:
        alerts["history"] = history_series(batch.column("history"))
    enriched = enrich_frame(alerts, modules)
    arrays = list(batch.columns)
    for f in added:
        arrays.append(pa.array(enriched[f.name], type=f.type, from_pandas=True))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(list(batch.schema) + list(added)))


def silver_rows(bronze: DataFrame, refs: Sequence[ModuleRef], enrich_batch: str) -> DataFrame:
    """Bronze rows (any surveys) -> silver rows: the whole transformation, shared by the stream and the replay."""
    inputs = _SILVER_INPUTS.select(bronze)
    enrich, output = _silver_plan(refs, inputs.schema)
    # The batch's values come from a joined one-row table, not literals: see with_batch_values.
    values = (dt.datetime.now(dt.UTC), enrich_batch)
    return output.select(with_batch_values(enrich.apply(inputs), "enrich_time timestamp, enrich_batch string", *values))


#: What the enrichment reads of its input rows.
_SILVER_INPUTS = Projection(["canonical.*", "kafka_timestamp"])
#: The enrichment function and silver's projection, made once per module versions and input schema: built for
#: every micro-batch, they took about 400 of a real-time batch's 1,440 calls to the JVM.
_SILVER_PLANS: dict[tuple[Any, ...], tuple[ArrowMap, Projection]] = {}


def _silver_plan(refs: Sequence[ModuleRef], input_schema: Any) -> tuple[ArrowMap, Projection]:
    """The enrichment (``mapInArrow``) and silver's column list after it, for ``refs`` and inputs of
    ``input_schema`` (a ``StructType``)."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructType

    versions = tuple((r.name, r.version, r.uri, tuple(r.outputs.items()), r.local_path, r.fault_drill) for r in refs)
    key = (versions, input_schema.json())
    if key not in _SILVER_PLANS:
        out_type = StructType(input_schema.fields + from_arrow_schema(module_columns(refs)).fields)
        enrich = ArrowMap(enricher(refs), out_type, input_schema.fieldNames())
        columns: list[Any] = [F.col(c) for c in COLUMN_NAMES] + [F.col(c) for c in QUALITY_COLUMNS]
        for ref in refs:
            columns += [F.col(c) for c in ref.outputs]
            columns += [
                F.lit(ref.version).cast("int").alias(f"{ref.name}_version"),
                F.lit(ref.uri).alias(f"{ref.name}_model_uri"),
                F.col(error_column(ref.name)),
            ]
        columns += [F.col("kafka_timestamp"), F.col("enrich_batch"), F.col("enrich_time")]
        _SILVER_PLANS[key] = (enrich, Projection(columns))
    return _SILVER_PLANS[key]


# ------------------------------------------------------------------------------------------- writing
@dataclass
class BatchFigures:
    """What one enrichment batch did, from a single global aggregation over its rows."""

    rows: int = 0
    passed_cuts: int = 0
    nights: list[str] = field(default_factory=list)
    surveys: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    alert_ids: tuple[int, int] | None = None  # smallest and largest alert id of the batch
    #: The data-quality gate's aggregates, computed in the same aggregation (empty when none were asked for).
    gate_stats: dict[str, Any] = field(default_factory=dict, repr=False)

    @staticmethod
    def columns(refs: Sequence[ModuleRef]) -> list[Any]:
        """The figures as aggregate columns (named ``fig_*``: no clash with the gate's ``m<n>``)."""
        from pyspark.sql import functions as F

        aggs = [
            F.count(F.lit(1)).alias("fig_rows"),
            F.sum(F.col("quality_pass").cast("int")).alias("fig_passed"),
            F.collect_set("night").alias("fig_nights"),
            F.collect_set("survey").alias("fig_surveys"),
            F.min("alert_id").alias("fig_min_id"),
            F.max("alert_id").alias("fig_max_id"),
        ]
        return aggs + [F.count(F.col(error_column(r.name))).alias(f"fig_err_{r.name}") for r in refs]

    @staticmethod
    def row_columns(refs: Sequence[ModuleRef]) -> dict[str, Any]:
        """The row-level columns :meth:`from_table` computes the figures from, by name."""
        from pyspark.sql import functions as F

        columns = {c: F.col(c) for c in ("survey", "alert_id", "night", "quality_pass")}
        for r in refs:
            columns[f"fig_err_{r.name}"] = F.col(error_column(r.name)).isNotNull().alias(f"fig_err_{r.name}")
        return columns

    @classmethod
    def driver_columns(
        cls, refs: Sequence[ModuleRef], gate: quality.GatePlan | None = None, also: Mapping[str, Any] | None = None
    ) -> list[Any]:
        """The columns :meth:`from_table` computes the figures (and ``gate``'s aggregates) from, and ``also``
        (``{name: column}``: what the caller reads of the batch next). Unresolved: one list serves every batch
        of the same columns."""
        return list(
            {**cls.row_columns(refs), **(gate.row_columns() if gate is not None else {}), **(also or {})}.values()
        )

    @staticmethod
    def read(rows: DataFrame, gate: quality.GatePlan | None, columns: Projection) -> pa.Table:
        """Bring :meth:`driver_columns` of ``rows`` (over ``gate``'s view) to the driver, in one Spark action.

        The real-time pipeline takes its filters' columns to the driver anyway: with them, the figures and the
        gate need no aggregation of their own (:meth:`of`: a Spark job with a shuffle, 0.3-0.9 s a batch on
        this machine whatever its size).
        """
        frame = gate.view if gate is not None else rows
        return columns.select(frame).toArrow()

    @classmethod
    def from_table(
        cls, table: pa.Table, refs: Sequence[ModuleRef], gate: quality.GatePlan | None = None
    ) -> BatchFigures:
        """The figures (and ``gate``'s aggregates) of a batch from its :meth:`read` table: the same values as
        :meth:`of` computes in Spark."""
        import pyarrow.compute as pc

        ids = pc.min_max(table.column("alert_id"))
        low, high = ids["min"].as_py(), ids["max"].as_py()
        return cls(
            rows=table.num_rows,
            passed_cuts=int(pc.sum(table.column("quality_pass").cast(pa.int64())).as_py() or 0),
            nights=sorted(pc.unique(table.column("night").drop_null()).to_pylist()),
            surveys=sorted(pc.unique(table.column("survey").drop_null()).to_pylist()),
            errors={r.name: int(pc.sum(table.column(f"fig_err_{r.name}")).as_py() or 0) for r in refs},
            alert_ids=None if low is None else (int(low), int(high)),
            gate_stats=gate.aggregates.reduce(table) if gate is not None else {},
        )

    @classmethod
    def of(cls, rows: DataFrame, refs: Sequence[ModuleRef], gate: quality.GatePlan | None = None) -> BatchFigures:
        """Count rows, cut passes and module errors, list nights and surveys: one Spark action.

        With ``gate`` (:func:`alertlake.quality.gate_plan` of ``rows``), the gate's aggregates are computed in
        the same action, over the gate's view of the rows, and kept in :attr:`gate_stats`.
        """
        if gate is None:
            row = rows.select(*cls.columns(refs)).collect()[0].asDict()
        else:
            row = gate.view.select(*cls.columns(refs), *gate.columns()).collect()[0].asDict()
        return cls(
            rows=int(row["fig_rows"]),
            passed_cuts=int(row["fig_passed"] or 0),
            nights=sorted(row["fig_nights"]),
            surveys=sorted(row["fig_surveys"]),
            errors={r.name: int(row[f"fig_err_{r.name}"]) for r in refs},
            alert_ids=None if row["fig_min_id"] is None else (int(row["fig_min_id"]), int(row["fig_max_id"])),
            gate_stats={k: v for k, v in row.items() if not k.startswith("fig_")} if gate is not None else {},
        )


def ensure_silver(settings: Settings, refs: Sequence[ModuleRef]) -> None:
    """Create ``silver.alerts`` (partitioned by night) and the bronze tables it reads, if missing."""
    from alertlake.lake import ensure_table
    from jobs.ingest import ensure_bronze

    for survey in SURVEYS:
        ensure_bronze(settings, survey)
    schema = silver_schema(refs)
    ensure_table(table_uri(settings, SILVER), schema, "night", silver_properties(schema))


def silver_properties(schema: pa.Schema) -> dict[str, str]:
    """Silver's Delta properties: those of every streamed table, and Parquet dictionaries for its string columns
    only (:func:`alertlake.lake.dictionaries_for_strings_only`). Java Flight Recorder put 9% of the real-time
    pipeline JVM's samples under dictionary-writer frames at 1,000 alerts/s; side by side the append saved less,
    2-10% of its CPU (``bench/stages.py``, ``silver_no_float_dictionary_vs_dictionaries``), into files 18% smaller.
    Tables created before get it with Spark: ``ALTER TABLE delta.`<uri>` SET TBLPROPERTIES (...)`` with these
    pairs."""
    from alertlake.lake import STREAMED_TABLE_PROPERTIES, dictionaries_for_strings_only

    return {**STREAMED_TABLE_PROPERTIES, **dictionaries_for_strings_only(schema)}


def _sql_list(values: Iterable[str]) -> str:
    from alertlake.trino import sql_string

    return ", ".join(sql_string(v) for v in values)


def gate(
    spark: SparkSession,
    settings: Settings,
    rows: DataFrame,
    batch_key: str,
    figures: BatchFigures,
    plan: quality.GatePlan,
) -> quality.Verdict:
    """Record the data-quality gate's verdict on a written batch from the aggregates ``figures`` carries."""
    return quality.gate_batch(
        spark, settings, rows, table=SILVER, batch_key=batch_key, plan=plan, stats=figures.gate_stats
    )


@dataclass
class EnrichJob:
    """One enrichment query (or replay): the module versions it runs and how it writes silver."""

    settings: Settings
    app_id: str
    refs: list[ModuleRef]
    history: list[dict[str, Any]] = field(default_factory=list)  # figures of every batch, newest last
    #: Gate every batch (:mod:`alertlake.quality`). False only to measure the gate's cost (bench/quality.py):
    #: an unchecked batch is never distributed.
    quality_gate: bool = True
    _driver_columns: dict[Any, Projection] = field(default_factory=dict, repr=False)  # see _driver_table

    @property
    def silver_uri(self) -> str:
        return table_uri(self.settings, SILVER)

    def prepare(self) -> None:
        """Create the tables if needed and expose silver in Trino."""
        from alertlake import trino

        ensure_silver(self.settings, self.refs)
        trino.register_tables(self.settings, [SILVER])

    def write_batch(
        self, bronze: DataFrame, batch_id: int, downstream: Downstream | None = None, known_new: bool = False
    ) -> None:
        """Enrich one micro-batch and append its new rows to silver (rows already there are skipped).

        ``downstream`` (the real-time pipeline) is called with the batch's silver rows, still cached, and the
        gate's verdict, before they are committed to silver. ``known_new``: the caller knows none of these alerts
        can be in silver (new to bronze, and not a retry), so silver is not searched for them."""
        mode = "append-new" if known_new else "append"
        self._write(bronze, f"{self.app_id}:{batch_id}", mode, downstream=downstream)

    def overwrite_night(
        self, spark: SparkSession, bronze: DataFrame, night: str, surveys: Sequence[str], key: str
    ) -> BatchFigures:
        """Recompute ``night`` from ``bronze`` and replace that night's silver rows of ``surveys`` in one commit."""
        return self._write(bronze, key, "overwrite", f"night = '{night}' AND survey IN ({_sql_list(surveys)})")

    def _write(
        self,
        bronze: DataFrame,
        key: str,
        mode: str,
        replace_where: str | None = None,
        downstream: Downstream | None = None,
    ) -> BatchFigures:
        """Enrich ``bronze`` as batch ``key``, gate it, write it to silver, report it.

        ``mode`` ``append``: a keyed insert (rows already in silver are skipped; an empty batch writes nothing);
        ``append-new``: a plain append of rows known not to be in silver.
        ``overwrite``: the rows replace those matching ``replace_where`` in one commit. The batch figures and the
        gate's aggregates come from one Spark action over the persisted rows; the gate then only records. The
        verdict is recorded *before* the rows are committed, so a reader of silver never sees rows whose batch
        has no verdict yet (distribution would have to skip them as unchecked).
        """
        t0 = time.monotonic()
        spark = bronze.sparkSession
        rows = silver_rows(bronze, self.refs, key).persist()
        try:
            plan = quality.gate_plan(SILVER, rows) if self.quality_gate else None
            if downstream is not None:  # the figures and the gate from what the next stage reads anyway
                table = self._driver_table(rows, plan, downstream)
                figures = BatchFigures.from_table(table, self.refs, plan)
            else:
                figures = BatchFigures.of(rows, self.refs, plan)
            if mode.startswith("append") and not figures.rows:
                return figures
            t_enriched = time.monotonic()
            out = self._not_in(rows, figures, self.silver_uri) if mode == "append" else rows
            meta = self._meta(key, figures)
            verdict = gate(spark, self.settings, rows, key, figures, plan) if plan is not None else None
            t_gated = time.monotonic()
            if downstream is not None:
                # Before the commit: the filter streams do not wait for it. Each stage keeps its own exactly-once
                # rule keyed by the batch, so a kill between the two loses and repeats nothing.
                downstream.run(rows, verdict, table)
            t_downstream = time.monotonic()
            writer = out.write.format("delta").mode("overwrite" if mode == "overwrite" else "append")
            writer = writer.options(**WRITE_OPTIONS).option("mergeSchema", "true")
            if replace_where is not None:
                writer = writer.option("replaceWhere", replace_where)
            writer.option("userMetadata", json.dumps(meta)).save(self.silver_uri)
            self._report(key, figures, meta, t0, t_enriched, t_gated, t_downstream)
            return figures
        finally:
            rows.unpersist()

    def _driver_table(self, rows: DataFrame, plan: quality.GatePlan | None, downstream: Downstream) -> pa.Table:
        """:meth:`BatchFigures.read` of ``rows`` with what ``downstream`` reads. The columns are built once for
        rows of the same columns (some 120 expressions, 0.1 s of py4j calls a batch), and sent to the JVM once
        (:class:`alertlake.spark.Projection`)."""
        key = (tuple(rows.columns), plan is not None, downstream.reads)
        columns = self._driver_columns.get(key)
        if columns is None:
            also = downstream.reads(rows)
            columns = self._driver_columns[key] = Projection(BatchFigures.driver_columns(self.refs, plan, also))
        return BatchFigures.read(rows, plan, columns)

    @staticmethod
    def _not_in(rows: DataFrame, figures: BatchFigures, uri: str) -> DataFrame:
        """Keyed insert: ``rows`` less those whose key is already in the Delta table at ``uri``. Only the batch's
        keys already there (usually none) are looked up. The id range lets Delta skip every file of the night
        whose ids lie outside it (alert ids grow through a night, so a stream's earlier files rarely overlap a new
        batch)."""
        from pyspark.sql import functions as F

        low, high = figures.alert_ids or (0, -1)
        existing = (
            rows.sparkSession.read.format("delta")
            .load(uri)
            .where(F.col("night").isin(figures.nights) & F.col("survey").isin(figures.surveys))
            .where(F.col("alert_id").between(low, high))
            .select(*KEY)
            .join(F.broadcast(rows.select(*KEY)), list(KEY), "left_semi")
        )
        return rows.join(F.broadcast(existing), list(KEY), "left_anti")

    def warm_up_write(self, rows: DataFrame, figures: BatchFigures, scratch: str) -> None:
        """Write ``rows`` to a scratch Delta table at ``scratch`` as a batch is written to silver (a keyed insert,
        once the table exists), so that a job's first batch does not compile the write paths."""
        from deltalake import DeltaTable

        if DeltaTable.is_deltatable(scratch):
            writer = self._not_in(rows, figures, scratch).write.option("mergeSchema", "true")
        else:
            writer = rows.write.partitionBy("night")
        writer.format("delta").mode("append").options(**WRITE_OPTIONS).save(scratch)

    def _meta(self, key: str, figures: BatchFigures) -> dict[str, Any]:
        return {
            "job": self.app_id,
            "enrich_batch": key,
            "rows": figures.rows,
            "passed_cuts": figures.passed_cuts,
            "nights": figures.nights,
            "module_errors": figures.errors,
            "versions": {r.name: r.version for r in self.refs},
        }

    def _report(
        self, key: str, figures: BatchFigures, meta: dict[str, Any], t0: float, t1: float, t2: float, t3: float
    ) -> None:
        """Log the batch and keep its figures, with the seconds of each phase: enrich (the one aggregation,
        gate checks included; in the pipeline, the one query that takes the batch's light columns to the driver),
        gate (recording the verdict) and write (the later stages' time, in the real-time pipeline, is not
        counted)."""
        now = time.monotonic()
        phases = {"enrich": t1 - t0, "gate": t2 - t1, "write": now - t3}
        self.history.append({**meta, "seconds": now - t0 - (t3 - t2), "phases": phases})
        failed = {k: v for k, v in figures.errors.items() if v}
        log.info(
            "%s: %d alerts (%d passed the cuts) -> silver in %.1f s (enrich %.1f, gate %.1f, write %.1f)%s",
            key,
            figures.rows,
            figures.passed_cuts,
            now - t0 - (t3 - t2),
            *phases.values(),
            f"; module errors: {failed}" if failed else "",
        )
        if failed:
            log.error("%s: science modules failed on some alerts (outputs null, see <module>_error): %s", key, failed)


# ------------------------------------------------------------------------------------------- running
def start(
    spark: SparkSession,
    settings: Settings,
    survey: str,
    refs: list[ModuleRef],
    trigger: str = "continuous",
    interval: str = "5 seconds",
    max_files: int = 1000,
    name: str | None = None,
) -> tuple[StreamingQuery, EnrichJob]:
    """Start the enrichment query of ``survey`` with the resolved module versions ``refs``."""
    from jobs.ingest import bronze_table

    name = name or f"enrich_{survey}"
    job = EnrichJob(settings, app_id=name, refs=refs)
    job.prepare()
    load_delta_states(spark, [job.silver_uri])
    source = (
        spark.readStream.format("delta")
        .option("maxFilesPerTrigger", str(max_files))
        .option("skipChangeCommits", "true")  # maintenance (OPTIMIZE, retention) never re-sends alerts
        .load(table_uri(settings, bronze_table(survey)))
    )
    return start_stream(settings, source, name, job.write_batch, trigger, interval), job


def run(
    settings: Settings | None = None,
    surveys: Sequence[str] = SURVEYS,
    trigger: str = "available-now",
    pins: dict[str, str] | None = None,
    fault_drill: Iterable[str] = (),
    interval: str = "5 seconds",
    timeout: float = 0,
    max_files: int = 1000,
    spark: SparkSession | None = None,
    name_suffix: str = "",
) -> dict[str, Any]:
    """Run the enrichment of ``surveys`` (bounded by default) until done or ``timeout`` seconds; return figures.

    Module versions are resolved first, so an unreachable MLflow fails here, before Spark starts any query.
    Queries are named (and checkpointed) ``enrich_<survey><name_suffix>``.
    """
    settings = settings or get_settings()
    refs, spark = modules_and_spark(settings, "alertlake-enrich", spark, pins, fault_drill)
    started = [
        start(spark, settings, s, refs, trigger, interval, max_files, f"enrich_{s}{name_suffix}") for s in surveys
    ]
    failures = supervise([query for query, _ in started], timeout, poll=10)
    if failures:
        raise RuntimeError("enrichment failed: " + "; ".join(failures))
    batches = [b for _, job in started for b in job.history]
    return {
        "versions": {r.name: r.version for r in refs},
        "batches": len(batches),
        "rows": sum(b["rows"] for b in batches),
        "module_errors": {r.name: sum(b["module_errors"].get(r.name, 0) for b in batches) for r in refs},
        "nights": sorted({n for b in batches for n in b["nights"]}),
        "history": batches,
    }


def replay_enrich(
    night: str,
    modules: Sequence[str] = (),
    *,
    surveys: Sequence[str] = SURVEYS,
    settings: Settings | None = None,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Recompute ``night`` of silver from bronze with pinned module versions (``["sso@3"]``; others: champion).

    Replaces that night's rows of ``surveys`` in one Delta commit; the previous result stays readable by time
    travel (``versionAsOf`` the returned ``previous_version``). Rerunning with the same versions writes the same
    values. Returns the versions used, the rows written and the silver table versions before and after.
    """
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    from jobs.ingest import bronze_table

    try:
        dt.date.fromisoformat(night)
    except ValueError as exc:
        raise ValueError(f"night {night!r} is not a date YYYY-MM-DD ({exc})") from None
    settings = settings or get_settings()
    refs, spark = modules_and_spark(settings, "alertlake-replay-enrich", spark, parse_pins(modules))
    name = f"replay_enrich_{night.replace('-', '')}"
    job = EnrichJob(settings, app_id=name, refs=refs)
    job.prepare()
    silver = DeltaTable.forPath(spark, job.silver_uri)
    before = int(silver.history(1).select("version").first()[0])  # type: ignore[index]
    parts = [
        spark.read.format("delta").load(table_uri(settings, bronze_table(s))).where(F.col("night") == night)
        for s in surveys
    ]
    bronze = parts[0].select("canonical", "kafka_timestamp")
    for part in parts[1:]:
        bronze = bronze.unionByName(part.select("canonical", "kafka_timestamp"))
    key = f"{name}:{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    figures = job.overwrite_night(spark, bronze, night, surveys, key)
    after = int(silver.history(1).select("version").first()[0])  # type: ignore[index]
    return {
        "night": night,
        "surveys": list(surveys),
        "versions": {r.name: r.version for r in refs},
        "rows": figures.rows,
        "module_errors": figures.errors,
        "enrich_batch": key,
        "previous_version": before,
        "version": after,
    }


#: Registration metrics (cross-validated, from the training run) a challenger may not lose by more than this.
SKILL_METRICS = ("cv_roc_auc", "cv_accuracy", "cv_f1")
SKILL_TOLERANCE = 0.02
PROMOTION_EXPERIMENT = "alertlake-promotions"
#: A challenger may be slower than the champion, but not both under half its speed and under this rate.
FAST_ENOUGH_ALERTS_PER_S = 5_000.0
SPEED_REPEATS = 5


def reference_alerts(settings: Settings, night: str | None, spark: SparkSession | None = None) -> pd.DataFrame:
    """Canonical rows to score versions on: the night's bronze alerts (all surveys), or the shared sample."""
    if not night:
        return registry.sample_alerts().drop(columns=list(QUALITY_COLUMNS))
    from pyspark.sql import functions as F

    from jobs.ingest import bronze_table

    if spark is None:
        from alertlake.spark import build_spark

        spark = build_spark(settings, "alertlake-promotion")
    frames = [
        spark.read.format("delta")
        .load(table_uri(settings, bronze_table(s)))
        .where(F.col("night") == night)
        .select("canonical.*")
        .toPandas()
        for s in SURVEYS
        if _is_delta(spark, table_uri(settings, bronze_table(s)))
    ]
    alerts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if alerts.empty:
        raise ValueError(f"no bronze alerts on night {night}: choose a night that was ingested")
    return alerts


def _is_delta(spark: SparkSession, uri: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, uri))


def score_versions(
    name: str,
    challenger: str | int = "challenger",
    champion: str | int = "champion",
    night: str | None = None,
    settings: Settings | None = None,
    spark: SparkSession | None = None,
) -> dict[str, Any]:
    """Score a challenger against the champion of module ``name`` on a reference night; log it to MLflow.

    Both versions run on the same alerts (the night's bronze alerts, or the shared sample when ``night`` is
    None) after the quality cuts, their dependencies at champion. The challenger passes when it raises no error,
    returns no more nulls than the champion (+1 %), is at least half as fast or fast enough anyway
    (:data:`FAST_ENOUGH_ALERTS_PER_S`, best of :data:`SPEED_REPEATS` runs), and loses no more than
    :data:`SKILL_TOLERANCE` on any cross-validated skill metric of its training run. Returns the comparison,
    with ``passed`` and ``reasons``; the MLflow run id is in ``run_id``.
    """
    import mlflow

    settings = settings or get_settings()
    uri = registry.require_mlflow()
    mlflow.set_tracking_uri(uri)
    alerts = reference_alerts(settings, night, spark)
    cls = registry.get(name)
    deps = [c for c in registry.execution_order(list(registry.all_modules().values())) if c.name in _needed(name)]
    upstream = [(c.name, registry.load(c.name).module) for c in deps]
    frame = alerts.join(enrich_frame(alerts, upstream))
    frame = frame.loc[frame["quality_pass"].to_numpy(dtype=bool)]
    inputs = frame[list(cls.inputs)]
    described = {v["version"]: v for v in registry.describe(name)["versions"]}
    scored: dict[str, dict[str, Any]] = {}
    outputs: dict[str, pd.DataFrame] = {}
    for role, ref in (("champion", champion), ("challenger", challenger)):
        loaded = registry.load(name, ref)
        run_module_safely(loaded, inputs.head(10))  # warm-up: lazy imports must not count against a version
        seconds = float("inf")
        for _ in range(SPEED_REPEATS):  # best of a few: one slow run on a busy machine says nothing
            started = time.perf_counter()
            out, codes = run_module_safely(loaded, inputs)
            seconds = min(seconds, time.perf_counter() - started)
        outputs[role] = out
        skill = described.get(loaded.version, {}).get("metrics", {})
        scored[role] = {
            "version": loaded.version,
            "error": codes.dropna().iloc[0] if codes.notna().any() else None,
            "alerts_per_s": len(inputs) / max(seconds, 1e-9),
            "null_fraction": float(out.isna().to_numpy().mean()) if len(out) else 0.0,
            **{k: float(skill[k]) for k in SKILL_METRICS if k in skill},
        }
    agreement = {}
    for col, typ in cls.outputs.items():
        a, b = outputs["champion"][col], outputs["challenger"][col]
        if typ in ("double", "float"):
            agreement[f"mean_abs_diff.{col}"] = float((a.astype(float) - b.astype(float)).abs().mean())
        else:
            same = (a.astype(object) == b.astype(object)) | (a.isna() & b.isna())
            agreement[f"agreement.{col}"] = float(same.mean())
    champ, chall = scored["champion"], scored["challenger"]
    reasons = []
    if chall["error"]:
        reasons.append(f"challenger raised {chall['error']}")
    if chall["null_fraction"] > champ["null_fraction"] + 0.01:
        reasons.append(f"more null outputs ({chall['null_fraction']:.3f} vs {champ['null_fraction']:.3f})")
    if chall["alerts_per_s"] < 0.5 * champ["alerts_per_s"] and chall["alerts_per_s"] < FAST_ENOUGH_ALERTS_PER_S:
        reasons.append(f"slower ({chall['alerts_per_s']:.0f} vs {champ['alerts_per_s']:.0f} alerts/s)")
    for metric in SKILL_METRICS:
        if metric in champ and chall.get(metric, -1.0) < champ[metric] - SKILL_TOLERANCE:
            reasons.append(f"{metric} {chall.get(metric)} below champion's {champ[metric]:.3f}")
    result = {
        "module": name,
        "night": night,
        "reference": f"bronze night {night}" if night else "shared sample alerts",
        "alerts": len(inputs),
        "champion": champ,
        "challenger": chall,
        "agreement": agreement,
        "passed": not reasons,
        "reasons": reasons,
    }
    mlflow.set_experiment(PROMOTION_EXPERIMENT)
    with mlflow.start_run(run_name=f"{name} v{chall['version']} vs v{champ['version']}") as run:
        mlflow.log_params(
            {"module": name, "champion_version": champ["version"], "challenger_version": chall["version"]}
            | {"reference": result["reference"], "alerts": len(inputs)}
        )
        metrics = {
            f"{role}.{k}": float(v)
            for role in ("champion", "challenger")
            for k, v in scored[role].items()
            if k not in ("version", "error")
        }
        mlflow.log_metrics(metrics | agreement | {"passed": float(not reasons)})
        mlflow.set_tags(
            {"alertlake.module": name, "alertlake.passed": str(not reasons), "alertlake.reasons": "; ".join(reasons)}
        )
        mlflow.log_dict(result, "comparison.json")
        result["run_id"] = run.info.run_id
    return result


def _needed(name: str) -> set[str]:
    """Names of the modules ``name`` depends on, transitively."""
    seen: set[str] = set()
    pending = list(registry.get(name).depends_on())
    while pending:
        n = pending.pop()
        if n not in seen:
            seen.add(n)
            pending.extend(registry.get(n).depends_on())
    return seen


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (used by the enrichment DAG and ``alertlake replay enrich``)."""
    parser = argparse.ArgumentParser(description="bronze -> silver enrichment (quality cuts + science modules)")
    parser.add_argument("--survey", action="append", choices=SURVEYS, help="survey(s) to enrich; default all")
    parser.add_argument("--trigger", choices=["continuous", "available-now"], default="continuous")
    parser.add_argument("--interval", default="5 seconds", help="processing-time trigger of continuous mode")
    parser.add_argument("--module", action="append", default=[], help="pin a version: NAME@VERSION (repeatable)")
    parser.add_argument("--replay-night", help="recompute the night YYYY-MM-DD from bronze (bounded, overwrite)")
    parser.add_argument("--timeout", type=float, default=0, help="continuous: stop after this many seconds")
    parser.add_argument("--register", action="store_true", help="first register modules that have no champion")
    parser.add_argument("--fault-drill", action="append", default=[], help="make module NAME fail (rehearsal)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    surveys = args.survey or list(SURVEYS)
    try:
        if args.register:
            ensure_registered()
        if args.replay_night:
            summary = replay_enrich(args.replay_night, args.module, surveys=surveys)
        else:
            summary = run(
                surveys=surveys,
                trigger=args.trigger,
                pins=parse_pins(args.module),
                fault_drill=args.fault_drill,
                interval=args.interval,
                timeout=args.timeout,
            )
    except registry.MlflowUnreachable as exc:
        log.error("%s", exc)
        return 2
    except (RuntimeError, ValueError) as exc:
        log.error("enrichment failed: %s", exc)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
