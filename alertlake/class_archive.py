"""A class-data-sharing (CDS) archive of the Spark driver's classes, so that every Spark job starts faster.

Every job, DAG task and test starts a fresh driver JVM, which loads and verifies some 20,000 classes (Spark, Scala,
Hadoop, Delta, the connectors) before it does anything. A dynamic CDS archive (JDK 13+) holds those classes already
parsed and verified, memory-mapped at start. It is built once by ``make install`` (``python -m
alertlake.class_archive``): a short Spark run that writes and reads Delta and Avro, with
``-XX:ArchiveClassesAtExit``. Later drivers get ``-XX:SharedArchiveFile`` (see :func:`alertlake.spark.build_spark`).

The archive matches one JDK and one exact set of jars, so its file name hashes the java binary, the JVM library and
every jar's path, size and modification time: after an upgrade the name changes, the stale archive is not used
(the JVM would reject it with warnings) and ``make install`` builds a new one. Without an archive, nothing changes.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alertlake.settings import Settings

log = logging.getLogger("alertlake.class_archive")

FOLDER = "spark-cds"


def java_binary() -> Path | None:
    """The ``java`` Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the first on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not found or not Path(found).exists():
        return None
    return Path(found).resolve()


def archive_path(settings: Settings, jars: list[Path], java: Path | None) -> Path | None:
    """Where the archive for this ``java`` and these ``jars`` (the driver's class path) lives; None without java."""
    if java is None:
        return None
    digest = hashlib.sha256()
    runtime = [java, *java.parents[1].glob("lib/server/libjvm.so")]
    for path in [*runtime, *sorted(jars)]:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return settings.cache_dir / FOLDER / f"{digest.hexdigest()[:20]}.jsa"


def driver_jars(settings: Settings) -> list[Path]:
    """pyspark's own jars and a session's (:func:`alertlake.spark.session_jars`): every jar the driver loads
    classes from."""
    import pyspark

    from alertlake.spark import session_jars

    return sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar")) + session_jars(settings)


def current(settings: Settings) -> Path | None:
    """The archive matching this machine's JDK and jars, or None when it has not been built (or is off)."""
    if not settings.spark_class_archive:
        return None
    path = archive_path(settings, driver_jars(settings), java_binary())
    return path if path is not None and path.is_file() else None


def build(settings: Settings, force: bool = False) -> Path | None:
    """Build the archive unless it exists (a child Python process runs :func:`_workload`); return its path, or
    None when the JDK cannot dump one (the jobs then start as before). Older archives in the folder are removed."""
    path = archive_path(settings, driver_jars(settings), java_binary())
    if path is None:
        log.warning("no java found: no class archive")
        return None
    if path.is_file() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial")
    result = subprocess.run(
        [sys.executable, "-m", "alertlake.class_archive", "--dump-to", str(partial)],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "ALERTLAKE_SPARK_CLASS_ARCHIVE": "false"},
    )
    if result.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        partial.unlink(missing_ok=True)
        output = (result.stdout + result.stderr)[-3000:]
        log.warning("could not build the class archive (jobs start without it):\n%s", output)
        return None
    partial.rename(path)
    for old in path.parent.glob("*.jsa"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def _workload(settings: Settings, dump_to: Path) -> None:
    """What a job's driver does first, run once with the archive dump on: session, Delta create / append with a
    transaction id / MERGE / read, Avro encode and decode, Arrow to pandas and back."""
    import pandas as pd
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro, to_avro

    from alertlake.spark import build_spark

    options = f"{settings.spark_java_options} -XX:ArchiveClassesAtExit={dump_to}"
    settings = settings.model_copy(update={"spark_java_options": options, "spark_class_archive": False})
    spark = build_spark(settings, "alertlake-class-archive", {"spark.ui.enabled": "false"})
    with tempfile.TemporaryDirectory(prefix="alertlake-class-archive-") as tmp:
        uri = str(Path(tmp) / "table")
        rows = spark.range(2000).selectExpr(
            "id AS alert_id", "CAST(id % 3 AS STRING) AS night", "named_struct('mag', id * 0.5D) AS candidate"
        )
        rows.write.format("delta").partitionBy("night").save(uri)
        rows.write.format("delta").mode("append").option("txnAppId", "warm").option("txnVersion", 1).save(uri)
        merge = DeltaTable.forPath(spark, uri).alias("t").merge(rows.alias("s"), "t.alert_id = s.alert_id")
        merge.whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
        table = spark.read.format("delta").load(uri)
        table.groupBy("night").count().collect()
        schema = '{"type":"record","name":"r","fields":[{"name":"alert_id","type":"long"}]}'
        encoded = table.select(to_avro(F.struct("alert_id")).alias("value"))
        encoded.select(from_avro("value", schema).alias("a")).select("a.alert_id").toPandas()
        spark.createDataFrame(pd.DataFrame({"alert_id": [1, 2]})).collect()
    spark.stop()  # the JVM writes the archive as it exits


def main(argv: list[str] | None = None) -> int:
    """``python -m alertlake.class_archive``: build the archive if missing (``make install`` runs it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="rebuild even if it exists")
    parser.add_argument("--dump-to", type=Path, help=argparse.SUPPRESS)  # the child process that dumps
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if args.dump_to:
        _workload(settings, args.dump_to)
        return 0
    path = build(settings, args.force)
    print(f"class archive: {path}" if path else "class archive: none (jobs start without it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
