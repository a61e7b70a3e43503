"""Where the real-time pipeline's warm-up query writes and reads: a scratch lake inside the lake, a topic of its own."""

from __future__ import annotations

from pathlib import Path

from alertlake.settings import Settings
from jobs import pipeline


def test_the_warm_up_writes_in_a_scratch_lake_inside_the_lake_and_registers_nothing(tmp_path: Path) -> None:
    local = Settings(lake_root=str(tmp_path / "lake"), trino_register=True)
    scratch = pipeline.scratch_settings(local, "ztf")
    assert scratch.lake_uri == f"{(tmp_path / 'lake').resolve().as_uri()}/_warm_up/pipeline_ztf"
    assert scratch.lake_is_local and not scratch.trino_register
    assert local.trino_register  # the job's own settings are not touched

    remote = pipeline.scratch_settings(Settings(lake_root="s3a://bucket/alertlake/"), "lsst")
    assert remote.lake_uri == "s3a://bucket/alertlake/_warm_up/pipeline_lsst"


def test_the_warm_up_topic_is_the_survey_topic_s_own_and_no_stream() -> None:
    settings = Settings(topic_prefix="staging-")
    assert pipeline.warm_up_topic(settings, "ztf") == "staging-ztf.warm-up"
    assert not pipeline.warm_up_topic(settings, "lsst").startswith("alertlake.")  # `alertlake consume --list`
