"""The Spark driver's class archive is named after exactly what it depends on (pure logic, no JVM)."""

from __future__ import annotations

import os
from pathlib import Path

from alertlake import class_archive
from alertlake.settings import Settings


def _jdk(root: Path) -> Path:
    java = root / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    server = root / "jdk" / "lib" / "server"
    server.mkdir(parents=True)
    (server / "libjvm.so").write_bytes(b"jvm")
    return java


def test_archive_name_follows_the_jdk_and_every_jar(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    java = _jdk(tmp_path)
    jars = []
    for name in ("spark-core.jar", "delta-spark.jar"):
        jar = tmp_path / name
        jar.write_bytes(b"classes")
        jars.append(jar)

    first = class_archive.archive_path(settings, jars, java)
    assert first is not None and first.parent == tmp_path / "cache" / class_archive.FOLDER
    assert first == class_archive.archive_path(settings, list(reversed(jars)), java)  # order of listing is not a change

    stat = jars[1].stat()
    os.utime(jars[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a reinstalled jar
    assert class_archive.archive_path(settings, jars, java) != first
    assert class_archive.archive_path(settings, jars[:1], java) != class_archive.archive_path(settings, jars, java)

    libjvm = java.parents[1] / "lib" / "server" / "libjvm.so"
    before = class_archive.archive_path(settings, jars, java)
    libjvm.write_bytes(b"another jvm build")  # an in-place JDK update keeps the path of java
    assert class_archive.archive_path(settings, jars, java) != before

    assert class_archive.archive_path(settings, jars, None) is None


def test_no_archive_when_turned_off(tmp_path: Path) -> None:
    assert class_archive.current(Settings(cache_dir=tmp_path, spark_class_archive=False)) is None
