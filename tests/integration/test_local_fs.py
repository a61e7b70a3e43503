"""AlertLake's local file system (alertlake/jvm/LocalFileSystem.java) in the tests' own Spark session: it is the one
Spark uses for ``file://``, through ``FileSystem`` and ``FileContext`` alike, and it leaves the same files, modes,
link statuses and errors as Hadoop's own classes."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from alertlake import spark_plugin
from alertlake.settings import Settings


@pytest.fixture
def hadoop(spark: SparkSession, services: Settings) -> Any:
    if spark_plugin.local_file_system(services) is None:
        pytest.fail("the local file system is not in use: run `make install` (it builds alertlake/jvm)")
    return spark.sparkContext._jvm.org.apache.hadoop  # type: ignore[union-attr]


def _conf(spark: SparkSession) -> Any:
    return spark.sparkContext._jsc.hadoopConfiguration()


def _hadoops_own(spark: SparkSession, hadoop: Any) -> Any:
    """Hadoop's own checksummed local file system, initialised on the session's configuration."""
    own = hadoop.fs.LocalFileSystem()
    own.initialize(hadoop.fs.Path("file:///").toUri(), _conf(spark))
    return own


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_spark_reads_and_writes_file_uris_with_alertlakes_classes(spark: SparkSession, hadoop: Any) -> None:
    path = hadoop.fs.Path("file:///")
    assert path.getFileSystem(_conf(spark)).getClass().getName() == spark_plugin.LOCAL_FS_CLASS
    context = hadoop.fs.FileContext.getFileContext(path.toUri(), _conf(spark))
    assert context.getDefaultFileSystem().getClass().getName() == spark_plugin.LOCAL_FS_CONTEXT_CLASS


def test_files_and_folders_get_the_modes_hadoop_gives_them(spark: SparkSession, hadoop: Any, tmp_path: Path) -> None:
    ours = hadoop.fs.Path(tmp_path.as_uri()).getFileSystem(_conf(spark))
    own = _hadoops_own(spark, hadoop)
    for name, fs in (("ours", ours), ("own", own)):
        out = fs.create(hadoop.fs.Path(f"{tmp_path.as_uri()}/{name}/a/file"), True)
        out.write(7)
        out.close()
    for relative in ("a", "a/file", "a/.file.crc"):
        assert _mode(tmp_path / "ours" / relative) == _mode(tmp_path / "own" / relative), relative
    assert (tmp_path / "ours" / "a" / "file").read_bytes() == b"\x07"

    permission = hadoop.fs.permission.FsPermission
    ours.setPermission(hadoop.fs.Path((tmp_path / "ours" / "a" / "file").as_uri()), permission(0o640))
    assert _mode(tmp_path / "ours" / "a" / "file") == 0o640
    ours.setPermission(hadoop.fs.Path((tmp_path / "ours" / "a").as_uri()), permission(0o1777))  # Hadoop's own way
    assert _mode(tmp_path / "ours" / "a") == 0o1777
    with pytest.raises(Py4JJavaError, match=r"NoSuchFileException"):
        ours.setPermission(hadoop.fs.Path((tmp_path / "missing").as_uri()), permission(0o644))


def test_link_status_is_hadoops(spark: SparkSession, hadoop: Any, tmp_path: Path) -> None:
    """Through a ``FileSystem`` and a ``FileContext`` (which resolves symbolic links), as Hadoop's own classes."""
    (tmp_path / "target").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    root = hadoop.fs.Path("file:///").toUri()
    own_conf = hadoop.conf.Configuration(_conf(spark))
    own_conf.set("fs.AbstractFileSystem.file.impl", "org.apache.hadoop.fs.local.LocalFs")
    sides = {
        "FileSystem": (hadoop.fs.Path(tmp_path.as_uri()).getFileSystem(_conf(spark)), _hadoops_own(spark, hadoop)),
        "FileContext": (
            hadoop.fs.FileContext.getFileContext(root, _conf(spark)),
            hadoop.fs.FileContext.getFileContext(root, own_conf),
        ),
    }
    assert sides["FileContext"][1].getDefaultFileSystem().getClass().getName() == "org.apache.hadoop.fs.local.LocalFs"

    def status(fs: Any, name: str) -> tuple[Any, ...]:
        st = fs.getFileLinkStatus(hadoop.fs.Path((tmp_path / name).as_uri()))
        target = str(st.getSymlink().toUri().getPath()) if st.isSymlink() else None
        return (st.isFile(), st.isDirectory(), st.isSymlink(), target, st.getLen(), str(st.getPath()))

    for side, (ours, own) in sides.items():
        for name in ("target", "link", ""):
            assert status(ours, name) == status(own, name), (side, name)
        with pytest.raises(Py4JJavaError, match="FileNotFoundException"):
            ours.getFileLinkStatus(hadoop.fs.Path((tmp_path / "missing").as_uri()))


def test_a_file_context_rename_does_not_overwrite(spark: SparkSession, hadoop: Any, tmp_path: Path) -> None:
    """Spark's checkpoints and Delta's log rename through a ``FileContext``: a destination that exists fails."""
    context = hadoop.fs.FileContext.getFileContext(hadoop.fs.Path("file:///").toUri(), _conf(spark))
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    rename = getattr(hadoop.fs, "Options$Rename")
    options = spark.sparkContext._gateway.new_array(rename, 1)  # type: ignore[union-attr]
    options[0] = rename.NONE
    src, dst = (hadoop.fs.Path((tmp_path / n).as_uri()) for n in ("a", "b"))
    with pytest.raises(Py4JJavaError, match="FileAlreadyExistsException"):
        context.rename(src, dst, options)
    assert (tmp_path / "b").read_text() == "b"
    context.rename(src, hadoop.fs.Path((tmp_path / "c").as_uri()), options)
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
