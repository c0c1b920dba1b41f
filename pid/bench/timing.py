"""Wall-clock timing of named stages, synchronising the GPU so each stage owns its time."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

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
