"""Output of `pid bench`: the CSV rows, the plot, the printed summary and the target check."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pid.bench.measure import GIB
from pid.bench.flops import breakdown_table

if TYPE_CHECKING:
    from pid.bench.decode import BenchSettings

# Targets of issue 5 (H100, bf16, 2048², batch 1); checked against a run, never assumed.
TARGETS = {"max_ms": 300.0, "vs_compiled": 1.3, "vs_official_eager": 2.0, "max_peak_gib": 8.0, "min_psnr_db": 40.0}
STAGE_COLUMNS = ("adapter", "patch_blocks", "pixel_blocks", "sampler", "total")


def _environment() -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "triton": triton_version,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def append_csv(path: Path, rows: list[dict], command: str | None = None) -> None:
    """Append rows (plus device, torch/triton versions, time and, if given, the command); new
    columns widen the header. benchmarks/ writes its CSVs with it too."""
    environment = _environment() | ({} if command is None else {"command": command})
    new_rows = [{**row, **environment} for row in rows]
    old_rows = []
    if path.exists():
        with path.open(newline="") as file:
            old_rows = list(csv.DictReader(file))
    columns = list(dict.fromkeys(key for row in old_rows + new_rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(old_rows + new_rows)


def grouped_bars(ax, latest: dict, cases: list, series: list, column: str) -> None:
    """One group of bars per case, one bar per series, from latest[(case, series)][column]
    where that row has it (benchmarks/common.py plots with it too)."""
    width = 0.8 / max(len(series), 1)
    for index, name in enumerate(series):
        points = [(c, float(latest[(case, name)][column])) for c, case in enumerate(cases)
                  if (case, name) in latest and latest[(case, name)].get(column)]
        ax.bar([c + index * width for c, _ in points], [v for _, v in points], width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))], cases, rotation=20, ha="right")


def plot(csv_path: Path, png_path: Path) -> None:
    """Median ms per decode and peak memory per case, one bar per path, from the latest row
    of each (case, path) measured on the device of the newest row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open(newline="") as file:
        all_rows = list(csv.DictReader(file))
    if not all_rows:
        return
    device = all_rows[-1]["device"]
    latest = {(r["case"], r["impl"]): r for r in all_rows if r["device"] == device and r.get("median_ms")}
    cases = list(dict.fromkeys(case for case, _ in latest))
    impls = sorted(dict.fromkeys(impl for _, impl in latest))
    fig, axes = plt.subplots(1, 2, figsize=(max(10.0, 3 + 0.6 * len(cases) * len(impls)), 4.8))
    for ax, column, label in ((axes[0], "median_ms", "ms per decode (median)"), (axes[1], "peak_alloc_gib", "peak GiB")):
        grouped_bars(ax, latest, cases, impls, column)
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    if latest:
        axes[0].legend(fontsize="small")
    fig.suptitle(f"PiD decode, {latest and next(iter(latest.values()))['arch']} ({device})")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def _fmt(value, spec: str) -> str:
    if value is None or value == "":
        return "-"
    return format(value, spec)


def summary(rows: list[dict], settings: BenchSettings) -> str:
    lines = [
        f"{'case':<12}{'path':<20}{'median ms':>10}{'ms/img':>9}{'TFLOP/s':>9}{'%mm':>6}{'peak GiB':>9}"
        f"{'PSNR dB':>9}{'adapter':>9}{'patch':>9}{'pixel':>9}{'sampler':>9}{'prof.':>9}  note"
    ]
    for row in rows:
        lines.append(
            f"{row['case']:<12}{row['impl']:<20}{_fmt(row.get('median_ms'), '.1f'):>10}"
            f"{_fmt(row.get('ms_per_image'), '.1f'):>9}{_fmt(row.get('tflops'), '.1f'):>9}"
            f"{_fmt(row.get('pct_of_matmul'), '.0f'):>6}{_fmt(row.get('peak_alloc_gib'), '.2f'):>9}"
            f"{_fmt(row.get('psnr_db'), '.1f'):>9}"
            + "".join(f"{_fmt(row.get(f'stage_{s}_ms'), '.1f'):>9}" for s in STAGE_COLUMNS)
            + f"  {row.get('error', '')}"
        )
    lines.append(f"matmul ceiling: {rows[0]['matmul_tflops']:.1f} TFLOP/s ({rows[0]['matmul_probe']})" if rows else "")
    lines.append("stage columns (adapter .. prof. = the whole profiled decode): device ms of the kernels launched in "
                 "each range of one decode under torch.profiler (host ms on the CPU)")
    main_size = 2048 if any(c.image_size == 2048 for c in settings.cases) else settings.cases[0].image_size
    lines += ["", f"FLOPs of one release forward at {main_size}², {settings.caption_tokens} caption tokens, batch 1:",
              breakdown_table(settings.config, (main_size, main_size), settings.caption_tokens)]
    if settings.on_gpu:
        lines += ["", target_check(rows)]
    return "\n".join(lines)


def target_check(rows: list[dict]) -> str:
    """Issue 5's targets at 2048², batch 1, for the faster of (c) and (d)."""
    by_impl = {row["impl"]: row for row in rows if row["case"] == "2048px_b1" and row.get("median_ms")}
    ours = [by_impl[name] for name in ("c_pid_compile", "d_pid_graphs") if name in by_impl]
    if not ours:
        return "targets: no 2048px_b1 row of (c) or (d) to check"
    best = min(ours, key=lambda row: row["median_ms"])
    ms = best["median_ms"]
    checks = [f"targets at 2048² batch 1 for {best['impl']} ({ms:.1f} ms):",
              f"  <= {TARGETS['max_ms']:.0f} ms: {'met' if ms <= TARGETS['max_ms'] else 'NOT met'}"]
    compiled = [by_impl[n]["median_ms"] for n in ("b_torch_compile", "f_official_compile") if n in by_impl]
    if compiled:
        ratio = min(compiled) / ms
        checks.append(f"  >= {TARGETS['vs_compiled']}x fastest of (b), (f): {ratio:.2f}x "
                      f"{'met' if ratio >= TARGETS['vs_compiled'] else 'NOT met'}")
    if "e_official_eager" in by_impl:
        ratio = by_impl["e_official_eager"]["median_ms"] / ms
        checks.append(f"  >= {TARGETS['vs_official_eager']}x official eager: {ratio:.2f}x "
                      f"{'met' if ratio >= TARGETS['vs_official_eager'] else 'NOT met'}")
    if best.get("peak_alloc_gib") is not None:
        checks.append(f"  peak <= {TARGETS['max_peak_gib']:.0f} GB: {best['peak_alloc_gib'] * GIB / 1e9:.2f} GB "
                      f"{'met' if best['peak_alloc_gib'] * GIB / 1e9 <= TARGETS['max_peak_gib'] else 'NOT met'}")
    if best.get("psnr_db") is not None:
        checks.append(f"  PSNR vs fp32 >= {TARGETS['min_psnr_db']:.0f} dB: {best['psnr_db']:.1f} dB "
                      f"{'met' if best['psnr_db'] >= TARGETS['min_psnr_db'] else 'NOT met'}")
    return "\n".join(checks)


__all__ = ["STAGE_COLUMNS", "TARGETS", "append_csv", "grouped_bars", "plot", "summary", "target_check"]
