"""AlertLake's Spark plugin (``alertlake/jvm/TaskConfPlugin.java``): one SQL conf per Spark task.

Spark 4.2 builds a new SQL configuration object each time code running in a task asks for it, and its Avro reader
asks for every field of every nested record it decodes. Decoding 13,980 ZTF alerts into bronze's columns
(``from_avro``, ``bench/task_conf.py``) spent about three quarters of its CPU there. The plugin gives each task
its conf once (the Java file says how). It is compiled with the JDK's ``javac`` against pyspark's jars into the
cache by ``make install`` (:func:`build`), named after its source and Spark's version, and passed to every Spark
session by :func:`alertlake.spark.build_spark` (``spark.jars`` and ``spark.plugins``) unless the setting
``spark_task_conf_cache`` is false.
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

SOURCE = Path(__file__).resolve().parent / "jvm" / "TaskConfPlugin.java"
PLUGIN_CLASS = "org.alertlake.spark.TaskConfPlugin"
FOLDER = "spark-plugin"


def jar_path(settings: Settings) -> Path:
    """Where the plugin jar for this source and this pyspark lives in the cache."""
    from alertlake.spark import SPARK_VERSION

    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    return settings.cache_dir / FOLDER / f"alertlake-spark-plugin-{SPARK_VERSION}-{digest}.jar"


def current(settings: Settings) -> Path | None:
    """The plugin jar when it is wanted and built, else None."""
    if not settings.spark_task_conf_cache:
        return None
    path = jar_path(settings)
    return path if path.is_file() else None


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
    """Compile the plugin into its jar unless it is there; return the jar. Raises with the compiler's output."""
    import pyspark

    path = jar_path(settings)
    if path.is_file():
        return path
    compiler = javac()
    if compiler is None:
        raise RuntimeError("no javac found (a JDK is needed to build AlertLake's Spark plugin)")
    classpath = str(Path(pyspark.__file__).parent / "jars" / "*")
    with tempfile.TemporaryDirectory(prefix="alertlake-plugin-") as tmp:
        classes = Path(tmp) / "classes"
        result = subprocess.run(
            [str(compiler), "--release", "17", "-nowarn", "-cp", classpath, "-d", str(classes), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise RuntimeError(f"javac failed on {SOURCE}:\n{result.stdout}{result.stderr}")
        partial = Path(tmp) / path.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nCreated-By: alertlake\n\n")
            for file in sorted(classes.rglob("*.class")):
                jar.write(file, file.relative_to(classes).as_posix())
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial, path)  # jars of other sources stay: another checkout sharing the cache may use them
    return path
