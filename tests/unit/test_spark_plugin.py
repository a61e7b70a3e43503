"""alertlake.spark_plugin: the jar is compiled from its sources into the cache, named after them, and each of its
parts is only used when its setting wants it (the local file system only with a local Spark)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from alertlake import spark_plugin
from alertlake.settings import Settings


def test_the_jar_is_built_from_the_source_and_named_after_it(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    assert spark_plugin.current(settings) is None  # not built yet

    jar = spark_plugin.build(settings)

    assert jar == spark_plugin.jar_path(settings) and jar.parent == tmp_path / spark_plugin.FOLDER
    with zipfile.ZipFile(jar) as archive:
        names = set(archive.namelist())
    assert "org/alertlake/spark/TaskConfPlugin.class" in names
    assert "org/alertlake/spark/TaskConfPlugin$Executor.class" in names
    for name in (spark_plugin.LOCAL_FS_CLASS, spark_plugin.LOCAL_FS_CONTEXT_CLASS):
        assert name.replace(".", "/") + ".class" in names
    assert spark_plugin.current(settings) == jar
    assert spark_plugin.local_file_system(settings) == jar
    assert spark_plugin.build(settings) == jar  # built once
    assert spark_plugin.current(Settings(cache_dir=tmp_path, spark_task_conf_cache=False)) is None
    assert spark_plugin.local_file_system(Settings(cache_dir=tmp_path, spark_local_fs_without_processes=False)) is None
    assert spark_plugin.local_file_system(Settings(cache_dir=tmp_path, spark_master="spark://spark:7077")) is None


def test_another_source_gets_another_jar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(cache_dir=tmp_path)
    first = spark_plugin.jar_path(settings)
    changed = tmp_path / "TaskConfPlugin.java"
    changed.write_text(spark_plugin.SOURCES[0].read_text() + "\n// changed\n")
    monkeypatch.setattr(spark_plugin, "SOURCES", (changed, *spark_plugin.SOURCES[1:]))
    assert spark_plugin.jar_path(settings) != first


def test_a_source_that_does_not_compile_fails_with_the_compiler_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "TaskConfPlugin.java"
    broken.write_text("package org.alertlake.spark;\npublic class TaskConfPlugin { nonsense }\n")
    monkeypatch.setattr(spark_plugin, "SOURCES", (broken, *spark_plugin.SOURCES[1:]))
    with pytest.raises(RuntimeError, match=r"javac failed on .*TaskConfPlugin\.java.*:\n.*error"):
        spark_plugin.build(Settings(cache_dir=tmp_path / "cache"))
    assert not spark_plugin.jar_path(Settings(cache_dir=tmp_path / "cache")).exists()
