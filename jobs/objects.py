"""gold.objects: one row per survey and object, kept current from silver.alerts with delta-rs and pyarrow (no Spark).

A row holds the object's latest alert (``last_<column>`` and the module scores of that alert), how many of its
alerts went through the quality gate (``n_alerts``), its first detection (``first_mjd``), the Kafka timestamp of
its latest alert and when the row last took a newer alert (``updated_at``).

Each :func:`step` reads the silver versions committed since the previous step straight from the Delta log:

* versions that append alerts (a micro-batch of the enrichment job or of the real-time pipeline) are read, only
  the Parquet files they add and only the columns gold.objects needs;
* versions that remove rows or add none (compaction, a night recomputed by ``replaceWhere``, a schema change) are
  skipped, as the streaming jobs skip them (``skipChangeCommits``): an alert already counted is not counted again;

keeps the rows of batches the quality gate passed or an operator released, reduces them to one row per object
(:func:`combine`) and MERGEs that into gold.objects (:func:`merge_objects`). The commit carries the Delta
transaction (``objects``, last silver version read), so a step re-run after a kill merges nothing twice, and the
table itself records how far it has got: there is no checkpoint folder.

gold.objects without that transaction (a new lake, or a table kept by an earlier release's Spark query) is
rebuilt from the silver snapshot (:func:`rebuild`), as it is when the versions to read are gone (VACUUMed while
the job was stopped for longer than the retention) and on demand (``--rebuild``, e.g. after a held batch was
released or a night recomputed).

The Spark query this replaces (Spark reading silver and computing the state per object, then delta-rs's MERGE)
took 38-48 s of a niced core every 2 minutes beside the real-time pipeline at 1,000 alerts/s; see
``docs/data-engineer.md`` for this job's figures.

    python -m jobs.objects [--trigger continuous|available-now] [--interval "30 seconds"] [--rebuild]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alertlake.lake import commit_once, delta_location, table_exists
from alertlake.serving import OBJECT_LATEST
from alertlake.settings import Settings, job_settings

log = logging.getLogger("alertlake.objects")

SILVER = "silver.alerts"
OBJECTS = "gold.objects"
#: Delta transaction app id of gold.objects' commits; its version is the last silver version merged.
APP_ID = "objects"
KEY = ("survey", "object_id")
#: Silver versions read by one step at most (a benchmark's 2 minutes at 1,000 alerts/s made ~25).
MAX_VERSIONS = 200
#: Rows a rebuild reduces at a time.
REBUILD_CHUNK_ROWS = 500_000


@functools.cache
def object_score_columns() -> list[str]:
    """Module outputs kept per object in gold.objects: classifications and scores (not the light-curve features).
    Found once per process: it imports every module's code."""
    from alertlake import modules

    return [
        c
        for m in modules.execution_order(list(modules.all_modules().values()))
        if m.name != "features"
        for c in m.outputs
    ]


def latest_columns(silver_columns: Collection[str]) -> list[str]:
    """Silver columns of an object's latest alert that gold.objects keeps: ``OBJECT_LATEST`` then module scores."""
    scores = object_score_columns()
    return [c for c in (*OBJECT_LATEST, *scores) if c in silver_columns]


def read_columns(silver_columns: Collection[str]) -> list[str]:
    """The silver columns a step reads."""
    extra = [c for c in (*KEY, "enrich_batch", "kafka_timestamp") if c in silver_columns]
    return list(dict.fromkeys([*extra, *latest_columns(silver_columns)]))


# --- state per object (pure pyarrow) --------------------------------------------------------------------------


def object_column(silver_column: str) -> str:
    """The gold.objects column of a silver column of the latest alert (``mjd`` -> ``last_mjd``; scores keep theirs)."""
    return f"last_{silver_column}" if silver_column in OBJECT_LATEST else silver_column


def as_states(rows: pa.Table, latest: Sequence[str]) -> pa.Table:
    """Each silver row as the state of its object if it were its only alert (gold.objects' columns but
    ``updated_at``): its columns as the latest, ``n_alerts`` 1, ``first_mjd`` its ``mjd``."""
    columns: dict[str, pa.ChunkedArray | pa.Array] = {k: rows[k] for k in KEY}
    for c in latest:
        columns[object_column(c)] = rows[c]
    columns["n_alerts"] = pa.array(np.ones(rows.num_rows, dtype=np.int64))
    columns["first_mjd"] = rows["mjd"]
    columns["last_kafka_timestamp"] = rows["kafka_timestamp"]
    return pa.table(columns)


def combine(states: pa.Table) -> pa.Table:
    """Reduce ``states`` to one per object, as gold.objects' MERGE would: the columns of the latest alert (greatest
    ``last_mjd``, then ``last_alert_id``), ``n_alerts`` summed, ``first_mjd`` the least, ``last_kafka_timestamp``
    the greatest. Columns keep their order."""
    if states.num_rows == 0:
        return states
    order = pc.sort_indices(
        states, sort_keys=[("last_mjd", "ascending", "at_start"), ("last_alert_id", "ascending", "at_start")]
    )
    ordered = states.take(order).append_column("_position", pa.array(np.arange(states.num_rows, dtype=np.int64)))
    grouped = ordered.group_by(list(KEY)).aggregate(
        [
            ("_position", "max"),
            ("n_alerts", "sum"),
            ("first_mjd", "min"),
            ("last_kafka_timestamp", "max"),
        ]
    )
    latest = ordered.take(grouped["_position_max"]).drop_columns(["_position"])
    for name, column in (
        ("n_alerts", grouped["n_alerts_sum"]),
        ("first_mjd", grouped["first_mjd_min"]),
        ("last_kafka_timestamp", grouped["last_kafka_timestamp_max"]),
    ):
        i = latest.schema.get_field_index(name)
        latest = latest.set_column(i, latest.schema.field(i), column.cast(latest.schema.field(i).type))
    return latest


def with_updated_at(states: pa.Table, now: dt.datetime) -> pa.Table:
    return states.append_column(
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.array([now] * states.num_rows, pa.timestamp("us", tz="UTC")),
    )


def passed_batches(settings: Settings) -> pa.Array:
    """Keys of the silver batches the quality gate passed or an operator released (fail closed: none if no table)."""
    from alertlake.quality import BATCHES, PASSED, RELEASED, read_table

    where = (pc.field("table") == SILVER) & pc.field("status").isin([PASSED, RELEASED])
    return read_table(settings, BATCHES, ["batch_key"], where).column("batch_key").combine_chunks()


def gated(rows: pa.Table, passed: pa.Array) -> pa.Table:
    """``rows`` of the batches in ``passed`` only (rows of batches never checked are not counted: fail closed)."""
    return rows.filter(pc.is_in(rows["enrich_batch"], value_set=passed))


# --- gold.objects -----------------------------------------------------------------------------------------------

#: How gold.objects takes a batch's state per object (``s``) into its row (``t``): the latest alert's columns
#: when the batch's latest alert is newer, and the counts always.
OBJECTS_KEY = "t.survey = s.survey AND t.object_id = s.object_id"
OBJECTS_NEWER = "s.last_mjd > t.last_mjd OR (s.last_mjd = t.last_mjd AND s.last_alert_id > t.last_alert_id)"
OBJECTS_COUNTS = {
    "n_alerts": "t.n_alerts + s.n_alerts",
    "first_mjd": "CASE WHEN t.first_mjd IS NULL OR s.first_mjd < t.first_mjd THEN s.first_mjd ELSE t.first_mjd END",
}


def merge_objects(
    settings: Settings, per_object: pa.Table, app_id: str, version: int, metadata: dict[str, Any] | None = None
) -> bool:
    """MERGE ``per_object`` (one row per survey and object, gold.objects' columns) into gold.objects with
    delta-rs, at most once per (``app_id``, ``version``) (:func:`alertlake.lake.commit_once`, the Delta transaction
    Spark's ``txnAppId``/``txnVersion`` would write). Returns False when that version was already merged. Module
    outputs new to the table are added as columns (schema evolution); concurrent commits (maintenance) are retried.
    An empty ``per_object`` still commits the transaction (an empty append), so the versions read are not read
    again."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    location = delta_location(settings, OBJECTS)
    keep = {"survey", "object_id", "n_alerts", "first_mjd"}
    latest = {c: f"s.`{c}`" for c in per_object.column_names if c not in keep}

    def merge(properties: CommitProperties) -> None:
        table = DeltaTable(location)
        if per_object.num_rows == 0:  # delta-rs commits nothing for an empty MERGE
            empty = pa.schema(table.schema().to_arrow()).empty_table()
            write_deltalake(location, empty, mode="append", commit_properties=properties)
            return
        (
            table.merge(
                per_object,
                predicate=OBJECTS_KEY,
                source_alias="s",
                target_alias="t",
                merge_schema=True,
                commit_properties=properties,
            )
            .when_matched_update(updates={**latest, **OBJECTS_COUNTS}, predicate=OBJECTS_NEWER)
            .when_matched_update(updates=OBJECTS_COUNTS)
            .when_not_matched_insert_all()
            .execute()
        )

    return commit_once(settings, OBJECTS, app_id, version, merge, metadata)


def merged_version(settings: Settings) -> int | None:
    """The last silver version merged into gold.objects (None: no table, or not kept by this job yet)."""
    from deltalake import DeltaTable

    if not table_exists(settings, OBJECTS):
        return None
    return DeltaTable(delta_location(settings, OBJECTS)).transaction_version(APP_ID)


# --- reading silver's new versions --------------------------------------------------------------------------------


@dataclass
class Commit:
    """One silver version as this job sees it: the data files it appends, or why it is skipped."""

    version: int
    operation: str
    files: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)  # (path, partition values)
    skipped: str | None = None


class LogGone(Exception):
    """Silver versions to read are no longer in its log or their files were deleted: rebuild instead."""


def _filesystem(settings: Settings, name: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path of table ``name`` in it): local folder or object store (credentials from the
    environment, as delta-rs takes them)."""
    from pyarrow import fs

    location = delta_location(settings, name)
    if "://" not in location:
        return fs.LocalFileSystem(), location
    return fs.FileSystem.from_uri(location)


def parse_commit(version: int, lines: Sequence[str]) -> Commit:
    """What version ``version`` of silver (the JSON lines of its Delta log entry) means to gold.objects."""
    operation, adds, changes = "UNKNOWN", [], False
    for line in lines:
        if not line.strip():
            continue
        action = json.loads(line)
        if "commitInfo" in action:
            operation = str(action["commitInfo"].get("operation", operation))
        elif "add" in action and action["add"].get("dataChange", True):
            add = action["add"]
            if add.get("deletionVector"):
                raise ValueError(f"{SILVER} version {version} appends a file with a deletion vector: not supported")
            adds.append((unquote(add["path"]), add.get("partitionValues") or {}))
        elif "remove" in action and action["remove"].get("dataChange", True):
            changes = True
        elif "metaData" in action:
            mode = (action["metaData"].get("configuration") or {}).get("delta.columnMapping.mode", "none")
            if mode != "none":
                raise ValueError(f"{SILVER} uses column mapping ({mode}) from version {version}: not supported")
    if changes:
        return Commit(version, operation, skipped=f"{operation} removes or replaces rows")
    if not adds:
        return Commit(version, operation, skipped=f"{operation} adds no alerts")
    return Commit(version, operation, files=adds)


def read_commits(settings: Settings, after: int, until: int) -> list[Commit]:
    """Silver versions ``after`` (excluded) to ``until``, read from the Delta log."""
    filesystem, root = _filesystem(settings, SILVER)
    commits = []
    for version in range(after + 1, until + 1):
        path = f"{root}/_delta_log/{version:020d}.json"
        try:
            with filesystem.open_input_stream(path) as stream:
                lines = stream.read().decode().splitlines()
        except FileNotFoundError as exc:
            raise LogGone(f"{SILVER} version {version} is no longer in the Delta log ({path})") from exc
        commits.append(parse_commit(version, lines))
    return commits


def read_files(settings: Settings, commits: Sequence[Commit], schema: pa.Schema) -> pa.Table:
    """The rows the ``commits`` append, with ``schema``'s columns and types (partition columns from the log;
    columns older files lack as nulls)."""
    import pyarrow.parquet as pq

    filesystem, root = _filesystem(settings, SILVER)
    parts = [schema.empty_table()]
    for commit in commits:
        for relative, partition in commit.files:
            path = relative if "://" in relative else f"{root}/{relative}"
            try:
                parquet = pq.ParquetFile(filesystem.open_input_file(path))
            except FileNotFoundError as exc:
                raise LogGone(f"{SILVER} version {commit.version}: file {relative} was deleted (VACUUM)") from exc
            present = set(parquet.schema_arrow.names)
            data = parquet.read(columns=[c for c in schema.names if c in present and c not in partition])
            columns = []
            for f in schema:
                if f.name in partition:
                    columns.append(pa.array([partition[f.name]] * data.num_rows, pa.string()).cast(f.type))
                elif f.name in present:
                    columns.append(data[f.name].cast(f.type))
                else:
                    columns.append(pa.nulls(data.num_rows, f.type))
            parts.append(pa.table(columns, schema=schema))
    return pa.concat_tables(parts)


# --- one step ---------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """What one step did."""

    merged_through: int  # last silver version in gold.objects after the step
    head: int  # silver's last version when the step started
    alerts: int = 0  # silver rows read (appended, passed the gate)
    objects: int = 0  # rows MERGEd
    skipped: list[str] = field(default_factory=list)
    rebuilt: str | None = None  # why the table was rebuilt from the snapshot
    created: bool = False
    seconds: float = 0.0

    @property
    def caught_up(self) -> bool:
        return self.merged_through >= self.head


def step(settings: Settings, max_versions: int = MAX_VERSIONS, rebuild_now: bool = False) -> Step | None:
    """Merge the next silver versions (``max_versions`` at most) into gold.objects; None when silver does not exist.

    ``rebuild_now``: rebuild gold.objects from the silver snapshot instead."""
    from deltalake import DeltaTable

    t0 = time.monotonic()
    if not table_exists(settings, SILVER):
        return None
    silver = DeltaTable(delta_location(settings, SILVER))
    head = silver.version()
    done = merged_version(settings)
    if rebuild_now or done is None:
        existed = table_exists(settings, OBJECTS)
        why = "asked for" if rebuild_now else ("new table" if not existed else f"no '{APP_ID}' transaction in it")
        return rebuild(settings, silver, why, existed, t0)
    if done >= head:
        return Step(done, head, seconds=time.monotonic() - t0)
    until = min(head, done + max_versions)
    schema = pa.schema(silver.schema().to_arrow())
    wanted = pa.schema([schema.field(c) for c in read_columns(schema.names)])
    try:
        commits = read_commits(settings, done, until)
        rows = read_files(settings, [c for c in commits if c.skipped is None], wanted)
    except LogGone as exc:
        log.warning("%s; rebuilding %s from silver's snapshot", exc, OBJECTS)
        return rebuild(settings, silver, str(exc), True, t0)  # merged_version found the table
    skipped = [f"{c.version}: {c.skipped}" for c in commits if c.skipped]
    for line in skipped:
        log.info("silver version %s: skipped", line)
    rows = gated(rows, passed_batches(settings))
    states = with_updated_at(combine(as_states(rows, latest_columns(wanted.names))), dt.datetime.now(dt.UTC))
    meta = {"job": APP_ID, "silver_versions": [done + 1, until], "alerts": rows.num_rows, "objects": states.num_rows}
    merge_objects(settings, states, APP_ID, until, meta)
    return Step(until, head, rows.num_rows, states.num_rows, skipped, seconds=time.monotonic() - t0)


def rebuild(settings: Settings, silver: Any, why: str, existed: bool, t0: float | None = None) -> Step:
    """Replace gold.objects by the state of every object in ``silver`` (a delta-rs table at the version to
    rebuild from), gate applied, with the transaction (``objects``, that version): one overwrite commit."""
    from deltalake import write_deltalake

    t0 = time.monotonic() if t0 is None else t0
    version = silver.version()
    schema = pa.schema(silver.schema().to_arrow())
    columns = read_columns(schema.names)
    latest = latest_columns(schema.names)
    passed = passed_batches(settings)
    empty = pa.schema([schema.field(c) for c in columns]).empty_table()
    state, pending, alerts = combine(as_states(empty, latest)), [], 0
    for batch in silver.to_pyarrow_dataset().to_batches(columns=columns):
        rows = gated(pa.Table.from_batches([batch]), passed)
        alerts += rows.num_rows
        pending.append(as_states(rows, latest))
        if sum(p.num_rows for p in pending) >= REBUILD_CHUNK_ROWS:
            state, pending = combine(pa.concat_tables([state, *pending])), []
    state = combine(pa.concat_tables([state, *pending]))
    state = with_updated_at(state, dt.datetime.now(dt.UTC))
    location = delta_location(settings, OBJECTS)

    def overwrite(properties: Any) -> None:
        write_deltalake(location, state, mode="overwrite", schema_mode="overwrite", commit_properties=properties)

    meta = {"job": APP_ID, "rebuilt_from_silver_version": version, "why": why, "alerts": alerts}
    commit_once(settings, OBJECTS, APP_ID, version, overwrite, meta)
    log.info("%s rebuilt from silver version %d (%s): %d alerts, %d objects", OBJECTS, version, why, alerts, len(state))
    seconds = time.monotonic() - t0
    return Step(version, version, alerts, state.num_rows, rebuilt=why, created=not existed, seconds=seconds)


# --- running ----------------------------------------------------------------------------------------------------

_UNITS = {
    **dict.fromkeys(("ms", "millisecond", "milliseconds"), 0.001),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hour", "hours"), 3600.0),
}


def parse_interval(text: str) -> float:
    """Seconds in an interval written as Spark's triggers take it: ``"30 seconds"``, ``"2 minutes"``, ``"500 ms"``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"interval {text!r}: expected a number and a unit (ms, seconds, minutes, hours)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def keep_current(
    settings: Settings,
    interval: float = 30.0,
    bounded: bool = False,
    timeout: float = 0,
    halt: threading.Event | None = None,
    rebuild_first: bool = False,
) -> list[Step]:
    """Step until ``halt`` is set or ``timeout`` seconds have passed (0: no limit), every ``interval`` seconds once
    caught up (at once while behind); ``bounded``: until caught up with silver's version at the start, then return.
    Continuous, it waits for silver to exist; bounded, it fails when silver does not exist."""
    halt = halt or threading.Event()
    deadline = time.monotonic() + timeout if timeout else None
    target: int | None = None
    steps: list[Step] = []
    waited = 0
    while not halt.is_set() and (deadline is None or time.monotonic() < deadline):
        done = step(settings, rebuild_now=rebuild_first and not steps)
        if done is None:
            if bounded:
                raise RuntimeError(f"{SILVER} does not exist yet: run the enrichment job or the pipeline first")
            if waited % 12 == 0:
                log.info("waiting for %s (created by the enrichment job or the pipeline)", SILVER)
            waited += 1
            halt.wait(5)
            continue
        steps.append(done)
        if done.objects or done.rebuilt or not done.caught_up:
            log.info(
                "%s: silver versions through %d of %d merged, %d alerts -> %d objects in %.2f s",
                OBJECTS,
                done.merged_through,
                done.head,
                done.alerts,
                done.objects,
                done.seconds,
            )
        if done.created:
            from alertlake import trino

            trino.register_tables(settings, [OBJECTS])
        target = done.head if target is None else target
        if bounded and done.merged_through >= target:
            break
        if done.caught_up:
            halt.wait(interval)
    return steps


class ObjectsThread(threading.Thread):
    """:func:`keep_current` in a thread of a Spark job, shaped like a ``StreamingQuery`` for
    :func:`alertlake.spark.supervise` (``name``, ``isActive``, ``exception()``, ``stop()``)."""

    def __init__(self, settings: Settings, interval: float, bounded: bool) -> None:
        super().__init__(name=f"{OBJECTS} ({APP_ID})", daemon=True)
        self._args = (settings, interval, bounded)
        self._halt = threading.Event()
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            keep_current(*self._args, halt=self._halt)
        except Exception as exc:  # reported through exception(), as a failed query's is
            log.exception("%s failed", OBJECTS)
            self._error = exc

    @property
    def isActive(self) -> bool:  # StreamingQuery's name
        return self.is_alive()

    def exception(self) -> BaseException | None:
        return self._error

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=120)


def start(settings: Settings, trigger: str, interval: str) -> ObjectsThread:
    """Keep gold.objects current in a thread of the calling job (``trigger`` ``continuous`` or ``available-now``)."""
    thread = ObjectsThread(settings, parse_interval(interval), trigger == "available-now")
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (the real-time DAG runs it beside the pipeline at the lowest CPU priority)."""
    parser = argparse.ArgumentParser(description="silver.alerts -> gold.objects (one row per object), no Spark")
    parser.add_argument("--trigger", choices=["continuous", "available-now"], default="continuous")
    parser.add_argument("--interval", default="30 seconds", help="continuous: how often, once caught up")
    parser.add_argument("--timeout", type=float, default=0, help="continuous: stop after this many seconds")
    parser.add_argument("--rebuild", action="store_true", help="first rebuild gold.objects from the silver snapshot")
    parser.add_argument(
        "--no-trino",
        action="store_true",
        help="do not register gold.objects in Trino: a throw-away lake (env ALERTLAKE_TRINO_REGISTER=false)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = job_settings(args.no_trino)
    try:
        steps = keep_current(
            settings,
            parse_interval(args.interval),
            bounded=args.trigger == "available-now",
            timeout=args.timeout,
            rebuild_first=args.rebuild,
        )
    except (RuntimeError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    last = steps[-1] if steps else None
    print(json.dumps({"steps": len(steps), "merged_through": last.merged_through if last else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
