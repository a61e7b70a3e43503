"""AlertLake's JVM classes (``alertlake/jvm/*.java``), compiled into one jar: a Spark plugin and a local file system.

- ``TaskConfPlugin.java``: one SQL conf per Spark task. Spark 4.2 builds a new SQL configuration object each time
  code running in a task asks for it, and its Avro reader asks for every field of every nested record it decodes.
  Decoding 13,980 ZTF alerts into bronze's columns (``from_avro``, ``bench/task_conf.py``) spent about three
  quarters of its CPU there. The plugin gives each task its conf once (the Java file says how). Passed to every
  Spark session by :func:`alertlake.spark.build_spark` (``spark.jars`` and ``spark.plugins``) unless the setting
  ``spark_task_conf_cache`` is false.
- ``LocalFileSystem.java``: Hadoop's ``file://`` file system without a ``chmod`` or ``readlink`` process per file
  (Spark ships no Hadoop native library, so Hadoop starts one). Used when Spark runs locally
  (:func:`local_file_system`) unless the setting ``spark_local_fs_without_processes`` is false.

The jar is compiled with the JDK's ``javac`` against pyspark's jars into the cache by ``make install``
(:func:`build`), named after its sources and Spark's version.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from alertlake.settings import Settings

log = logging.getLogger("alertlake.spark_plugin")

JVM_SOURCES = Path(__file__).resolve().parent / "jvm"
SOURCES: tuple[Path, ...] = (JVM_SOURCES / "TaskConfPlugin.java", JVM_SOURCES / "LocalFileSystem.java")
PLUGIN_CLASS = "org.alertlake.spark.TaskConfPlugin"
#: ``fs.file.impl`` and ``fs.AbstractFileSystem.file.impl`` (the ``FileContext`` side) of a local Spark session.
LOCAL_FS_CLASS = "org.alertlake.hadoop.LocalFileSystem"
LOCAL_FS_CONTEXT_CLASS = "org.alertlake.hadoop.LocalFileSystem$Fs"
FOLDER = "spark-plugin"


def jar_path(settings: Settings) -> Path:
    """Where the jar for these sources and this pyspark lives in the cache."""
    from alertlake.spark import SPARK_VERSION

    digest = hashlib.sha256()
    for source in SOURCES:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return settings.cache_dir / FOLDER / f"alertlake-spark-plugin-{SPARK_VERSION}-{digest.hexdigest()[:16]}.jar"


def built(settings: Settings) -> Path | None:
    """The jar, if it is built."""
    path = jar_path(settings)
    return path if path.is_file() else None


def current(settings: Settings) -> Path | None:
    """The jar when the task-conf plugin is wanted and built, else None."""
    return built(settings) if settings.spark_task_conf_cache else None


def local_file_system(settings: Settings) -> Path | None:
    """The jar when the local file system without processes is wanted and built, else None. Only for a local
    Spark (``local[...]``): the jar goes on the driver's class path (Spark's launcher reads local files before
    ``spark.jars`` are loaded), and on a cluster the executors would not have it."""
    if not settings.spark_local_fs_without_processes or not settings.spark_master.startswith("local"):
        return None
    return built(settings)


def wanted(settings: Settings) -> bool:
    """Whether a session would use the jar (so ``make install`` builds it)."""
    return settings.spark_task_conf_cache or settings.spark_local_fs_without_processes


def javac() -> Path | None:
    """The ``javac`` beside the ``java`` Spark runs (same JDK), else the first on ``PATH``."""
    from alertlake.class_archive import java_binary

    java = java_binary()
    beside = java.with_name("javac") if java is not None else None
    if beside is not None and beside.exists():
        return beside
    found = shutil.which("javac")
    return Path(found) if found else None


def build(settings: Settings) -> Path:
    """Compile the sources into the jar unless it is there; return the jar. Raises with the compiler's output."""
    import pyspark

    path = jar_path(settings)
    if path.is_file():
        return path
    compiler = javac()
    if compiler is None:
        raise RuntimeError("no javac found (a JDK is needed to build AlertLake's JVM classes)")
    classpath = str(Path(pyspark.__file__).parent / "jars" / "*")
    with tempfile.TemporaryDirectory(prefix="alertlake-plugin-") as tmp:
        classes = Path(tmp) / "classes"
        result = subprocess.run(
            [str(compiler), "--release", "17", "-nowarn", "-cp", classpath, "-d", str(classes), *map(str, SOURCES)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            names = ", ".join(str(source) for source in SOURCES)
            raise RuntimeError(f"javac failed on {names}:\n{result.stdout}{result.stderr}")
        partial = Path(tmp) / path.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: alertlake\n\n")
            for file in sorted(classes.rglob("*.class")):
                jar.write(file, file.relative_to(classes).as_posix())
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial, path)  # jars of other sources stay: another checkout sharing the cache may use them
    return path
