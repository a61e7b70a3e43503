"""Science modules: the contract every module implements, the registry that finds them, and their life in MLflow.

A science module is one folder ``modules/<name>/`` whose ``module.py`` defines one :class:`ScienceModule`
subclass. Names are one scheme everywhere: ``name`` (snake_case, equal to the folder name) is

* the MLflow registered model name (``models:/<name>@champion``),
* the prefix of every output column (``xmatch_vsx_type``, ``sso_flag``), so two modules never write the
  same column and a reader finds a column's producer by its name,
* the prefix of the provenance columns the enrichment job adds: ``<name>_version``, ``<name>_model_uri``
  and ``<name>_error`` (reserved; a module may not declare them).

A module reads canonical columns (:mod:`alertlake.surveys.canonical`), the quality-cut columns, or other
modules' outputs; :func:`execution_order` sorts modules so every input exists before it is read. A module's
configuration is a typed :class:`ModuleParams` whose hash goes into provenance. Data a module needs (a
catalogue index, trained weights) is built by :meth:`ScienceModule.build` at registration and shipped as MLflow
artifacts, so a registered version loads and predicts anywhere without the shared data folder.

The enrichment job calls :func:`load` once per run and :func:`run_module_safely` per batch.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import importlib.metadata
import json
import logging
import shutil
import sys
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from alertlake.settings import REPO_ROOT, get_settings
from alertlake.surveys.canonical import COLUMN_NAMES, HISTORY_ENTRY

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

#: Where module folders live. A folder holds ``module.py`` (the class), its tests and, if any, ``train.py``.
MODULES_DIR = REPO_ROOT / "modules"
#: Columns every module may read without depending on another module: canonical + quality cuts.
BASE_COLUMNS: tuple[str, ...] = (*COLUMN_NAMES, "quality_pass", "quality_reason")
#: Column suffixes the enrichment job writes per module; a module may not declare them as outputs.
RESERVED_SUFFIXES: tuple[str, ...] = ("_version", "_model_uri", "_error")
#: MLflow aliases the broker uses: the version the stream runs, and the one being evaluated against it.
ALIASES: tuple[str, ...] = ("champion", "challenger")
#: MLflow experiment holding one run per registration.
REGISTRATION_EXPERIMENT = "alertlake-modules"


@dataclass(frozen=True)
class OutputType:
    """One allowed output type: its Spark SQL name, Arrow type, MLflow type and the pandas dtypes accepted."""

    spark: str
    arrow: pa.DataType
    mlflow: str
    pandas: frozenset[str]
    null_dtype: str  # the pandas dtype of an all-null column of this type


#: Output types a module may declare, by Spark SQL name. Nullable pandas dtypes are accepted everywhere so a
#: module can return nulls for rows it cannot compute.
OUTPUT_TYPES: dict[str, OutputType] = {
    t.spark: t
    for t in (
        OutputType("double", pa.float64(), "double", frozenset({"float64", "Float64"}), "float64"),
        OutputType("float", pa.float32(), "float", frozenset({"float32", "Float32"}), "float32"),
        OutputType("int", pa.int32(), "integer", frozenset({"int32", "Int32"}), "Int32"),
        OutputType("bigint", pa.int64(), "long", frozenset({"int64", "Int64"}), "Int64"),
        OutputType("boolean", pa.bool_(), "boolean", frozenset({"bool", "boolean"}), "boolean"),
        OutputType("string", pa.string(), "string", frozenset({"object", "string"}), "object"),
    )
}


class ModuleError(Exception):
    """A module breaks the contract (bad declaration, outputs that differ from the declaration, ...)."""


class OutputMismatch(ModuleError):
    """What a module returned differs from what it declared."""


class MlflowUnreachable(RuntimeError):
    """The MLflow tracking server does not answer."""


class ModuleParams(BaseModel):
    """Base of a module's configuration: typed, immutable, and hashed into provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def params_hash(self) -> str:
        """A short stable hash of the values (sorted JSON), recorded with every registration."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class BuildResult:
    """What :meth:`ScienceModule.build` produced: artifact files, and metrics/parameters/tags to log with them."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class ScienceModule(ABC):
    """The contract of a science module. Subclasses declare the class variables and implement :meth:`predict`.

    Life cycle: ``module = Cls(params)``; ``result = module.build(workdir)`` makes the artifacts (at
    registration only); ``module.load(result.artifacts)`` reads them (at registration and whenever MLflow loads
    the model); then ``module.predict(batch)`` any number of times. Modules without data skip build and load.
    """

    #: Module name: folder name, MLflow registered model name and output-column prefix (see the module doc).
    name: ClassVar[str]
    #: One line on what this version does differently; logged with each registration.
    version_note: ClassVar[str] = ""
    #: Columns read: canonical, quality-cut, or other modules' outputs.
    inputs: ClassVar[list[str]]
    #: Columns written -> Spark SQL type (a key of :data:`OUTPUT_TYPES`).
    outputs: ClassVar[dict[str, str]]
    #: The configuration model; its defaults are the registered configuration unless overridden.
    Params: ClassVar[type[ModuleParams]] = ModuleParams

    def __init__(self, params: ModuleParams | Mapping[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif not isinstance(params, ModuleParams):
            params = self.Params.model_validate(dict(params))
        if not isinstance(params, self.Params):
            raise ModuleError(f"module {self.name!r} expects params of type {self.Params.__name__}")
        self.params = params

    @classmethod
    def upstream_columns(cls) -> list[str]:
        """Inputs that are neither canonical nor quality-cut columns: other modules must produce them."""
        return [c for c in cls.inputs if c not in BASE_COLUMNS]

    @classmethod
    def depends_on(cls) -> list[str]:
        """Names of the registered modules producing this module's upstream columns (derived from ``inputs``)."""
        producers = _producers(all_modules().values())
        return sorted({producers[c] for c in cls.upstream_columns() if c in producers})

    def build(self, workdir: Path) -> BuildResult:
        """Make the artifacts (catalogue index, trained weights) into ``workdir``. Default: none."""
        return BuildResult()

    def load(self, artifacts: Mapping[str, Path]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Read the artifacts made by :meth:`build` (local paths by artifact name). Default: nothing to read."""

    @abstractmethod
    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """Return exactly the declared output columns for ``alerts``: same rows, same index. Pure, vectorised."""

    def prepare(self, workdir: Path | None = None) -> ScienceModule:
        """Build and load in one step (tests, benchmarks, local runs); returns ``self``."""
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"alertlake-{self.name}-"))
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)  # the module may read it until then
        self.load(self.build(workdir).artifacts)
        return self

    def empty_outputs(self, index: pd.Index) -> pd.DataFrame:
        """All-null outputs for ``index``, with the declared types (used for failed batches and empty input)."""
        return null_outputs(self.outputs, index)


# --- output validation -------------------------------------------------------------------------------------


def null_outputs(outputs: Mapping[str, str], index: pd.Index) -> pd.DataFrame:
    """A frame of declared ``outputs`` (column -> Spark type), all null, on ``index``."""
    data = {
        col: pd.Series([None] * len(index), index=index, dtype=OUTPUT_TYPES[t].null_dtype) for col, t in outputs.items()
    }
    return pd.DataFrame(data, index=index)


def check_declaration(module: type[ScienceModule] | ScienceModule) -> None:
    """Raise :class:`ModuleError` when a module's declaration itself is wrong (names, types, reserved columns)."""
    cls = module if isinstance(module, type) else type(module)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier() or name.lower() != name:
        raise ModuleError(f"{cls.__qualname__}: name must be a lower-case identifier, got {name!r}")
    if not getattr(cls, "outputs", None):
        raise ModuleError(f"module {name!r} declares no outputs")
    for col, typ in cls.outputs.items():
        if typ not in OUTPUT_TYPES:
            raise ModuleError(f"module {name!r}: output {col!r} has type {typ!r}; allowed: {', '.join(OUTPUT_TYPES)}")
        if not col.startswith(f"{name}_"):
            raise ModuleError(f"module {name!r}: output {col!r} must start with '{name}_'")
        if col.removeprefix(name) in RESERVED_SUFFIXES:
            raise ModuleError(f"module {name!r}: output {col!r} is reserved for the enrichment job's provenance")
    if col_clash := set(cls.inputs) & set(cls.outputs):
        raise ModuleError(f"module {name!r} reads and writes the same columns: {sorted(col_clash)}")


def validate_outputs(module: ScienceModule | LoadedModule, alerts: pd.DataFrame, outputs: Any) -> None:
    """Raise :class:`OutputMismatch` naming the module and column when ``outputs`` breaks the declaration."""
    name = module.name
    if not isinstance(outputs, pd.DataFrame):
        raise OutputMismatch(f"module {name!r}: predict returned {type(outputs).__name__}, not a pandas DataFrame")
    declared = module.outputs
    missing = [c for c in declared if c not in outputs.columns]
    extra = [c for c in outputs.columns if c not in declared]
    if missing or extra:
        raise OutputMismatch(
            f"module {name!r}: returned columns differ from its declaration; missing {missing}, undeclared {extra}"
        )
    if len(outputs) != len(alerts) or not outputs.index.equals(alerts.index):
        raise OutputMismatch(
            f"module {name!r}: returned {len(outputs)} rows for {len(alerts)} alerts, or another "
            "index; predict must keep the input's rows and index"
        )
    for col, typ in declared.items():
        series = outputs[col]
        dtype = str(series.dtype)
        if dtype not in OUTPUT_TYPES[typ].pandas:
            raise OutputMismatch(
                f"module {name!r}: column {col!r} is declared {typ!r} but has pandas dtype {dtype} "
                f"(accepted: {sorted(OUTPUT_TYPES[typ].pandas)})"
            )
        if typ == "string" and dtype == "object":
            kind = pd.api.types.infer_dtype(series, skipna=True)
            if kind not in ("string", "empty"):
                raise OutputMismatch(f"module {name!r}: column {col!r} is declared 'string' but holds {kind} values")


M = TypeVar("M", type["ScienceModule"], "ScienceModule")

# --- registry ----------------------------------------------------------------------------------------------


def _ensure_importable(modules_dir: Path) -> None:
    # Module folders are imported as `modules.<name>.module`, so that one module may import another's
    # helpers the same way in the repo, in tests and inside a loaded MLflow model (code copied as `modules/`).
    parent = str(modules_dir.resolve().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)


def _import_module_class(folder: Path) -> type[ScienceModule]:
    module = importlib.import_module(f"{folder.parent.name}.{folder.name}.module")
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, ScienceModule)
        and obj is not ScienceModule
        and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise ModuleError(f"{folder / 'module.py'} must define exactly one ScienceModule subclass, found {len(found)}")
    cls = found[0]
    if cls.name != folder.name:
        raise ModuleError(
            f"{folder / 'module.py'}: {cls.__name__}.name is {cls.name!r}; it must equal the folder "
            f"name {folder.name!r}"
        )
    check_declaration(cls)
    return cls


@cache
def all_modules(modules_dir: Path = MODULES_DIR) -> dict[str, type[ScienceModule]]:
    """Every module class found under ``modules_dir`` (one per ``<name>/module.py``), by name, sorted."""
    _ensure_importable(modules_dir)
    found = {}
    for folder in sorted(p for p in modules_dir.iterdir() if (p / "module.py").is_file()):
        cls = _import_module_class(folder)
        found[cls.name] = cls
    return found


def get(name: str) -> type[ScienceModule]:
    """The module class called ``name``; ``KeyError`` listing the known ones otherwise."""
    modules = all_modules()
    try:
        return modules[name]
    except KeyError:
        raise KeyError(f"unknown science module {name!r}; known modules: {', '.join(modules)}") from None


def _producers(modules: Iterable[type[ScienceModule] | ScienceModule]) -> dict[str, str]:
    producers: dict[str, str] = {}
    for m in modules:
        for col in m.outputs:
            if col in producers and producers[col] != m.name:
                raise ModuleError(f"column {col!r} is an output of both {producers[col]!r} and {m.name!r}")
            producers[col] = m.name
    return producers


def execution_order(modules: Sequence[M]) -> list[M]:
    """Sort ``modules`` so each runs after the modules whose outputs it reads (ties by name).

    Raises :class:`ModuleError` when an input is neither a base column nor an output of one of ``modules``
    (naming the module and column), or when modules depend on each other in a cycle (naming them).
    """
    by_name = {m.name: m for m in modules}
    producers = _producers(modules)
    needs: dict[str, set[str]] = {}
    for m in modules:
        needs[m.name] = set()
        for col in m.inputs:
            if col in BASE_COLUMNS:
                continue
            if col not in producers:
                raise ModuleError(
                    f"module {m.name!r} reads column {col!r}, which is neither canonical nor an output "
                    f"of the modules being run ({', '.join(sorted(by_name))})"
                )
            if producers[col] != m.name:
                needs[m.name].add(producers[col])
    order: list[M] = []
    done: set[str] = set()
    while len(order) < len(by_name):
        ready = sorted(n for n in by_name if n not in done and needs[n] <= done)
        if not ready:
            cycle = sorted(n for n in by_name if n not in done)
            raise ModuleError(f"science modules depend on each other in a cycle: {', '.join(cycle)}")
        for n in ready:
            order.append(by_name[n])
            done.add(n)
    return order


def output_schema(modules: Iterable[type[ScienceModule] | ScienceModule]) -> pa.Schema:
    """The Arrow schema of the output columns of ``modules`` (all nullable), in the given order."""
    return pa.schema([pa.field(col, OUTPUT_TYPES[t].arrow) for m in modules for col, t in m.outputs.items()])


def output_ddl(modules: Iterable[type[ScienceModule] | ScienceModule]) -> str:
    """The Spark DDL (``col type, ...``) of the output columns of ``modules``, for ``mapInPandas`` schemas."""
    return ", ".join(f"{col} {t}" for m in modules for col, t in m.outputs.items())


# --- error capture (used by the enrichment job per batch) --------------------------------------------------


def error_column(name: str) -> str:
    """The error-code column of module ``name``."""
    return f"{name}_error"


def run_module_safely(module: ScienceModule | LoadedModule, alerts: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Run ``module.predict`` on a batch and never raise.

    Returns ``(outputs, error_code)``. On success the outputs are the module's and every error code is null.
    When predict raises, or returns something that breaks the declaration, every row of the batch gets null
    outputs and the error code ``"<ExceptionType>"`` (``"OutputMismatch"`` for a broken declaration); the
    failure is logged with its traceback, and the caller counts the codes. ``error_code`` is a string series
    named ``<module>_error`` on ``alerts.index``.
    """
    code_name = error_column(module.name)
    try:
        outputs = module.predict(alerts)
        validate_outputs(module, alerts, outputs)
    except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the stream
        code = type(exc).__name__
        log.error(
            "science module %s failed on a batch of %d alerts (%s: %s); outputs set to null\n%s",
            module.name,
            len(alerts),
            code,
            exc,
            traceback.format_exc(),
        )
        return null_outputs(module.outputs, alerts.index), pd.Series(
            code, index=alerts.index, name=code_name, dtype=object
        )
    return outputs, pd.Series(None, index=alerts.index, name=code_name, dtype=object)


# --- samples ----------------------------------------------------------------------------------------------


def sample_alerts() -> pd.DataFrame:
    """The real shared sample alerts (ZTF and Rubin) as canonical rows, one per alert, with quality columns.

    This is what registration validates a module on and what the modules' tests start from.
    """
    from alertlake.quality_cuts import apply_quality_cuts

    return apply_quality_cuts(_sample_canonical().copy())


@cache
def _sample_canonical() -> pd.DataFrame:
    from alertlake.surveys import get_survey
    from alertlake.surveys.samples import sample_messages, shared_data_dir

    rows: list[dict[str, Any]] = []
    for survey in ("ztf", "lsst"):
        impl = get_survey(survey)
        for message in sample_messages(survey, real_only=True):
            rows.extend(row for _, row in impl.read(message.message))
    if not rows:
        raise FileNotFoundError(
            f"no sample alert found in {shared_data_dir()}: the shared data folder (ALERTLAKE_SHARED_DATA, by default "
            "<repo>/../shared/data) is missing or empty"
        )
    frame = pd.DataFrame(rows).drop_duplicates("alert_id", ignore_index=True)
    return frame


def with_upstream(
    module: type[ScienceModule] | ScienceModule,
    alerts: pd.DataFrame,
    prepared: Mapping[str, ScienceModule] | None = None,
) -> pd.DataFrame:
    """``alerts`` plus the outputs of every module ``module`` depends on (transitively), computed locally.

    ``prepared`` supplies ready instances by name; other dependencies are built with default params.
    """
    prepared = dict(prepared or {})
    modules = all_modules()
    needed: list[type[ScienceModule]] = []
    pending = list(module.depends_on())
    while pending:
        name = pending.pop()
        if name in (m.name for m in needed):
            continue
        needed.append(modules[name])
        pending.extend(modules[name].depends_on())
    frame = alerts.copy()
    for cls in execution_order(needed):
        instance = prepared.get(cls.name) or cls().prepare()
        frame = frame.join(instance.predict(frame))
    return frame


# --- MLflow --------------------------------------------------------------------------------------------------


def tracking_uri() -> str:
    """The MLflow tracking (and registry) URI from the settings."""
    return get_settings().mlflow_tracking_uri


def require_mlflow(uri: str | None = None, timeout: float = 3.0) -> str:
    """Return the tracking URI after checking the server answers; raise :class:`MlflowUnreachable` naming it."""
    from alertlake.health import http_ok

    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")) and not http_ok(f"{uri.rstrip('/')}/health", timeout=timeout):
        raise MlflowUnreachable(
            f"MLflow tracking server at {uri} is unreachable: start it (`make services-up`) or point "
            "ALERTLAKE_MLFLOW_TRACKING_URI at a running server"
        )
    return uri


def _client() -> MlflowClient:
    import mlflow
    from mlflow import MlflowClient

    uri = require_mlflow()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _pip_requirements() -> list[str]:
    names = [
        "mlflow",
        "numpy",
        "pandas",
        "pyarrow",
        "pydantic",
        "pydantic-settings",
        "scikit-learn",
        "light-curve",
        "cdshealpix",
        "astropy",
        "fastavro",
    ]
    return [f"{n}=={importlib.metadata.version(n)}" for n in names]


def _mlflow_signature(module: ScienceModule) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Object, Property, Schema, TensorSpec

    canonical_types = {
        "string": "string",
        "int64": "long",
        "int32": "integer",
        "bool": "boolean",
        # Float32 inputs are declared double: MLflow accepts a safe float32 -> float64 widening, not the reverse.
        "float": "double",
        "double": "double",
    }
    from alertlake.surveys.canonical import SCHEMA

    def arrow_to_mlflow(t: pa.DataType) -> str:
        return canonical_types.get(str(t), "double")

    history = Array(
        Object(
            [
                Property(HISTORY_ENTRY.field(i).name, arrow_to_mlflow(HISTORY_ENTRY.field(i).type), required=False)
                for i in range(HISTORY_ENTRY.num_fields)
            ]
        )
    )
    upstream_types = {col: t for m in all_modules().values() for col, t in m.outputs.items()}
    specs: list[ColSpec | TensorSpec] = []
    for col in module.inputs:
        if col == "history":
            specs.append(ColSpec(history, col, required=False))
        elif col in SCHEMA.names:
            specs.append(ColSpec(arrow_to_mlflow(SCHEMA.field(col).type), col, required=False))
        elif col == "quality_pass":
            specs.append(ColSpec("boolean", col, required=False))
        elif col == "quality_reason":
            specs.append(ColSpec("string", col, required=False))
        else:
            typ = upstream_types.get(col, "double")
            specs.append(
                ColSpec("double" if typ in ("float", "int") else OUTPUT_TYPES[typ].mlflow, col, required=False)
            )
    out = Schema([ColSpec(OUTPUT_TYPES[t].mlflow, col, required=False) for col, t in module.outputs.items()])
    return ModelSignature(inputs=Schema(specs), outputs=out)


def _stage_code(module: ScienceModule, into: Path) -> list[str]:
    """Copy the code a loaded model needs: the ``alertlake`` package and the module folders it imports."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "test_*.py", ".pytest_cache")
    alertlake_dir = into / "alertlake"
    shutil.copytree(Path(__file__).resolve().parent, alertlake_dir, ignore=ignore)
    modules_root = into / "modules"
    modules_root.mkdir()
    source_root = Path(sys.modules[type(module).__module__].__file__ or "").resolve().parent.parent
    (modules_root / "__init__.py").write_text(
        (source_root / "__init__.py").read_text() if (source_root / "__init__.py").exists() else ""
    )
    names = {module.name, *_transitive_dependencies(module.name)}
    for name in sorted(names):
        shutil.copytree(source_root / name, modules_root / name, ignore=ignore)
    return [str(alertlake_dir), str(modules_root)]


def _transitive_dependencies(name: str) -> set[str]:
    seen: set[str] = set()
    pending = list(get(name).depends_on()) if name in all_modules() else []
    while pending:
        n = pending.pop()
        if n not in seen:
            seen.add(n)
            pending.extend(get(n).depends_on())
    return seen


def _build_pyfunc_wrapper(module_name: str, params: dict[str, Any]) -> Any:
    import mlflow.pyfunc

    class AlertLakeModel(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
        """MLflow pyfunc wrapper: re-creates the science module from its name and params, loads artifacts."""

        def __init__(self) -> None:
            self.module_name = module_name
            self.params = params
            self.module: ScienceModule | None = None

        def load_context(self, context: Any) -> None:
            from alertlake import modules as registry

            cls = registry.get(self.module_name)
            self.module = cls(self.params)
            self.module.load({k: Path(v) for k, v in (context.artifacts or {}).items()})

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
            assert self.module is not None, "load_context was not called"
            return self.module.predict(model_input)

    return AlertLakeModel()


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered module version: name, version number, the run that logged it, and its model URI."""

    name: str
    version: int
    run_id: str
    uri: str


def register(
    module: ScienceModule | str,
    alias: str | None = None,
    *,
    sample: pd.DataFrame | None = None,
    prepared: Mapping[str, ScienceModule] | None = None,
) -> RegisteredVersion:
    """Log ``module`` as an MLflow pyfunc model, register it as a new version of ``module.name``, and return it.

    Steps: build the artifacts; predict on real sample alerts (``sample``, default :func:`sample_alerts`, with the
    outputs of the modules it depends on) and reject the module with :class:`OutputMismatch` when its outputs do
    not match its declaration; then log code, artifacts, signature, input example, params and metrics in one run
    of the ``alertlake-modules`` experiment. ``alias`` (``champion``/``challenger``) points at the new version.
    ``prepared`` gives ready dependency instances (saves rebuilding them).
    """
    import mlflow

    if isinstance(module, str):
        module = get(module)()
    check_declaration(module)
    if alias is not None and alias not in ALIASES:
        raise ValueError(f"alias must be one of {ALIASES}, got {alias!r}")
    client = _client()
    with tempfile.TemporaryDirectory(prefix=f"alertlake-register-{module.name}-") as tmp:
        workdir = Path(tmp)
        (workdir / "artifacts").mkdir()
        started = time.perf_counter()
        built = module.build(workdir / "artifacts")
        build_s = time.perf_counter() - started
        module.load(built.artifacts)

        alerts = with_upstream(module, sample if sample is not None else sample_alerts(), prepared)
        inputs = alerts[list(module.inputs)]
        started = time.perf_counter()
        outputs = module.predict(inputs)
        predict_s = time.perf_counter() - started
        validate_outputs(module, inputs, outputs)

        code_paths = _stage_code(module, workdir / "code")
        mlflow.set_experiment(REGISTRATION_EXPERIMENT)
        params = module.params.model_dump(mode="json")
        with mlflow.start_run(run_name=f"register-{module.name}") as run:
            mlflow.log_params(
                {
                    "module": module.name,
                    "params_hash": module.params.params_hash(),
                    **{f"param.{k}": json.dumps(v) if isinstance(v, dict | list) else v for k, v in params.items()},
                    **{f"build.{k}": v for k, v in built.params.items()},
                }
            )
            mlflow.log_metrics(
                {
                    **built.metrics,
                    "build_seconds": build_s,
                    "sample_alerts_per_s": len(inputs) / max(predict_s, 1e-9),
                    "sample_alerts": float(len(inputs)),
                }
            )
            mlflow.set_tags(
                {
                    "alertlake.module": module.name,
                    "alertlake.version_note": module.version_note,
                    "alertlake.inputs": ",".join(module.inputs),
                    "alertlake.outputs": json.dumps(module.outputs),
                    **built.tags,
                }
            )
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=_build_pyfunc_wrapper(module.name, params),
                artifacts={k: str(v) for k, v in built.artifacts.items()},
                code_paths=code_paths,
                signature=_mlflow_signature(module),
                input_example=_json_safe(inputs.head(2)),
                pip_requirements=_pip_requirements(),
                registered_model_name=module.name,
            )
    version = int(info.registered_model_version)
    client.set_model_version_tag(module.name, str(version), "params_hash", module.params.params_hash())
    if alias:
        client.set_registered_model_alias(module.name, alias, str(version))
    log.info(
        "registered science module %s version %d (run %s)%s",
        module.name,
        version,
        run.info.run_id,
        f" as @{alias}" if alias else "",
    )
    return RegisteredVersion(module.name, version, run.info.run_id, f"models:/{module.name}/{version}")


def _json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    # MLflow writes the input example as JSON: nested numpy arrays (history from Arrow) become plain lists.
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: [dict(x) for x in v] if isinstance(v, list | np.ndarray) else v)
    return out


def promote(
    name: str, version: int | str, alias: str = "champion", check: Callable[[str, int], bool] | None = None
) -> bool:
    """Point ``alias`` of module ``name`` at ``version`` if ``check(name, version)`` passes (or no check).

    Returns True when the alias moved; False (alias unchanged, reason logged) when the check failed.
    """
    if alias not in ALIASES:
        raise ValueError(f"alias must be one of {ALIASES}, got {alias!r}")
    client = _client()
    number = int(version)
    client.get_model_version(name, str(number))  # fails clearly on an unknown version
    if check is not None and not check(name, number):
        log.warning("module %s version %d failed its promotion check; @%s unchanged", name, number, alias)
        return False
    client.set_registered_model_alias(name, alias, str(number))
    log.info("module %s @%s -> version %d", name, alias, number)
    return True


def describe(name: str) -> dict[str, Any]:
    """Everything MLflow knows of module ``name``: aliases, and each version with its run's params and metrics."""
    client = _client()
    model = client.get_registered_model(name)
    aliases = dict(model.aliases or {})
    versions = []
    for mv in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        run = client.get_run(mv.run_id) if mv.run_id else None
        versions.append(
            {
                "version": int(mv.version),
                "aliases": [a for a, v in aliases.items() if str(v) == str(mv.version)],
                "status": mv.status,
                "created": mv.creation_timestamp,
                "run_id": mv.run_id,
                "source": mv.source,
                "params": dict(run.data.params) if run else {},
                "metrics": dict(run.data.metrics) if run else {},
                "tags": {k: v for k, v in (run.data.tags if run else {}).items() if k.startswith("alertlake.")},
            }
        )
    return {"name": name, "aliases": {a: int(v) for a, v in aliases.items()}, "versions": versions}


@dataclass
class LoadedModule:
    """A module version loaded from MLflow: what the enrichment job runs and records as provenance."""

    name: str
    version: int
    uri: str
    outputs: dict[str, str]
    module: ScienceModule

    def predict(self, alerts: pd.DataFrame) -> pd.DataFrame:
        """The module's predict (no MLflow schema enforcement: :func:`run_module_safely` validates outputs)."""
        return self.module.predict(alerts)


def model_uri(name: str, ref: str | int = "champion") -> str:
    """``models:/<name>@<alias>`` for an alias, ``models:/<name>/<version>`` for a version number."""
    text = str(ref)
    return f"models:/{name}/{text}" if text.isdigit() else f"models:/{name}@{text}"


def resolve(name: str, ref: str | int = "champion") -> int:
    """The version number an alias (or version) of module ``name`` points at, asked of MLflow once."""
    return int(model_version(_client(), name, ref).version)


def model_version(client: MlflowClient, name: str, ref: str | int) -> ModelVersion:
    """Registered version ``ref`` (a version number, or an alias such as ``champion``) of module ``name``."""
    text = str(ref)
    if text.isdigit():
        return client.get_model_version(name, text)
    return client.get_model_version_by_alias(name, text)


def cached_model(cache_dir: Path, tracking_uri: str, name: str, version: int, run_id: str) -> Path:
    """The files of registered version ``version`` of module ``name`` in the local cache, downloaded the first
    time: a registered version never changes, so one download serves every later load (a ``models:/`` URI loaded
    directly downloads into a new temporary folder each time, about 50 MB, never deleted)."""
    import mlflow.artifacts

    target = cache_dir / "models" / name / f"{version}-{run_id[:12]}"
    if (target / "MLmodel").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-{version}-", dir=target.parent))
    try:
        path = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri(name, version),
                dst_path=str(staging),
                tracking_uri=tracking_uri,
                registry_uri=tracking_uri,
            )
        )
        try:
            path.rename(target)
        except OSError:
            if not (target / "MLmodel").exists():  # another run finished the same download first: fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass(frozen=True)
class SavedModule:
    """What MLflow's pyfunc loader rebuilds a science module from, read once from a downloaded model folder: the
    module's name, its registered params and the local path of each artifact."""

    name: str
    params: dict[str, Any]
    artifacts: dict[str, str]

    @classmethod
    def read(cls, model_dir: Path) -> SavedModule:
        """Read ``model_dir`` (a registered version, as :func:`cached_model` downloads it) without loading it:
        the ``MLmodel`` file gives the artifacts, the pickled wrapper the module name and params. Unpickling the
        wrapper imports ``mlflow.pyfunc`` (its base class): a driver-side step."""
        import cloudpickle
        import yaml

        conf = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]
        with open(model_dir / conf["python_model"], "rb") as f:
            wrapper = cloudpickle.load(f)
        name, params = getattr(wrapper, "module_name", None), getattr(wrapper, "params", None)
        if not isinstance(name, str) or not isinstance(params, dict):
            raise ModuleError(f"{model_dir} does not hold an AlertLake science module (no module name and params)")
        artifacts = {k: str(model_dir / v["path"]) for k, v in (conf.get("artifacts") or {}).items()}
        return cls(name, dict(params), artifacts)

    def instantiate(self) -> ScienceModule:
        """The module as MLflow's loader makes it (``Cls(params)``, then ``load(artifacts)``), without importing
        MLflow: the enrichment's Python workers save ``import mlflow.pyfunc`` (5.6-5.9 s each on a slow machine).
        As with MLflow's loader after :func:`all_modules`, the class is this checkout's."""
        module = get(self.name)(self.params)
        module.load({k: Path(v) for k, v in self.artifacts.items()})
        return module


def load(name: str, ref: str | int = "champion") -> LoadedModule:
    """Load module ``name`` at ``ref`` (an alias such as ``champion`` or a version number) from MLflow.

    The alias is resolved once to a version number, and the model is loaded by that pinned URI, so the
    recorded version is exactly the one that ran even if the alias moves meanwhile. Raises
    :class:`MlflowUnreachable` naming the URL when MLflow does not answer.
    """
    import mlflow.pyfunc

    client = _client()
    found = model_version(client, name, ref)
    version = int(found.version)
    uri = model_uri(name, version)
    local = cached_model(get_settings().cache_dir, client.tracking_uri, name, version, found.run_id or "norun")
    model = mlflow.pyfunc.load_model(str(local))
    wrapper = model.unwrap_python_model()
    module = wrapper.module
    if module is None:
        raise ModuleError(f"{uri} loaded without its science module")
    return LoadedModule(name=name, version=version, uri=uri, outputs=dict(module.outputs), module=module)
