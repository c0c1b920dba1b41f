"""Timing: named wall-clock stages, and the one function every benchmark times calls with.

Imports nothing of `pid` (only torch): the official runner loads this file by path in
a process where `import pid` is the official package.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable

import torch


class StageTimer:
    def __init__(self, enabled: bool = True, device: torch.device | str | None = None):
        self.enabled = enabled
        self.device = torch.device(device) if device is not None else None
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str):
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def table(self) -> str:
        """A plain-text table: stage, calls, total ms, share of the total."""
        total = sum(self.seconds.values()) or 1.0
        lines = [f"{'stage':<22}{'calls':>6}{'total ms':>12}{'share':>8}"]
        for name, seconds in self.seconds.items():
            lines.append(f"{name:<22}{self.calls[name]:>6}{seconds * 1e3:>12.1f}{seconds / total:>8.1%}")
        lines.append(f"{'total':<22}{'':>6}{total * 1e3:>12.1f}{1:>8.0%}")
        return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], device: torch.device | str, warmup: int, runs: int,
               sync_each: bool = True) -> dict:
    """Time `runs` calls of fn() after `warmup` untimed ones.

    On a GPU each call sits between two CUDA events; `sync_each` waits for every call
    before the next (whole decodes: nothing of one decode overlaps the next), else the
    calls are queued back to back so launch gaps do not count (kernels of microseconds).
    On the CPU a host clock times each call. Returns {"times_ms": [...], "median_ms",
    "first_s": wall seconds of the first call (compilation, capture and caches included),
    "output": the last call's result}.
    """
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    began = time.perf_counter()
    output = fn()
    _synchronize(device)
    first_s = time.perf_counter() - began
    for _ in range(max(warmup - 1, 0)):
        output = fn()
    _synchronize(device)
    times = []
    if on_gpu:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
        for start, end in events:
            start.record()
            output = fn()
            end.record()
            if sync_each:
                torch.cuda.synchronize(device)
        torch.cuda.synchronize(device)
        times = [start.elapsed_time(end) for start, end in events]
    else:
        for _ in range(runs):
            began = time.perf_counter()
            output = fn()
            times.append((time.perf_counter() - began) * 1e3)
    return {"times_ms": times, "median_ms": statistics.median(times), "first_s": first_s, "output": output}


__all__ = ["StageTimer", "time_calls"]
