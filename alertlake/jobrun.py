"""Run a Spark job (``python -m jobs.<name>``) as a child process, its output streamed into the caller's log.

Airflow tasks use this to start and supervise jobs: the job's own log lines (rates, consumer lag, batch
figures) appear in the task log as they happen, and a failure raises with the tail of that output.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

log = logging.getLogger("alertlake.jobrun")


class JobFailed(RuntimeError):
    """A job exited non-zero; the message carries its last output lines."""


def run_job(
    module: str, args: list[str], timeout: float | None = None, env: dict[str, str] | None = None, nice: int = 0
) -> float:
    """Run ``python -m <module> <args>`` to completion; returns its duration in seconds.

    ``nice`` lowers the job's CPU priority (background work that must only take idle CPU).

    Raises :class:`JobFailed` (with the last 40 lines of output) when it exits non-zero or overruns
    ``timeout`` seconds.
    """
    cmd = [sys.executable, "-m", module, *args]
    log.info("starting %s", " ".join(cmd))
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if "alertlake" in line or "ERROR" in line or "Exception" in line:
                log.info("%s | %s", module, line)
            if timeout and time.monotonic() - started > timeout:
                proc.kill()
                raise JobFailed(f"{module} ran over {timeout:.0f}s and was stopped:\n" + "\n".join(tail))
        code = proc.wait()
    if code != 0:
        raise JobFailed(f"{module} exited with {code}:\n" + "\n".join(tail))
    return time.monotonic() - started
