"""Spark session builder: Delta Lake enabled, with the Kafka and Avro connectors, fully offline.

The connector jars are fetched once from Maven Central into the cache by ``infra/stack.py install``
(``make install``) and passed to Spark as ``spark.jars``, so building a session needs no network.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from alertlake import class_archive, spark_plugin
from alertlake.settings import Settings

log = logging.getLogger("alertlake.spark")

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

SPARK_VERSION = "4.2.0"


def spark_jars_dir(settings: Settings) -> Path:
    """Folder of the Delta, Kafka and Avro connector jars matching the installed pyspark."""
    return settings.cache_dir / f"spark-{SPARK_VERSION}-jars"


def connector_jars(settings: Settings) -> list[Path]:
    """The connector jars, or a clear error telling how to fetch them."""
    folder = spark_jars_dir(settings)
    jars = sorted(folder.glob("*.jar"))
    if not (folder / ".complete").exists() or not jars:
        raise RuntimeError(
            f"Spark connector jars are missing in {folder}; run `make install` once (needs Maven Central)"
        )
    return jars


def session_jars(settings: Settings) -> list[Path]:
    """``spark.jars`` of a session: the connector jars, and AlertLake's JVM classes (:mod:`alertlake.spark_plugin`)
    when they are wanted and built."""
    plugin = spark_plugin.current(settings) or spark_plugin.local_file_system(settings)
    return connector_jars(settings) + ([plugin] if plugin is not None else [])


#: Options of the streamed Delta writes (bronze, quarantine, silver). zstd rather than Spark's default snappy:
#: writing the same cached 20,000 bronze rows to Parquet took 1.37 s instead of 1.79 s, into 5.4 MB, not 13 MB.
WRITE_OPTIONS = {"compression": "zstd"}


def build_spark(settings: Settings, app_name: str = "alertlake", conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session on ``settings.spark_master`` with Delta, Kafka and Avro support.

    ``conf`` adds or overrides Spark properties (for example a job's own shuffle partitions).
    """
    import pyspark
    from pyspark.sql import SparkSession

    # py4j logs every closed connection at INFO; under Airflow's root logger that floods task logs.
    logging.getLogger("py4j").setLevel(logging.WARNING)

    if pyspark.__version__ != SPARK_VERSION:
        raise RuntimeError(f"pyspark {pyspark.__version__} found, AlertLake's jars are for {SPARK_VERSION}")
    # Executors must run this interpreter, which has AlertLake and its dependencies.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    driver_options = settings.spark_java_options
    archive = class_archive.current(settings)
    if archive is not None:
        driver_options += f" -XX:SharedArchiveFile={archive}"
    jars = session_jars(settings)
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.driver.extraJavaOptions", driver_options)
        .config("spark.executor.extraJavaOptions", settings.spark_java_options)
        .config("spark.sql.shuffle.partitions", str(settings.spark_shuffle_partitions))
        .config("spark.databricks.delta.snapshotPartitions", str(settings.spark_delta_snapshot_partitions))
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", str(settings.spark_listing_parallelism))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.spark_arrow_batch_rows))
        .config("spark.ui.showConsoleProgress", "false")
        # PySpark's DataFrame debugging records the Python call site of every DataFrame and function call in the
        # JVM (about five py4j round trips each): 0.1 s of a real-time micro-batch's 0.2 s of building its
        # enrichment and gate columns. Errors keep their Python traceback; only Spark's "== DataFrame ==" context
        # goes.
        .config("spark.python.sql.dataFrameDebugging.enabled", "false")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        # Delta tables written here must stay readable by Trino 476 and delta-rs.
        .config("spark.databricks.delta.properties.defaults.enableDeletionVectors", "false")
    )
    if spark_plugin.current(settings) is not None:
        builder = builder.config("spark.plugins", spark_plugin.PLUGIN_CLASS)
    elif settings.spark_task_conf_cache:
        log.warning(
            "AlertLake's Spark plugin is not built (%s): Avro decoding runs several times slower; run `make install`",
            spark_plugin.jar_path(settings),
        )
    local_fs = spark_plugin.local_file_system(settings)
    if local_fs is not None:
        builder = (
            builder.config("spark.driver.extraClassPath", str(local_fs))
            .config("spark.hadoop.fs.file.impl", spark_plugin.LOCAL_FS_CLASS)
            .config("spark.hadoop.fs.AbstractFileSystem.file.impl", spark_plugin.LOCAL_FS_CONTEXT_CLASS)
        )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def with_batch_values(frame: DataFrame, schema: str, *values: object) -> DataFrame:
    """``frame`` with the columns of ``schema`` (a DDL string) set to ``values`` in every row, without literals.

    Spark writes a numeric or timestamp literal (``lit(batch_id)``, ``current_timestamp()``) into the Java code
    it generates for the projection that holds it, so a value that changes every micro-batch makes a new class
    in every batch: compiled by Janino, then by the JVM's JIT from cold. In the pipeline under load that was
    three classes a batch (bronze's 2,300-line projection among them) and JIT compiler threads took about a
    quarter of the process's CPU. Here the values come from a one-row table joined in (broadcast), so the
    generated code is the same in every batch and stays compiled.
    """
    from pyspark.sql import functions as F

    spark = frame.sparkSession
    return frame.crossJoin(F.broadcast(spark.createDataFrame([tuple(values)], ddl_schema(spark, schema))))


_DDL_SCHEMAS: dict[str, Any] = {}


def ddl_schema(spark: SparkSession, ddl: str) -> Any:
    """``ddl`` parsed into a ``StructType`` once (PySpark asks the JVM to parse it, a few calls each time)."""
    from pyspark.sql.types import _parse_datatype_string

    if ddl not in _DDL_SCHEMAS:
        _DDL_SCHEMAS[ddl] = _parse_datatype_string(ddl)
    return _DDL_SCHEMAS[ddl]


class Projection:
    """A ``select`` list built once in the JVM and applied to each micro-batch in one py4j call.

    ``frame.select(*columns)`` converts every column (three calls for a name: PySpark looks ``col`` up in the
    JVM each time), then hands the JVM a list built one element per call. The columns here are unresolved
    (names and expressions, no DataFrame's attributes), so one JVM list serves every DataFrame that has them;
    a missing column fails the ``select`` with Spark's own error. With these, a real-time micro-batch makes about
    320 calls to the JVM instead of 1,440, and 500-alert batches took 5% less time (``docs/data-engineer.md``).
    """

    def __init__(self, columns: Sequence[Any]) -> None:
        self.columns = list(columns)
        self._jvm_list: tuple[Any, Any] | None = None  # (the Spark context, the JVM Seq of Columns in it)

    def _jcols(self, frame: DataFrame) -> Any:
        context = frame.sparkSession.sparkContext
        if self._jvm_list is None or self._jvm_list[0] is not context:
            classic: Any = frame  # a classic (JVM-backed) DataFrame
            self._jvm_list = (context, classic._jcols(*self.columns))
        return self._jvm_list[1]

    def select(self, frame: DataFrame) -> DataFrame:
        """``frame.select(*self.columns)``."""
        from pyspark.sql.classic.dataframe import DataFrame as ClassicFrame

        classic: Any = frame
        return ClassicFrame(classic._jdf.select(self._jcols(frame)), frame.sparkSession)


_PROJECTIONS: dict[Any, Projection] = {}


def projection(key: Any, columns: Callable[[], Sequence[Any]]) -> Projection:
    """The :class:`Projection` kept under ``key`` (hashable: what the column list depends on), made from
    ``columns()`` the first time."""
    if key not in _PROJECTIONS:
        _PROJECTIONS[key] = Projection(columns())
    return _PROJECTIONS[key]


class ArrowMap:
    """``frame.mapInArrow(function, schema)`` for frames whose columns are ``columns`` (names, in order),
    with its Python function pickled and sent to the JVM once, not for every micro-batch.

    PySpark's ``mapInArrow`` pickles the function, registers it in the JVM and binds it to every column of the
    frame, one call each (over 60 calls for silver's input). Python receives the whole frame either way; here
    the columns are named, not bound, so the same registered function serves every batch. A frame without one
    of those columns fails in Spark's analysis; one with other columns too would pass them to the function as
    well, so callers build the frame with a :class:`Projection` of exactly those columns.
    """

    def __init__(self, function: Callable[..., Any], schema: Any, columns: Sequence[str]) -> None:
        self.function, self.schema, self.columns = function, schema, list(columns)
        self._jvm_udf: tuple[Any, Any] | None = None  # (the Spark context, the function's JVM column in it)

    def apply(self, frame: DataFrame) -> DataFrame:
        """The mapped frame (lazy). ``frame``'s columns are not checked here: that would ask the JVM for its
        schema."""
        from pyspark.sql import functions as F
        from pyspark.sql.classic.dataframe import DataFrame as ClassicFrame
        from pyspark.sql.pandas.functions import pandas_udf
        from pyspark.util import PythonEvalType

        context = frame.sparkSession.sparkContext
        if self._jvm_udf is None or self._jvm_udf[0] is not context:
            udf = pandas_udf(  # type: ignore[call-overload]
                self.function, returnType=self.schema, functionType=PythonEvalType.SQL_MAP_ARROW_ITER_UDF
            )
            self._jvm_udf = (context, udf(*[F.col(f"`{c}`") for c in self.columns])._jc)
        classic: Any = frame
        jdf = classic._jdf.mapInArrow(self._jvm_udf[1], False, None)
        return ClassicFrame(jdf, frame.sparkSession)


def kafka_options(settings: Settings) -> dict[str, str]:
    """Options of Spark's Kafka source/sink (Java client names) equivalent to ``settings.kafka_config()``."""
    opts = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "kafka.security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        opts["kafka.sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_username and settings.kafka_password:
        module = (
            "org.apache.kafka.common.security.scram.ScramLoginModule"
            if settings.kafka_sasl_mechanism and settings.kafka_sasl_mechanism.startswith("SCRAM")
            else "org.apache.kafka.common.security.plain.PlainLoginModule"
        )
        password = settings.kafka_password.get_secret_value().replace('"', '\\"')
        opts["kafka.sasl.jaas.config"] = (
            f'{module} required username="{settings.kafka_username}" password="{password}";'
        )
    return opts


def start_stream(
    settings: Settings,
    frame: DataFrame,
    name: str,
    batch_fn: Callable[[DataFrame, int], None],
    trigger: str = "continuous",
    interval: str = "2 seconds",
) -> StreamingQuery:
    """Start the streaming query ``name``: ``batch_fn`` on every micro-batch of ``frame``, checkpointed under
    the lake's checkpoint root; bounded (``trigger="available-now"``) or every ``interval``."""
    from alertlake.lake import checkpoint_uri

    location = checkpoint_uri(settings, name)
    removed = clear_unstarted_checkpoint(frame.sparkSession, location)
    if removed:
        log.warning(
            "checkpoint %s had no batch yet but held %d unfinished file(s) of a run stopped while writing its "
            "first batch; removed them so that the query starts at batch 0: %s",
            location,
            len(removed),
            ", ".join(removed),
        )
    writer = frame.writeStream.queryName(name).foreachBatch(batch_fn)
    writer = writer.option("checkpointLocation", location)
    if trigger == "available-now":
        query = writer.trigger(availableNow=True).start()
    else:
        query = writer.trigger(processingTime=interval).start()
    log.info("streaming query %s started (%s)", name, trigger)  # bench/e2e.py waits for this line
    return query


CHECKPOINT_LOGS = ("offsets", "commits")


def _checkpoint_logs(spark: SparkSession, location: str) -> tuple[Any, dict[str, list[Any]]]:
    """The Hadoop FileSystem of checkpoint ``location`` and the files of each of its :data:`CHECKPOINT_LOGS`
    (none for a folder not there yet)."""
    jvm = spark._jvm
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path
    root = hadoop_path(location)
    fs = root.getFileSystem(spark._jsparkSession.sessionState().newHadoopConf())
    logs = {}
    for log_dir in CHECKPOINT_LOGS:
        folder = hadoop_path(root, log_dir)
        logs[log_dir] = [status.getPath() for status in fs.listStatus(folder)] if fs.exists(folder) else []
    return fs, logs


def clear_unstarted_checkpoint(spark: SparkSession, location: str) -> list[str]:
    """Remove what a run killed while writing its first batch's offsets left in checkpoint ``location``;
    return the removed paths.

    Spark writes a log entry to a hidden temporary file (``.0.<uuid>.tmp`` and its ``.crc``) and then renames it.
    A process killed between the two leaves only the temporary file. Spark ignores it when a batch is logged,
    but when none is, it refuses to start the query at all (``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY``: the
    offsets folder of a new query must be empty). Such files are removed only when neither log has a finished
    entry, so a checkpoint that has begun is never touched; anything else there is left for Spark to judge.
    The files are listed and deleted through Hadoop's FileSystem, so this works on ``s3a://`` as well."""
    fs, logs = _checkpoint_logs(spark, location)
    files = [path for paths in logs.values() for path in paths]
    if not files or not all(path.getName().startswith(".") and ".tmp" in path.getName() for path in files):
        return []
    for path in files:
        fs.delete(path, False)
    return [str(path) for path in files]


def replayed_batch(spark: SparkSession, location: str) -> int | None:
    """The micro-batch a query restarted on checkpoint ``location`` runs again first: the last one whose offsets
    were logged and whose commit was not (a run stopped in the middle of it). None when there is none: a new
    checkpoint, or one whose last logged batch was committed, whose next batch has never been attempted.
    Listed through Hadoop's FileSystem, as :func:`clear_unstarted_checkpoint` does (``s3a://`` as well)."""
    _, logs = _checkpoint_logs(spark, location)
    last = {
        log_dir: max((int(p.getName()) for p in paths if p.getName().isdigit()), default=-1)
        for log_dir, paths in logs.items()
    }
    return last["offsets"] if last["offsets"] > last["commits"] else None


def load_delta_states(spark: SparkSession, uris: Sequence[str]) -> None:
    """Have Spark load the log and compute the state of each Delta table at ``uris`` now, before a stream starts.

    A process's first commit to a table first loads its log and, to write the checksum of the new version,
    computes the state of the current one: a Spark job of its own when that version has no checksum file, as
    when delta-rs made it (the tables are created, and some appended to, by delta-rs). A job's first micro-batch
    paid that for each table it writes, on the latency path; called at start, it is done once, off it. In a JVM
    already warmed by appends to another table (and with another Spark job running beside it), a 466-alert bronze
    append to a table made by delta-rs took 5.4 s the first time and 2.4 s the second; to a table whose state was
    loaded first (2.5 s), 2.5 s and 2.3 s. A version with a checksum file (Spark wrote it) needs no state, and
    a table that does not exist is skipped."""
    from alertlake.lake import table_exists_at

    jvm = spark._jvm
    assert jvm is not None
    empty = jvm.scala.Option.empty()
    for uri in uris:
        if table_exists_at(uri):
            delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, uri)
            snapshot = delta_log.update(False, empty, empty)
            if snapshot.checksumOpt().isEmpty():
                snapshot.numOfFiles()  # computes the state: the job the first commit would have run


class Query(Protocol):
    """What :func:`supervise` needs of a job's query: a Spark ``StreamingQuery``, or a thread shaped like one
    (:class:`jobs.objects.ObjectsThread`)."""

    @property
    def name(self) -> str | None: ...

    @property
    def isActive(self) -> bool: ...  # StreamingQuery's name

    def exception(self) -> Any: ...

    def stop(self) -> None: ...


def supervise(
    queries: Sequence[Query],
    timeout: float = 0,
    poll: float = 2.0,
    on_poll: Callable[[], None] | None = None,
) -> list[str]:
    """Wait on a job's streaming queries until they have all ended (a bounded run ends by itself), one of them
    has failed, ``timeout`` seconds have passed (0: no limit) or Ctrl-C; stop those still running; return
    ``"<query>: <error>"`` for each failed query. ``on_poll`` runs every ``poll`` seconds (progress logs)."""
    deadline = time.monotonic() + timeout if timeout else None
    try:
        while any(q.isActive for q in queries):
            if any(not q.isActive and q.exception() for q in queries):
                break
            if deadline and time.monotonic() > deadline:
                break
            time.sleep(poll)
            if on_poll is not None:
                on_poll()
    except KeyboardInterrupt:
        pass
    for query in queries:
        if query.isActive:
            query.stop()
    return [f"{q.name}: {q.exception()}" for q in queries if q.exception()]
