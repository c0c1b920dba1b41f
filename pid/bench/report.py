"""Output of `pid bench`: the CSV rows, the plot, the printed summary and the target check."""

from __future__ import annotations

import csv
import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch

from pid.bench.flops import breakdown_table

if TYPE_CHECKING:
    from pid.bench.decode import BenchSettings

# Targets of issue 10 (H100/H200, bf16, 2048², batch 1); checked against a run, never assumed.
TARGETS = {"max_ms": 260.0, "vs_official_compile": 1.5, "vs_official_eager": 2.5, "max_peak_gib": 4.0,
           "min_psnr_db": 40.0, "attention_vs_best_sdpa": 1.15, "memory_bound_pct_of_copy": 80.0}
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


def plot_ops(csv_path: Path, png_path: Path) -> None:
    """% of the bounding ceiling per op case, one bar per implementation, from the newest row of
    each (op and case, implementation) in an op-benchmark CSV (pid.bench.ops.COLUMNS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open(newline="") as file:
        latest = {(f"{r['op']} {r['case']}", r["impl"]): r for r in csv.DictReader(file) if r.get("pct_of_ceiling")}
    cases = list(dict.fromkeys(case for case, _ in latest))
    impls = list(dict.fromkeys(impl for _, impl in latest))
    fig, ax = plt.subplots(figsize=(max(8.0, 2 + 0.3 * len(cases) * len(impls)), 5))
    grouped_bars(ax, latest, cases, impls, "pct_of_ceiling")
    ax.set_ylabel("% of the measured ceiling that bounds the case")
    ax.set_title(f"fused ops ({next(iter(latest.values()))['device'] if latest else 'no rows'})")
    if latest:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
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


def decode_targets(rows: list[dict]) -> list[tuple[str, str, Optional[bool]]]:
    """(target, measured, met) for issue 10's decode targets at 2048², batch 1, judged on the
    faster of (c) and (d); met is None where the row it needs is missing."""
    by_impl = {row["impl"]: row for row in rows if row["case"] == "2048px_b1" and _number(row.get("median_ms"))}
    ours = [by_impl[name] for name in ("c_pid_compile", "d_pid_graphs") if name in by_impl]
    if not ours:
        return [("decode at 2048² batch 1", "no row of (c) or (d)", None)]
    best = min(ours, key=lambda row: _number(row["median_ms"]))
    ms = _number(best["median_ms"])
    checks = [(f"{best['impl']} <= {TARGETS['max_ms']:.0f} ms", f"{ms:.1f} ms", ms <= TARGETS["max_ms"])]
    for name, key, label in (("f_official_compile", "vs_official_compile", "official + torch.compile"),
                             ("e_official_eager", "vs_official_eager", "official eager")):
        other = _number(by_impl.get(name, {}).get("median_ms"))
        ratio = other / ms if other else None
        checks.append((f">= {TARGETS[key]}x {label}", f"{ratio:.2f}x" if ratio else "not run",
                       ratio >= TARGETS[key] if ratio else None))
    peak = _number(best.get("peak_alloc_gib"))
    checks.append((f"peak <= {TARGETS['max_peak_gib']:.0f} GiB", f"{peak:.2f} GiB" if peak is not None else "not measured",
                   peak <= TARGETS["max_peak_gib"] if peak is not None else None))
    psnr_db = _number(best.get("psnr_db"))
    checks.append((f"PSNR vs fp32 >= {TARGETS['min_psnr_db']:.0f} dB",
                   f"{psnr_db:.1f} dB" if psnr_db is not None else "not measured",
                   psnr_db >= TARGETS["min_psnr_db"] if psnr_db is not None else None))
    return checks


def verdict(met: Optional[bool]) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def _number(value) -> Optional[float]:
    """A CSV cell or a float as a float; None where empty."""
    return None if value is None or value == "" else float(value)


def target_check(rows: list[dict]) -> str:
    lines = ["targets at 2048² batch 1 (issue 10):"]
    lines += [f"  {target}: {measured} {verdict(met)}" for target, measured, met in decode_targets(rows)]
    return "\n".join(lines)


__all__ = ["STAGE_COLUMNS", "TARGETS", "append_csv", "decode_targets", "grouped_bars", "plot", "plot_ops", "summary", "target_check",
           "verdict"]
