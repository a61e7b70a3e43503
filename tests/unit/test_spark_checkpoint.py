"""alertlake.spark.start_stream after a run killed while writing its first batch's offsets.

Such a run leaves only Spark's hidden temporary file in the checkpoint's offsets folder; Spark then refuses to
start the query again. The ingestion kill test (tests/integration/test_ingest_faults.py) met this when a kill came
that early. Here the leftover is planted as Spark names it, with a real local Spark session (no services needed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from alertlake.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QUERY = "checkpoint_probe"


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    from alertlake.spark import build_spark

    yield build_spark(Settings(), "alertlake-checkpoint-tests", {"spark.ui.enabled": "false"})


def _source(spark: SparkSession, folder: Path, ids: range) -> DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rows-{ids.start}.json").write_text("".join(json.dumps({"id": i}) + "\n" for i in ids))
    return spark.readStream.schema("id LONG").json(str(folder))


def _plant_killed_first_write(checkpoint: Path) -> list[Path]:
    """What a SIGKILL between Spark's write of offsets/0 and its rename leaves (its names, an empty file)."""
    offsets = checkpoint / "offsets"
    offsets.mkdir(parents=True)
    (checkpoint / "commits").mkdir()
    temp = offsets / f".0.{uuid.uuid4()}.tmp"
    temp.write_bytes(b"")
    crc = offsets / f".{temp.name}.crc"
    crc.write_bytes(b"")
    return [temp, crc]


def test_spark_alone_refuses_such_a_checkpoint(spark: SparkSession, tmp_path: Path) -> None:
    """Why start_stream clears it: without that, every restart of the job fails at once."""
    from pyspark.errors import StreamingQueryException

    checkpoint = tmp_path / "checkpoint"
    _plant_killed_first_write(checkpoint)
    query = (
        _source(spark, tmp_path / "in", range(5))
        .writeStream.format("noop")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    with pytest.raises(StreamingQueryException, match="STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY"):
        query.awaitTermination(120)


def test_start_stream_restarts_after_a_kill_during_the_first_offset_write(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from alertlake.lake import checkpoint_uri
    from alertlake.spark import start_stream

    settings = Settings(lake_root=str(tmp_path / "lake"))
    checkpoint = Path(checkpoint_uri(settings, QUERY).removeprefix("file://"))
    planted = _plant_killed_first_write(checkpoint)
    seen: list[int] = []

    def batch(frame: DataFrame, batch_id: int) -> None:
        seen.extend(row.id for row in frame.collect())

    query = start_stream(settings, _source(spark, tmp_path / "in", range(7)), QUERY, batch, "available-now")
    query.awaitTermination(120)
    assert query.exception() is None
    assert sorted(seen) == list(range(7))
    assert not any(path.exists() for path in planted)
    assert (checkpoint / "offsets" / "0").is_file() and (checkpoint / "commits" / "0").is_file()
    warning = [r.getMessage() for r in caplog.records if "unfinished file" in r.getMessage()]
    assert len(warning) == 1 and planted[0].name in warning[0]


def test_a_started_checkpoint_keeps_its_files(spark: SparkSession, tmp_path: Path) -> None:
    """Once a batch is logged, Spark ignores stray temporary files itself: nothing is removed, the query resumes
    after the batches it has done."""
    from alertlake.lake import checkpoint_uri
    from alertlake.spark import clear_unstarted_checkpoint, start_stream

    settings = Settings(lake_root=str(tmp_path / "lake"))
    location = checkpoint_uri(settings, QUERY)
    checkpoint = Path(location.removeprefix("file://"))
    seen: list[int] = []

    def batch(frame: DataFrame, batch_id: int) -> None:
        seen.extend(row.id for row in frame.collect())

    first = start_stream(settings, _source(spark, tmp_path / "in", range(3)), QUERY, batch, "available-now")
    first.awaitTermination(120)
    stray = checkpoint / "offsets" / f".1.{uuid.uuid4()}.tmp"
    stray.write_bytes(b"")
    assert clear_unstarted_checkpoint(spark, location) == []
    assert stray.exists()

    again = start_stream(settings, _source(spark, tmp_path / "in", range(3, 5)), QUERY, batch, "available-now")
    again.awaitTermination(120)
    assert again.exception() is None
    assert sorted(seen) == list(range(5))


def test_other_hidden_files_are_left_to_spark(spark: SparkSession, tmp_path: Path) -> None:
    """Only Spark's temporary files are removed: with anything else beside them, nothing is touched."""
    from alertlake.spark import clear_unstarted_checkpoint

    checkpoint = tmp_path / "checkpoint"
    planted = _plant_killed_first_write(checkpoint)
    other = checkpoint / "commits" / ".keep"
    other.write_bytes(b"")
    assert clear_unstarted_checkpoint(spark, f"file://{checkpoint}") == []
    assert all(path.exists() for path in [*planted, other])
    assert clear_unstarted_checkpoint(spark, f"file://{tmp_path / 'nothing-here'}") == []
