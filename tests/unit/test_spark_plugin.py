"""alertlake.spark_plugin: the plugin jar is compiled from its source into the cache, named after it, and only
used when the setting wants it."""

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
    assert spark_plugin.current(settings) == jar
    assert spark_plugin.build(settings) == jar  # built once
    assert spark_plugin.current(Settings(cache_dir=tmp_path, spark_task_conf_cache=False)) is None


def test_another_source_gets_another_jar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(cache_dir=tmp_path)
    first = spark_plugin.jar_path(settings)
    changed = tmp_path / "TaskConfPlugin.java"
    changed.write_text(spark_plugin.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(spark_plugin, "SOURCE", changed)
    assert spark_plugin.jar_path(settings) != first


def test_a_source_that_does_not_compile_fails_with_the_compiler_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "TaskConfPlugin.java"
    broken.write_text("package org.alertlake.spark;\npublic class TaskConfPlugin { nonsense }\n")
    monkeypatch.setattr(spark_plugin, "SOURCE", broken)
    with pytest.raises(RuntimeError, match=r"javac failed on .*TaskConfPlugin\.java:\n.*error"):
        spark_plugin.build(Settings(cache_dir=tmp_path / "cache"))
    assert not spark_plugin.jar_path(Settings(cache_dir=tmp_path / "cache")).exists()
