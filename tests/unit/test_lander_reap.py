"""The bronze lander's single-writer guard: a pipeline finds and kills every process of a lander an earlier run
left (the lander, its JVM, its Python workers: all carry the lander's key in their environment), and only those."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from alertlake.settings import Settings
from jobs.lander import LANDER_ENV, lander_key, lander_processes, reap

# A stand-in for a lander and its JVM: a process with a child, both inheriting the environment.
PARENT_AND_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"
)


def start(key: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if key is not None:
        env[LANDER_ENV] = key
    return subprocess.Popen([sys.executable, "-c", PARENT_AND_CHILD], env=env)


def wait_for(count: int, key: str) -> list[int]:
    deadline = time.monotonic() + 30
    while len(found := lander_processes(key)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_key_is_per_lake_and_pipelines() -> None:
    a = Settings(lake_root="s3a://bucket/lake-a")
    b = Settings(lake_root="s3a://bucket/lake-b")
    assert lander_key(a, {"ztf": "pipeline_ztf"}) == lander_key(a, {"ztf": "pipeline_ztf"})
    assert lander_key(a, {"ztf": "pipeline_ztf"}) != lander_key(b, {"ztf": "pipeline_ztf"})
    assert lander_key(a, {"ztf": "pipeline_ztf"}) != lander_key(a, {"ztf": "pipeline_ztf", "lsst": "pipeline_lsst"})


def test_reap_kills_the_lander_and_its_children_only() -> None:
    mine = start("k-reap-test")
    other_lake = start("k-other")
    plain = start(None)
    try:
        pids = wait_for(2, "k-reap-test")
        assert mine.pid in pids and len(pids) == 2  # the lander and its child
        assert len(wait_for(2, "k-other")) == 2
        assert reap("k-reap-test") == 2
        assert lander_processes("k-reap-test") == []
        assert mine.wait(10) == -9
        # Another lake's lander and a process without the key are left alone.
        assert other_lake.poll() is None and plain.poll() is None
        assert len(lander_processes("k-other")) == 2
        assert reap("k-none") == 0
    finally:
        reap("k-other")
        for proc in (mine, other_lake, plain):
            proc.kill()
            proc.wait(10)
