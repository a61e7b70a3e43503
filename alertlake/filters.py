"""Filters: the contract every filter implements, and the registry that finds and checks them.

A filter selects the silver alerts a community wants in its stream. It is one file ``filters/<name>.py``
defining ``FILTER = Filter(...)`` with

* ``name`` (equal to the file name; snake_case) and a one-paragraph ``description``,
* ``surveys`` it applies to, and its topic, ``alertlake.<survey>.<name>`` by default (one topic per survey, so a
  stream's messages all share one schema),
* a vectorised predicate over silver rows, one of
    - ``predicate``: a Python function ``pandas.DataFrame -> boolean Series`` that reads only the declared
      ``columns`` (the registry hands it exactly those, so a missing declaration fails at load), or
    - ``sql``: a Spark SQL boolean expression over silver columns (``sso_flag AND quality_pass``). Spark
      evaluates it inside the distribution job's batch query (:func:`sql_flag_columns`); the registry checks
      its columns at load and :func:`check_sql_with_spark` checks it fully against the table's schema.

A null or NA result means "not selected". Loading never stops at a bad filter: a file that does not import
(syntax error), breaks the contract, or reads a column silver does not have is *rejected* with a message naming
the filter and the problem (:attr:`FilterSet.rejected`), and every other filter keeps running.
"""

from __future__ import annotations

import importlib.util
import keyword
import logging
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alertlake.settings import REPO_ROOT

if TYPE_CHECKING:
    from pyspark.sql import Column, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

#: Where filter files live, one per filter.
FILTERS_DIR = REPO_ROOT / "filters"
#: Surveys a filter applies to unless it says otherwise.
SURVEYS: tuple[str, ...] = ("ztf", "lsst")
#: Default topic of a filter: one per survey, so all messages of a topic share one Avro schema.
DEFAULT_TOPIC = "alertlake.{survey}.{name}"
#: Prefix of the Spark columns holding SQL filters' results inside the distribution job's batch query.
SQL_FLAG_PREFIX = "__filter_"
#: Columns of ``silver.alerts`` written by the enrichment job itself (beside canonical, quality and modules).
SILVER_JOB_COLUMNS: tuple[str, ...] = ("kafka_timestamp", "enrich_batch", "enrich_time")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Words of Spark SQL boolean expressions that are not column names.
_SQL_WORDS = frozenset(
    """and or not is null true false in between like rlike ilike case when then else end cast as distinct
    from interval array map struct date timestamp string double float int bigint boolean long any some all
    exists div escape""".split()
)


class FilterError(Exception):
    """A filter breaks the contract; the message names the filter and what to fix."""


Predicate = Callable[[pd.DataFrame], "pd.Series[bool]"]


@dataclass(frozen=True)
class Filter:
    """One filter: what it selects, from which surveys, into which topic (see the module docstring)."""

    name: str
    description: str
    predicate: Predicate | None = None
    sql: str | None = None
    columns: tuple[str, ...] = ()
    surveys: tuple[str, ...] = SURVEYS
    topic_pattern: str = DEFAULT_TOPIC
    source: Path | None = field(default=None, compare=False)

    def topic(self, survey: str, suffix: str = "") -> str:
        """The Kafka topic of this filter for ``survey`` (``suffix`` e.g. ``.replay-2026-01-05`` for replays)."""
        return self.topic_pattern.format(survey=survey, name=self.name) + suffix

    def topics(self) -> dict[str, str]:
        """Topic per survey this filter applies to."""
        return {s: self.topic(s) for s in self.surveys}

    @property
    def kind(self) -> str:
        """``sql`` or ``python``."""
        return "sql" if self.sql is not None else "python"

    @property
    def flag_column(self) -> str:
        """Name of the Spark column that holds this (SQL) filter's result in the distribution job."""
        return f"{SQL_FLAG_PREFIX}{self.name}"

    def read_columns(self) -> tuple[str, ...]:
        """Silver columns the filter reads (declared for Python, parsed from the expression for SQL), plus survey."""
        cols = sql_identifiers(self.sql) if self.sql is not None else self.columns
        return tuple(dict.fromkeys(("survey", *cols)))


@dataclass
class FilterSet:
    """The filters that loaded (by name, sorted) and the ones rejected (name -> reason)."""

    filters: dict[str, Filter]
    rejected: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Any:
        return iter(self.filters.values())

    def __len__(self) -> int:
        return len(self.filters)

    def __getitem__(self, name: str) -> Filter:
        try:
            return self.filters[name]
        except KeyError:
            known = ", ".join(self.filters) or "none"
            why = f" (it was rejected: {self.rejected[name]})" if name in self.rejected else ""
            raise KeyError(f"unknown filter {name!r}{why}; loaded filters: {known}") from None

    def topics(self) -> dict[tuple[str, str], str]:
        """Every live topic: (survey, filter name) -> topic."""
        return {(s, f.name): t for f in self for s, t in f.topics().items()}


# --- silver columns -------------------------------------------------------------------------------------------


@cache
def silver_columns() -> tuple[str, ...]:
    """Columns of ``silver.alerts`` as the enrichment job writes them: canonical, quality cuts, module outputs,
    per-module provenance and the job's own columns. Filters may read any of them."""
    from alertlake import modules

    mods = list(modules.all_modules().values())
    provenance = [f"{m.name}{suffix}" for m in mods for suffix in modules.RESERVED_SUFFIXES]
    outputs = [c for m in mods for c in m.outputs]
    return tuple(dict.fromkeys([*modules.BASE_COLUMNS, *outputs, *provenance, *SILVER_JOB_COLUMNS]))


def sql_identifiers(expression: str) -> tuple[str, ...]:
    """Column names an SQL boolean expression reads (identifiers that are neither keywords nor function calls)."""
    text = re.sub(r"'(?:[^']|'')*'", " ", expression)  # string literals
    names = []
    for match in re.finditer(r"`([^`]+)`|\b([A-Za-z_][A-Za-z0-9_]*)\b(\s*\()?", text):
        quoted, word, call = match.groups()
        if quoted:
            names.append(quoted)
        elif word and not call and word.lower() not in _SQL_WORDS and not re.fullmatch(r"\d.*", word):
            names.append(word)
    return tuple(dict.fromkeys(names))


# --- checks ---------------------------------------------------------------------------------------------------


def _probe_frame(columns: Sequence[str]) -> pd.DataFrame:
    """Two rows of nulls with every declared column: a predicate must run on it and return booleans."""
    return pd.DataFrame({c: pd.Series([None, None], dtype=object) for c in columns})


def check(flt: Any, known_columns: Iterable[str], expected_name: str | None = None) -> Filter:
    """Return ``flt`` if it honours the contract, else raise :class:`FilterError` saying what is wrong."""
    if not isinstance(flt, Filter):
        raise FilterError(f"FILTER must be an alertlake.filters.Filter, got {type(flt).__name__}")
    where = f"filter {flt.name!r}"
    if not _NAME.match(flt.name or ""):
        raise FilterError(f"{where}: name must be lower-case snake_case")
    if expected_name is not None and flt.name != expected_name:
        raise FilterError(f"{where}: name must equal its file name {expected_name!r}")
    if not flt.description.strip():
        raise FilterError(f"{where}: description is empty")
    if (flt.predicate is None) == (flt.sql is None):
        raise FilterError(f"{where}: give exactly one of predicate (Python) or sql (expression)")
    unknown_surveys = sorted(set(flt.surveys) - set(SURVEYS))
    if not flt.surveys or unknown_surveys:
        raise FilterError(f"{where}: surveys must be a non-empty subset of {SURVEYS}, got {flt.surveys}")
    try:
        topic = flt.topic("ztf")
    except (KeyError, IndexError) as exc:
        raise FilterError(f"{where}: topic_pattern {flt.topic_pattern!r} may only use {{survey}} and {{name}}") from exc
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,200}", topic):
        raise FilterError(f"{where}: topic {topic!r} is not a valid Kafka topic name")
    known = set(known_columns)
    if flt.sql is not None:
        if flt.sql.count("(") != flt.sql.count(")") or not flt.sql.strip():
            raise FilterError(f"{where}: SQL expression {flt.sql!r} is malformed (unbalanced parentheses or empty)")
        unknown = [c for c in sql_identifiers(flt.sql) if c not in known]
        if unknown:
            raise FilterError(f"{where}: SQL expression reads unknown column(s) {unknown}; silver has no such column")
        return flt
    unknown = [c for c in flt.columns if c not in known]
    if unknown:
        raise FilterError(f"{where}: declares unknown column(s) {unknown}; silver has no such column")
    if not flt.columns:
        raise FilterError(f"{where}: a Python predicate must declare the columns it reads")
    try:
        result = run_predicate(flt, _probe_frame(flt.read_columns()))
    except FilterError:
        raise
    except KeyError as exc:
        raise FilterError(
            f"{where}: predicate reads column {exc.args[0]!r}, which is not among its declared columns "
            f"{list(flt.columns)} (declare it, if silver has it)"
        ) from exc
    except Exception as exc:
        raise FilterError(f"{where}: predicate fails on null values: {type(exc).__name__}: {exc}") from exc
    if len(result) != 2:
        raise FilterError(f"{where}: predicate must return one value per row")
    return flt


def _import_filter_file(path: Path) -> Any:
    module_name = f"alertlake_filter_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FilterError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        raise FilterError(f"syntax error in {path} line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise FilterError(f"{path} fails on import: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, "FILTER"):
        raise FilterError(f"{path} defines no FILTER = Filter(...)")
    return module.FILTER


def load_filters(
    filters_dir: Path = FILTERS_DIR,
    only: Iterable[str] | None = None,
    columns: Iterable[str] | None = None,
) -> FilterSet:
    """Load and check every ``filters_dir/<name>.py`` (or just the names in ``only``).

    ``columns`` are the silver columns filters may read (default :func:`silver_columns`; the job passes the
    table's real columns). Bad filters are logged and listed in ``rejected``, never raised.
    """
    known = tuple(columns) if columns is not None else silver_columns()
    wanted = set(only) if only is not None else None
    loaded: dict[str, Filter] = {}
    rejected: dict[str, str] = {}
    for path in sorted(filters_dir.glob("*.py")):
        name = path.stem
        if name.startswith(("_", "test_")) or name == "conftest" or (wanted is not None and name not in wanted):
            continue
        try:
            flt = check(_import_filter_file(path), known, expected_name=name)
        except FilterError as exc:
            rejected[name] = str(exc)
            log.error("filter %r rejected: %s", name, exc)
            continue
        loaded[name] = Filter(**{**flt.__dict__, "source": path})
    if wanted is not None:
        for name in sorted(wanted - set(loaded) - set(rejected)):
            rejected[name] = f"no file {filters_dir / (name + '.py')}"
    return FilterSet(loaded, rejected)


def check_sql_with_spark(spark: SparkSession, filters: FilterSet, schema: StructType) -> FilterSet:
    """Analyse every SQL filter with Spark against ``schema``; move the ones Spark rejects to ``rejected``."""
    from pyspark.sql import functions as F

    empty = spark.createDataFrame([], schema)
    kept: dict[str, Filter] = {}
    rejected = dict(filters.rejected)
    for flt in filters:
        if flt.sql is not None:
            try:
                empty.select(F.expr(flt.sql).cast("boolean")).schema  # noqa: B018 - analysis only, no job
            except Exception as exc:  # noqa: BLE001 - Spark's ParseException/AnalysisException
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                rejected[flt.name] = f"filter {flt.name!r}: Spark rejects SQL expression {flt.sql!r}: {first}"
                log.error("filter %r rejected: %s", flt.name, rejected[flt.name])
                continue
        kept[flt.name] = flt
    return FilterSet(kept, rejected)


# --- evaluation -----------------------------------------------------------------------------------------------


def sql_flag_columns(filters: Iterable[Filter]) -> list[Column]:
    """Spark columns computing every SQL filter (null -> false), named :attr:`Filter.flag_column`."""
    from pyspark.sql import functions as F

    return [
        F.coalesce(F.expr(f.sql).cast("boolean"), F.lit(False)).alias(f.flag_column)
        for f in filters
        if f.sql is not None
    ]


def run_predicate(flt: Filter, frame: pd.DataFrame) -> np.ndarray:
    """The filter's raw result on ``frame`` as a boolean array (null -> False), ignoring its survey list.

    Python predicates see only their declared columns; SQL filters read their precomputed flag column.
    """
    if flt.sql is not None:
        if flt.flag_column not in frame:
            raise FilterError(
                f"filter {flt.name!r} is SQL: evaluate it with Spark first (sql_flag_columns) so the frame "
                f"has column {flt.flag_column!r}"
            )
        return _to_bool_array(frame[flt.flag_column])
    assert flt.predicate is not None
    view = frame[list(flt.read_columns())]
    result = flt.predicate(view)
    if not isinstance(result, pd.Series | np.ndarray):
        raise FilterError(f"filter {flt.name!r}: predicate returned {type(result).__name__}, not a boolean Series")
    if len(result) != len(frame):
        raise FilterError(f"filter {flt.name!r}: predicate returned {len(result)} values for {len(frame)} rows")
    return _to_bool_array(result)


def _to_bool_array(values: pd.Series | np.ndarray) -> np.ndarray:
    """Booleans with null/NA as False."""
    return np.asarray(pd.array(np.asarray(values, dtype=object), dtype="boolean").fillna(False), dtype=bool)


def evaluate(filters: Iterable[Filter], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Which rows of ``frame`` each filter selects (restricted to its surveys): name -> boolean array.

    A filter that raises on this frame selects nothing here and is logged with its traceback; the others are
    unaffected (its rows can be sent later with ``alertlake replay filter``).
    """
    out: dict[str, np.ndarray] = {}
    surveys = frame["survey"].to_numpy(dtype=object) if len(frame) else np.array([], dtype=object)
    for flt in filters:
        try:
            hit = run_predicate(flt, frame) if len(frame) else np.zeros(0, dtype=bool)
        except Exception as exc:  # noqa: BLE001 - one broken filter must not stop the others
            log.error(
                "filter %r failed on a batch of %d alerts (%s: %s); it selects nothing in this batch\n%s",
                flt.name,
                len(frame),
                type(exc).__name__,
                exc,
                traceback.format_exc(),
            )
            hit = np.zeros(len(frame), dtype=bool)
        out[flt.name] = hit & np.isin(surveys, list(flt.surveys))
    return out


def selected_ids(filters: Iterable[Filter], frame: pd.DataFrame, id_column: str = "alert_id") -> dict[str, list[Any]]:
    """The sorted ``id_column`` values each filter selects in ``frame`` (tests and replays read this)."""
    ids = frame[id_column].to_numpy()
    return {name: sorted(ids[mask].tolist()) for name, mask in evaluate(filters, frame).items()}


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def history_column(frame: pd.DataFrame) -> pd.Series:
    """The ``history`` column as lists (empty for null), whatever container Arrow/pandas handed over."""
    return frame["history"].map(lambda h: [] if _is_missing(h) else list(h))


@dataclass(frozen=True)
class History:
    """Every history entry of a frame's alerts, flattened for vectorised predicates (no Python object per entry).

    ``row[k]`` is the position (0..n-1 in the frame) of the alert entry ``k`` belongs to; ``field(name)`` is that
    field of every entry as a NumPy array (floats with NaN for null, objects for strings).
    """

    row: np.ndarray
    entries: Any  # pyarrow StructArray

    def field(self, name: str) -> np.ndarray:
        import pyarrow as pa

        if len(self.entries) == 0:
            return np.zeros(0)
        values = self.entries.field(name)
        if pa.types.is_floating(values.type) or pa.types.is_integer(values.type):
            return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)

    def per_row(self, selected: np.ndarray, n: int) -> np.ndarray:
        """How many entries of each of the ``n`` alerts satisfy the boolean entry mask ``selected``."""
        return np.bincount(self.row[selected], minlength=n)[:n]


def history_entries(frame: pd.DataFrame) -> History:
    """The frame's ``history`` flattened (:class:`History`). Arrow-backed columns (the distribution job hands
    them over so) are read in place; a column of Python lists is converted first."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = frame["history"]
    if isinstance(column.dtype, pd.ArrowDtype):
        array = pa.chunked_array(column.array._pa_array).combine_chunks()
    else:
        array = pa.array(history_column(frame).tolist())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0 or pa.types.is_null(array.type) or pa.types.is_null(array.type.value_type):
        return History(np.zeros(0, dtype=np.int64), pa.array([], pa.null()))
    return History(np.asarray(pc.list_parent_indices(array).to_numpy(), dtype=np.int64), pc.list_flatten(array))


def as_bool(series: pd.Series) -> pd.Series:
    """A boolean column with nulls as False (predicates combine flags with ``&``)."""
    return series.astype("boolean").fillna(False).astype(bool)


def as_float(series: pd.Series) -> pd.Series:
    """A float column with nulls as NaN (comparisons with NaN are False)."""
    return pd.to_numeric(series, errors="coerce").astype(float)


def describe(filters: Mapping[str, Filter] | FilterSet) -> list[dict[str, str]]:
    """One row per filter (name, kind, surveys, topics, description) for listings."""
    items = filters.filters.values() if isinstance(filters, FilterSet) else filters.values()
    return [
        {
            "name": f.name,
            "kind": f.kind,
            "surveys": ",".join(f.surveys),
            "topics": ", ".join(f.topics().values()),
            "description": f.description,
        }
        for f in items
    ]


def is_identifier(name: str) -> bool:
    """True when ``name`` can be a filter name (snake_case, not a Python keyword)."""
    return bool(_NAME.match(name)) and not keyword.iskeyword(name)
