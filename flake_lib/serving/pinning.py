"""Which CPUs a process runs on: the one place Flake sets CPU affinity.

On the two-core machines Flake is measured on, the frontend gets one core and the workers share the
other (:func:`placement`), so that the frontend's own work does not queue behind an inference. A worker
pins itself for its whole life (:func:`pin`); the frontend, and a measurement of service times or of the
link, pins itself for a ``with`` block (:func:`pinned`). Where the machine does not allow it (no
``sched_setaffinity``, or the CPUs are not available here) nothing is pinned and the CPU set in use is
reported instead, so that results say where they ran.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

CpuSet = tuple[int, ...]


def current() -> CpuSet:
    """The CPUs this process may run on (empty where the system does not say)."""
    return tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else ()


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPUs' worth of time this process's control group may use (cgroup v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``); None where no quota is set or the system does not say."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def fit_to_quota(quota: float | None = None) -> CpuSet:
    """Where a CPU quota is smaller than the CPU set (a container limited to 2 CPUs' worth of time on a
    64-CPU host), pin this process, and so every process it starts, to as many CPUs as the quota pays
    for: thread pools (torch, OpenMP) and :func:`placement` then size themselves from what the process
    can use, instead of running 64 threads on 2 CPUs' worth of time. Returns the CPU set in use."""
    quota = cpu_quota() if quota is None else quota
    cpus = current()
    if quota and cpus and math.ceil(quota) < len(cpus):
        return pin(cpus[: max(1, math.ceil(quota))])
    return cpus


def pin(cpus: CpuSet | None) -> CpuSet:
    """Pin this process to ``cpus`` where possible; return the CPU set it runs on (empty: unknown)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, set(cpus))
        except (OSError, ValueError):
            pass  # CPUs not available here: run where the system places us, and say so
    return current()


@contextlib.contextmanager
def pinned(cpus: CpuSet | None):
    """This process on ``cpus`` for the ``with`` block (nothing where there are none or no affinity);
    yields the CPU set it runs on, and restores the previous one afterwards."""
    previous = current() if cpus and hasattr(os, "sched_setaffinity") else ()
    try:
        yield pin(cpus) if previous else current()
    finally:
        if previous:
            pin(previous)


def placement(frontend_cores: int = 1) -> tuple[CpuSet | None, CpuSet | None]:
    """``(frontend_cpus, worker_cpus)``: the first ``frontend_cores`` CPUs this process may use go to
    the frontend, the others to the workers (all workers share them). ``(None, None)`` (no pinning)
    where the machine does not allow it or has fewer than two CPUs."""
    cpus = list(current())
    if len(cpus) < 2 or frontend_cores < 1:
        return None, None
    frontend_cores = min(frontend_cores, len(cpus) - 1)
    return tuple(cpus[:frontend_cores]), tuple(cpus[frontend_cores:])
