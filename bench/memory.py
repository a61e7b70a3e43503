"""Resident memory of process trees, for the benchmarks' ``peak_rss_gib``.

Spark's Python workers are forked from one daemon and share most of their pages with it, so summing each
process's RSS counts those pages once per worker (in the ingestion bench's 120 s latency run: 8.6 GiB summed
against 4.7 GiB at a comparable moment of a 60 s run). The figure reported is the sum of PSS (proportional set
size: resident pages, each shared page divided among the processes sharing it), the tree's real footprint;
the RSS sum is kept beside it.
"""

from __future__ import annotations

import threading
import time

import psutil


def tree_memory(roots: list[psutil.Process]) -> tuple[int, int]:
    """(sum of PSS, sum of RSS) in bytes over ``roots`` and all their descendants."""
    pss = rss = 0
    for root in roots:
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in members:
            try:
                info = member.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            pss += getattr(info, "pss", info.rss)
            rss += info.rss
    return pss, rss


def tree_cpu(root: psutil.Process, reaped: bool = False) -> dict[int, float]:
    """CPU seconds (user + system) used so far by ``root`` and each of its descendants, by pid; with ``reaped``,
    each also counts the time of its children that have ended and that it has waited for."""
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
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
    """Samples process trees every 0.5 s: keeps the peaks (bytes) of their PSS and RSS sums, and the CPU seconds
    each tree used (:attr:`cpu_seconds`, per root pid; a descendant that exits keeps its last sampled time).
    Without :meth:`start`, :meth:`sample` by hand around a piece of work measures the CPU it took (bench/stages.py)."""

    def __init__(self, *pids: int, memory: bool = True, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak, self.peak_rss_sum, self.running = pids, 0, 0, True
        self.memory, self.every = memory, every  # memory=False: CPU only (reading PSS is itself costly)
        self._cpu: dict[int, dict[int, float]] = {pid: {} for pid in pids}

    @property
    def cpu_seconds(self) -> dict[int, float]:
        """CPU seconds used by each root's tree while sampled."""
        return {pid: sum(members.values()) for pid, members in self._cpu.items()}

    def sample(self) -> None:
        roots = []
        for pid in self.pids:
            try:
                roots.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
            self._cpu[pid].update(tree_cpu(roots[-1]))
        if self.memory:
            pss, rss = tree_memory(roots)
            self.peak, self.peak_rss_sum = max(self.peak, pss), max(self.peak_rss_sum, rss)

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(self.every)

    def stop(self) -> None:
        self.running = False
        self.join(5)
