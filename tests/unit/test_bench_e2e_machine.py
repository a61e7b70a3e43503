"""``bench/e2e.py``'s machine figures: the share of CPU time busy during the load, from ``/proc/stat``."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from bench import e2e


def test_busy_and_stolen_shares_of_the_ticks_between_two_snapshots() -> None:
    # (busy, idle, stolen) ticks since boot: 300 busy, 100 idle and 100 stolen in between.
    assert e2e.busy_fractions((1_000, 5_000, 10), (1_300, 5_100, 110)) == {"busy": 0.6, "stolen": 0.2}
    assert e2e.busy_fractions((1, 2, 3), (1, 2, 3)) == {}  # no tick in between: no figure rather than 0/0


def test_lander_restarts_are_counted_from_the_pipeline_log(tmp_path: Path) -> None:
    log = tmp_path / "pipeline.log"
    assert e2e.lander_restarts(log) == 0  # no log: no restart
    log.write_text(
        "INFO alertlake.lander: bronze lander: 10 batches (35320 messages) waiting\n"
        "ERROR alertlake.lander: the bronze lander exited with code -6; starting it again (its batches stay marked)\n"
        "INFO alertlake.lander: bronze lander of ztf=pipeline_ztf: nice 19, pid 7501\n"
        "ERROR alertlake.lander: the bronze lander exited with code 1; starting it again (its batches stay marked)\n"
        "ERROR alertlake.lander: the bronze lander exited with code 1, 4 times in a row; see its log\n"
    )
    assert e2e.lander_restarts(log) == 2  # the last failure is not a restart: the pipeline stops


def test_the_load_waits_for_the_real_streaming_queries_not_the_warm_up_query() -> None:
    # The pipeline's warm-up runs its own query (bounded) before the real one: the load must not start then.
    warm_up = (
        b"2026-12-04 21:17:47,570 INFO alertlake.spark: streaming query pipeline_ztf_warm_up started (available-now)"
    )
    real = b"2026-12-04 21:18:21,809 INFO alertlake.spark: streaming query pipeline_ztf started (continuous)"
    assert not e2e.STARTED.search(warm_up)
    assert e2e.STARTED.search(warm_up + b"\n" + real)


def test_the_competing_load_takes_its_duty_of_a_core_and_says_so() -> None:
    with e2e.CompetingLoad(1, 0.5) as load:
        time.sleep(2.0)
    figures = load.figures()
    assert figures["processes"] == 1 and figures["seconds"] >= 2.0
    assert 0.5 <= figures["cpu_seconds"] <= 1.6, figures  # half of 2 s, give or take a busy host and start-up
    assert all(proc.poll() is not None for proc in load.procs)  # stopped and reaped


def test_a_busy_loop_shows_in_the_machine_ticks() -> None:
    before = e2e.cpu_jiffies()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = e2e.cpu_jiffies()
    assert after[0] - before[0] >= 20  # 0.3 s of this process at 100 ticks per second, at least
    assert all(b >= a for a, b in zip(before, after, strict=True))
    shares = e2e.busy_fractions(before, after)
    assert 0 < shares["busy"] <= 1


def test_the_timestamp_reader_reads_what_the_full_decode_reads() -> None:
    """The benchmark's reader decodes only ``kafka_timestamp`` of each filter message; on real enriched rows (every
    module's outputs, the light curve) it must agree with the whole decode scientists' clients make."""
    import pyarrow as pa

    from alertlake.consume import decode_message, encoder, schema_key, stream_schema
    from tests.silver_sample import silver_table

    table = silver_table()
    rows = table.to_pylist()
    for i, row in enumerate(rows):  # each its own time, to the microsecond, and a null one
        row["kafka_timestamp"] = None if i == 1 else row["kafka_timestamp"] + dt.timedelta(microseconds=i * 1_000_003)
    schema = stream_schema(table.schema)
    encode, key, decode = encoder(schema), schema_key(schema), e2e.timestamp_decoder()
    assert len(rows) > 100 and isinstance(table.schema.field("kafka_timestamp").type, pa.TimestampType)
    for row in rows:
        value = encode(row)
        assert decode(key, value) == {"kafka_timestamp": decode_message(key, value)["kafka_timestamp"]}
        assert decode(key, value)["kafka_timestamp"] == row["kafka_timestamp"]
