"""Resident memory of process trees, for the benchmarks' ``peak_rss_gib``.

Spark's Python workers are forked from one daemon and share most of their pages with it, so summing each
process's RSS counts those pages once per worker (in the ingestion bench's 120 s latency run: 8.6 GiB summed
against 4.7 GiB at a comparable moment of a 60 s run). The figure reported is the sum of PSS (proportional set
size: resident pages, each shared page divided among the processes sharing it), the tree's real footprint;
the RSS sum is kept beside it.

Reading PSS is not free: the kernel walks every resident page of the process for ``/proc/<pid>/smaps_rollup``,
about 28 ms of CPU per GiB resident on this host (2026-12-03: 20 ms for Kafka's 0.71 GiB broker, 25 ms for
Trino's 0.67 GiB). Read every second over a 6-9 GiB pipeline, that was a fifth of one of the two cores the
pipeline runs on, taken from the work being measured. So :class:`PeakSampler` reads RSS (a few microseconds a
process) at every sample and PSS only when the RSS sum has grown since the last PSS reading, or at the latest
every ``pss_every`` seconds: the PSS peak, like the RSS one, comes with the tree's growth.
"""

from __future__ import annotations

import threading
import time

import psutil


def tree_members(roots: list[psutil.Process]) -> list[psutil.Process]:
    """``roots`` and all their descendants (a root that has exited is left out)."""
    members: list[psutil.Process] = []
    for root in roots:
        try:
            members += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return members


def tree_memory(members: list[psutil.Process], pss: bool = True) -> tuple[int, int]:
    """(sum of PSS, sum of RSS) in bytes over ``members`` (:func:`tree_members`); without ``pss``, (0, sum of
    RSS), which needs no walk of their pages."""
    pss_sum = rss_sum = 0
    for member in members:
        try:
            info = member.memory_full_info() if pss else member.memory_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss_sum += getattr(info, "pss", info.rss) if pss else 0
        rss_sum += info.rss
    return pss_sum, rss_sum


def part_of(process: psutil.Process) -> str:
    """Which part of a Spark job's process tree ``process`` is: ``jvm``, ``python workers`` (Spark's daemon and the
    workers it forks) or ``python`` (the job's own driver), prefixed ``lander`` when the bronze lander
    (:mod:`jobs.lander`) or one of its children started it."""
    try:
        chain = [process, *process.parents()]
        lines = [" ".join(p.cmdline()) for p in chain]
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "gone"
    prefix = "lander " if any("jobs.lander" in line for line in lines) else ""
    if name == "java" or lines[0].split(" ")[0].endswith("/java"):
        return prefix + "jvm"
    if "pyspark.daemon" in lines[0] or "pyspark.worker" in lines[0]:
        return prefix + "python workers"
    return prefix + "python"


def tree_cpu(members: list[psutil.Process], reaped: bool = False) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of ``members`` (:func:`tree_members`), by pid; with
    ``reaped``, each also counts the time of its children that have ended and that it has waited for."""
    out = {}
    for member in members:
        try:
            times = member.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[member.pid] = times.user + times.system
        if reaped:
            out[member.pid] += times.children_user + times.children_system
    return out


class PeakSampler(threading.Thread):
    """Samples process trees every 0.5 s: keeps the peaks (bytes) of their PSS and RSS sums (PSS read as the module
    docstring says), and the CPU seconds each tree used (:attr:`cpu_seconds`, per root pid; a descendant that
    exits keeps its last sampled time).
    Without :meth:`start`, :meth:`sample` by hand around a piece of work measures the CPU it took (bench/stages.py)."""

    def __init__(
        self, *pids: int, memory: bool = True, every: float = 0.5, pss_every: float = 30.0, growth: float = 0.02
    ) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak, self.peak_rss_sum, self.running = pids, 0, 0, True
        self.memory, self.every = memory, every  # memory=False: CPU only (reading PSS is itself costly)
        # PSS is read when the RSS sum exceeds that of the last PSS reading by ``growth``, or after ``pss_every``.
        self.pss_every, self.growth = pss_every, growth
        self.pss_readings = 0
        self._rss_at_pss, self._pss_at = -1, 0.0
        self._cpu: dict[int, dict[int, float]] = {pid: {} for pid in pids}
        self._part: dict[int, str] = {}  # each sampled pid's part_of, read again when its name changes
        self._named: dict[int, str] = {}

    @property
    def cpu_seconds(self) -> dict[int, float]:
        """CPU seconds used by each root's tree while sampled."""
        return {pid: sum(members.values()) for pid, members in self._cpu.items()}

    def cpu_by_part(self, root: int) -> dict[str, float]:
        """CPU seconds used so far by each part (:func:`part_of`) of ``root``'s tree while sampled."""
        parts: dict[str, float] = {}
        for pid, seconds in self._cpu[root].items():
            part = self._part.get(pid, "gone")
            parts[part] = parts.get(part, 0.0) + seconds
        return parts

    def sample(self) -> None:
        members = []  # every tree, walked once a sample (a walk reads every process of the machine)
        for pid in self.pids:
            try:
                tree = tree_members([psutil.Process(pid)])
            except psutil.NoSuchProcess:
                continue
            self._cpu[pid].update(tree_cpu(tree))
            for member in tree:  # again when the name changed: spark-submit's shell becomes the JVM by exec
                try:
                    name = member.name()
                except psutil.NoSuchProcess:
                    continue
                if self._named.get(member.pid) != name:
                    self._named[member.pid], self._part[member.pid] = name, part_of(member)
            members += tree
        if self.memory:
            _, rss = tree_memory(members, pss=False)
            self.peak_rss_sum = max(self.peak_rss_sum, rss)
            now = time.monotonic()
            if rss > self._rss_at_pss * (1 + self.growth) or now - self._pss_at >= self.pss_every:
                pss, rss = tree_memory(members)
                self.peak, self.peak_rss_sum = max(self.peak, pss), max(self.peak_rss_sum, rss)
                self._rss_at_pss, self._pss_at = rss, now
                self.pss_readings += 1

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(self.every)

    def stop(self) -> None:
        self.running = False
        self.join(5)
