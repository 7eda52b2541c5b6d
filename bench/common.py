"""Measuring helpers shared by the benchmarks."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from tgstream.adapters.feeds import Unit
from tgstream.adapters.ffmpeg import Recipe


def proc_cpu(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds so far of one live process (0 once it is gone); ``reaped``: with the
    children it has waited for (a PostgreSQL server's ended backends)."""
    with contextlib.suppress(OSError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        if reaped:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def descendants_cpu(root: int) -> float:
    """CPU seconds so far of every live descendant of ``root``, from /proc."""
    total = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                for kid in (int(k) for k in (task / "children").read_text().split()):
                    total += proc_cpu(kid)
                    todo.append(kid)
    return total


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and everything under it: the live descendants, and the children
    it reaped."""
    return proc_cpu(root, reaped=True) + descendants_cpu(root)


@dataclass
class CpuClock:
    """CPU seconds of this process and all its children (live ones from /proc, reaped ones from
    getrusage) between start() and stop(), so a window can exclude start-up."""

    wall: float = 0.0
    self_cpu: float = 0.0
    children_cpu: float = 0.0
    _t: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @staticmethod
    def _now() -> tuple[float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = reaped.ru_utime + reaped.ru_stime + descendants_cpu(os.getpid())
        return time.monotonic(), me.ru_utime + me.ru_stime, children

    def start(self) -> CpuClock:
        self._t = self._now()
        return self

    def stop(self) -> CpuClock:
        t = self._now()
        self.wall = t[0] - self._t[0]
        self.self_cpu = t[1] - self._t[1]
        self.children_cpu = t[2] - self._t[2]
        return self

    @property
    def total_per_minute(self) -> float:
        return (self.self_cpu + self.children_cpu) * 60 / self.wall

    @property
    def children_per_minute(self) -> float:
        return self.children_cpu * 60 / self.wall

    @property
    def self_per_minute(self) -> float:
        return self.self_cpu * 60 / self.wall


@dataclass
class NullOutput:
    """Discards units, counting them and noting when the first one arrived."""

    recipe: Recipe
    name: str = "null"
    reports_flowing: bool = False
    units: int = 0
    bytes: int = 0
    first_at: float | None = None
    arrivals: list[float] = field(default_factory=list)

    async def open(self) -> None:
        pass

    async def write(self, unit: Unit) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.units += 1
        self.bytes += len(unit.data) + len(unit.audio)

    async def close(self) -> None:
        pass


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(values):.3f}, p95 {p95:.3f}, max {max(values):.3f} "
        f"(n={len(values)})"
    )


def provenance(command: str, machine: str) -> str:
    """The first line of every section of docs/benchmarks.md: when, how and where it ran."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"Run on {stamp} with {command}, on {machine}."
