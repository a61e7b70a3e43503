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


# A process tree shaped like the pipeline's: this child starts a "lander" (its command line names jobs.lander),
# which starts a busy "Python worker" (its command line names pyspark.daemon). The names are joined at run time so
# that no command line holds them before its process is meant to.
TREE = """
import subprocess, sys, time
busy = "import time\\nwhile time.process_time() < 0.6: pass"
lander = (
    "import subprocess, sys, time\\n"
    f"w = subprocess.Popen([sys.executable, '-c', {busy!r}, 'pyspark' + '.daemon'])\\n"
    "w.wait()"
)
child = subprocess.Popen([sys.executable, "-c", lander, "jobs" + ".lander"])
child.wait()
"""


def test_cpu_is_split_by_part_of_the_tree() -> None:
    root = subprocess.Popen([sys.executable, "-c", TREE])
    sampler = PeakSampler(root.pid, memory=False)
    while root.poll() is None:
        sampler.sample()
        time.sleep(0.05)
    parts = sampler.cpu_by_part(root.pid)
    assert set(parts) >= {"python", "lander python", "lander python workers"}, parts
    assert parts["lander python workers"] >= 0.4, parts  # the busy loop's 0.6 CPU-s, less what the last sample missed
    assert parts["lander python workers"] > 5 * parts["lander python"], parts
    assert sum(parts.values()) == sampler.cpu_seconds[root.pid]
