"""``bench/memory.py``: the peak of a process tree's memory, with PSS read only as the tree grows."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.memory import PeakSampler

# A child that holds 40 MB, then 200 MB more for a second, then lets them go and idles.
CHILD = """
import time
a = b"\\x01" * (40 << 20)
time.sleep(0.6)
b = b"\\x01" * (200 << 20)
time.sleep(1.0)
del b
time.sleep(1.5)
"""


def test_peak_pss_is_caught_with_few_pss_readings() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    sampler = PeakSampler(child.pid, every=0.05, pss_every=60)
    samples = 0
    while child.poll() is None:
        sampler.sample()
        samples += 1
        time.sleep(sampler.every)
    assert sampler.peak >= 230 << 20, sampler.peak  # the 240 MB held at the peak (PSS: not shared with anyone)
    assert sampler.peak <= sampler.peak_rss_sum
    # PSS was read while the child grew, not at each of the ~60 samples of its 3 s.
    assert samples >= 30
    assert 1 <= sampler.pss_readings <= samples // 3, (sampler.pss_readings, samples)
