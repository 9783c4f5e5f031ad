"""Peak memory of a process tree, the one sampler every benchmark uses.

Each process's peak is the kernel's high-water mark (VmHWM), so a short spike between two samples is
not missed; the tree's total is the sum of current RSS at each sample (it counts shared pages, such as
Ray's object store, once per process).
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from pathlib import Path

import psutil


def _high_water(pid: int) -> int:
    """Peak RSS of a process in bytes (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakRSS:
    """Samples a process (this one by default) and all its descendants every `every` seconds, keeping
    each process's peak (by PID, with its name) and the peak of their sum."""

    def __init__(self, pid: int | None = None, every: float = 0.5):
        self.root, self.every = psutil.Process(pid or os.getpid()), every
        self.peaks: dict[int, tuple[str, int]] = {}
        self.total_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self) -> None:
        try:
            processes = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for p in processes:
            try:
                total += p.memory_info().rss
                name = " ".join(p.cmdline()[:1]) or p.name()
            except psutil.Error:
                continue
            label = "driver" if p.pid == self.root.pid else Path(name.split()[0]).name if name.startswith("/") else name
            old_label, old_peak = self.peaks.get(p.pid, (label, 0))
            if old_label.startswith("ray::") and old_label != "ray::IDLE" and not label.startswith("ray::"):
                label = old_label  # a worker's task title wins over its idle or start-up name
            elif label == "ray::IDLE" and old_label.startswith("ray::"):
                label = old_label
            self.peaks[p.pid] = (label, max(old_peak, _high_water(p.pid)))
        self.total_peak = max(self.total_peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._poll()

    def __enter__(self):
        self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._poll()

    def wait(self) -> int:
        """Wait for the root (a child of this process) to exit; its exit code. The kernel's own account
        of the root's peak (wait4's ru_maxrss) is kept too: a process that ends between two samples
        would otherwise lose the end of its run."""
        _, status, usage = os.wait4(self.root.pid, 0)
        label, peak = self.peaks.get(self.root.pid, ("driver", 0))
        self.peaks[self.root.pid] = (label, max(peak, usage.ru_maxrss * 1024))
        return os.waitstatus_to_exitcode(status)

    def root_peak(self) -> int:
        """Peak RSS of the root process in bytes."""
        return self.peaks.get(self.root.pid, ("", 0))[1]

    def by_role(self) -> dict[str, dict]:
        """Per process name: how many processes, the largest peak RSS (MB)."""
        roles: dict[str, list[int]] = defaultdict(list)
        for name, peak in self.peaks.values():
            roles[name].append(peak)
        return {name: {"processes": len(v), "max_peak_mb": round(max(v) / 2**20)} for name, v in sorted(roles.items())}

    def report(self) -> str:
        """One line: the root's peak and the largest peaks of the other processes."""
        me = self.root_peak()
        others = sorted((b for pid, (_, b) in self.peaks.items() if pid != self.root.pid), reverse=True)
        return (
            f"driver peak RSS {me / 2**20:.0f} MB; {len(others)} other processes, largest peaks "
            f"{', '.join(f'{b / 2**20:.0f}' for b in others[:6])} MB"
        )
