"""Shared benchmark helpers: the GPU's measured ceilings, CUDA-event timing, plots.

Every bench_<op>.py reports against ceilings measured in the same run (a bf16
matmul rate and a device-to-device copy bandwidth), never datasheet numbers.
CSV rows are written with pid.bench.report.append_csv, as `pid bench` writes its own.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Callable

import torch

# Ceiling probes: large enough to fill an H100/B200, small enough for a 24 GB card.
MATMUL_SIZE = 8192
COPY_BYTES = 1 << 30


# Not pid.bench.measure.time_calls: that synchronizes after every call (right for whole
# decodes), which would count launch gaps into kernels of microseconds.
def time_cuda(fn: Callable[[], object], warmup: int = 3, runs: int = 20) -> float:
    """Median milliseconds of fn() over `runs` timed calls (CUDA events) after `warmup` calls."""
    if runs < 10:
        raise ValueError("report medians of at least 10 timed runs")
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(runs)]
    for start, end in zip(starts, ends):
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in zip(starts, ends))


def measure_ceilings() -> dict[str, float]:
    """{'matmul_bf16_tflops', 'copy_gbps'}: a bf16 matmul's rate and a copy's bandwidth
    (bytes read + bytes written), on random data, timed with time_cuda like the kernels."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device="cuda", dtype=torch.bfloat16)
    matmul_ms = time_cuda(lambda: a @ b)
    source = torch.randn(COPY_BYTES // 4, device="cuda")
    target = torch.empty_like(source)
    copy_ms = time_cuda(lambda: target.copy_(source))
    return {
        "matmul_bf16_tflops": 2 * MATMUL_SIZE**3 / matmul_ms / 1e9,
        "copy_gbps": 2 * COPY_BYTES / copy_ms / 1e6,
    }


def plot(csv_path: str | Path, png_path: str | Path, x: str = "case", series: str = "impl", y: str = "tflops") -> None:
    """Grouped bars of column y per x, one bar per series, from the latest row of each (x, series)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pid.bench.report import grouped_bars  # not at the top: importing pid imports triton (see --smoke)

    with Path(csv_path).open(newline="") as file:
        latest = {(row[x], row[series]): row for row in csv.DictReader(file) if row.get(y)}
    cases = list(dict.fromkeys(key[0] for key in latest))
    names = list(dict.fromkeys(key[1] for key in latest))
    fig, ax = plt.subplots(figsize=(max(6.0, 2 + 0.45 * len(cases) * len(names)), 4.5))
    grouped_bars(ax, latest, cases, names, y)
    ax.set_ylabel(y)
    device = next(iter(latest.values()))["device"] if latest else ""
    ax.set_title(f"{Path(csv_path).stem} ({device})")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
