"""The op-benchmark driver: every benchmarks/bench_<op>.py is a table of `OpCase`s over it.

For each case of op `name`, the implementations are
  pid_<backend>       ours, `pid_kernels.REGISTRY[name].impl`;
  eager_reference     the seam's reference, `pid.seams.SEAMS[name].reference`;
  compiled_reference  that reference under torch.compile(fullgraph=True, dynamic=False) (GPU only);
  the table's own baselines (attention: the reference under each SDPA backend, SageAttention).
Every implementation is called with the seam's arguments. Inputs are fresh random sets
drawn on the device, rotated so that together they span L2_SPILL x the L2 cache (no set
stays cached between calls); calls are timed back to back with `pid.bench.timing.time_calls`,
median of `runs`. The error is max |out - truth| / max |truth| against the reference
evaluated in float64 (float32 where the case says so: attention, whose float64 score
matrix would not fit). A case's floor is the larger of FLOPs over the measured matmul
rate and bytes over the measured copy bandwidth (`pid.bench.roofline.floor_seconds`); rows give
achieved TFLOP/s and GB/s, the share of the ceiling that bounds the case, measured / floor, and
measured / the floor from the datasheet of the GPU it ran on (`pid.bench.roofline.GPUS`; empty
for a GPU not there and on a CPU).

`check_case` is the GPU correctness check of scripts/device_check.sh: fresh inputs,
outputs poisoned (the CUDA caching allocator's free blocks filled with NaN bytes
before the call), error within `pid.bench.accuracy`'s rule.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from pid.bench import roofline
from pid.bench.accuracy import cast_floats, error_bound, max_error, outputs
from pid.bench.measure import measure_ceilings
from pid.bench.report import append_csv
from pid.bench.timing import time_calls
from pid.configs import DEFAULT_CHECKPOINT, released_config  # noqa: F401 (DEFAULT_CHECKPOINT: for the case tables)

V15_CHECKPOINT = "PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step"
# Output sizes (height, width) of the device cases: the release's, and one whose patch grid
# (66 x 50) is not a multiple of any tile.
SIZES = {"1024": (1024, 1024), "2048": (2048, 2048), "4096": (4096, 4096), "odd": (1056, 800)}
# Dry run on the CPU: patch grids of 4 x 4 and 6 x 3.
TINY_SIZES = {"tiny": (64, 64), "tinyodd": (96, 48)}
# The released widths, narrowed for a dry run under the Triton interpreter (the head dims stay).
TINY_OVERRIDES = {"hidden_size": 128, "num_groups": 2, "pixel_attn_hidden_size": 144, "pixel_num_groups": 2,
                  "txt_max_length": 7}
L2_SPILL = 4
MAX_INPUT_SETS = 64
RUNS = 20
DRY_RUNS = 3
COLUMNS = ("op", "case", "impl", "shape", "dtype", "flops", "bytes", "input_sets", "runs", "ms", "tflops", "gbps",
           "bound", "floor_ms", "vs_floor", "datasheet", "datasheet_floor_ms", "vs_datasheet_floor", "pct_of_ceiling",
           "speedup_vs_best_baseline", "rel_error", "rel_bound", "passed", "copy_gbps", "matmul_bf16_tflops",
           "timings_meaningful", "note")
DRY_RUN_NOTE = "dry run on the CPU: tiny shapes, Triton interpreter; timings meaningless"
BOUNDS = {"compute": "matmul", "memory": "copy"}  # roofline's bound -> the ceiling that sets it


@dataclass(frozen=True)
class OpCase:
    """One call of an op at one shape."""

    shape: str  # what the arguments are, for the CSV
    make_args: Callable[[torch.device, torch.Generator], list]  # the seam's arguments, one fresh random set
    flops: int  # counted FLOPs of one call (0 where the op is pure data movement)
    bytes: int  # fewest bytes one call moves: each input read once, each output written once
    dtype: torch.dtype = torch.bfloat16  # the precision it computes in (sets the error rule's ulp floor)
    truth_dtype: torch.dtype = torch.float64
    baselines: dict[str, Callable] = field(default_factory=dict)  # more implementations, seam arguments
    matmul: str = "bf16"  # the tensor-core rate its FLOPs are bounded by: "bf16" or "fp8" (e4m3 operands)


def config(checkpoint: str = DEFAULT_CHECKPOINT, tiny: bool = False) -> dict:
    """A released config (its widths, heads, patch size), narrowed for a dry run."""
    return {**released_config(checkpoint), **(TINY_OVERRIDES if tiny else {})}


def sizes(tiny: bool) -> dict[str, tuple[int, int]]:
    return TINY_SIZES if tiny else SIZES


def row_layouts(tiny: bool = False) -> dict[str, dict[str, tuple[int, int, int]]]:
    """Per size name, the (rows, tokens, width) of the two layouts the per-token ops see in the
    released v1 network: "mmdit" = [1, (H/P)(W/P), C] patch tokens, "pit" = [(H/P)(W/P), P², Dp] pixels."""
    cfg = config(tiny=tiny)
    patch = cfg["patch_size"]
    layouts = {}
    for size, (height, width) in sizes(tiny).items():
        grid = (height // patch) * (width // patch)
        layouts[size] = {"mmdit": (1, grid, cfg["hidden_size"]), "pit": (grid, patch * patch, cfg["pixel_hidden_size"])}
    return layouts


def randn(generator: torch.Generator, *shape, scale: float = 1.0, dtype=torch.bfloat16) -> torch.Tensor:
    """Normal draws on the generator's device, scaled, then cast (bf16 by default)."""
    return (torch.randn(*shape, generator=generator, device=generator.device) * scale).to(dtype)


def norm_weight(generator: torch.Generator, width: int, dtype=torch.bfloat16) -> torch.Tensor:
    """A norm weight around 1 (uniform in [0.5, 1.5))."""
    return (torch.rand(width, generator=generator, device=generator.device) + 0.5).to(dtype)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def implementations(name: str, case: OpCase, on_gpu: bool) -> dict[str, Callable]:
    """name -> fn(*seam arguments): ours, the eager and compiled reference, the table's baselines."""
    import pid_kernels
    from pid.seams import SEAMS

    op = pid_kernels.REGISTRY[name]
    reference = SEAMS[name].reference
    impls = {f"pid_{op.backend}": op.impl, "eager_reference": reference}
    if on_gpu:
        impls["compiled_reference"] = torch.compile(reference, fullgraph=True, dynamic=False)
    return impls | case.baselines


def _truth(name: str, args: list, case: OpCase) -> list[torch.Tensor]:
    from pid.seams import SEAMS

    return outputs(SEAMS[name].reference(*cast_floats(args, case.truth_dtype)))


def _relative_error(result, truth: list[torch.Tensor]) -> float:
    """Worst max |out - truth| / max |truth| over the outputs (integer outputs: max difference)."""
    worst = 0.0
    for out, expected in zip(outputs(result), truth):
        scale = expected.double().abs().max().item() if expected.is_floating_point() else 1.0
        worst = max(worst, max_error(out, expected) / (scale or 1.0))
    return worst


def _poison_free_memory(like: list[torch.Tensor]) -> None:
    """Fill blocks the size of each output with NaN bytes and free them, so that the next
    allocations of those sizes (the op's outputs) start as NaN: unwritten elements show.
    Only the CUDA caching allocator hands freed blocks back; on the CPU this is a no-op."""
    if not like or like[0].device.type != "cuda":
        return
    blocks = [torch.empty(t.numel() * t.element_size(), dtype=torch.uint8, device=t.device).fill_(255) for t in like]
    del blocks


def check_case(name: str, case: OpCase, device: torch.device, seed: int) -> dict:
    """Correctness of ours on fresh inputs drawn from `seed`: {"passed", "rel_error", "rel_bound",
    "note"} under `pid.bench.accuracy`'s rule, the eager reference in the case's dtype as the scale."""
    import pid_kernels
    from pid.seams import SEAMS

    op = pid_kernels.REGISTRY[name]
    args = case.make_args(device, torch.Generator(device=device).manual_seed(seed))
    reasons, note = op.supports(*args), ""
    if reasons and device.type == "cpu" and op.backend == "cuda":  # a dry run: its CPU implementation, the reference
        note = "the CUDA op's CPU implementation (the kernel runs on a GPU only)"
    elif reasons:
        return {"passed": False, "rel_error": None, "rel_bound": None, "note": "refused: " + "; ".join(reasons)}
    truth = _truth(name, args, case)
    eager = outputs(SEAMS[name].reference(*args))
    _poison_free_memory(eager)
    ours = outputs(op.impl(*args))
    worst_error, worst_bound, passed = 0.0, 0.0, len(ours) == len(truth)
    for out, expected, eager_out in zip(ours, truth, eager):
        passed &= out.shape == expected.shape
        if not expected.is_floating_point():  # exact outputs (to_image): equal to eager, element for element
            passed &= torch.equal(out, eager_out)
            continue
        scale = expected.double().abs().max().item() or 1.0
        error = max_error(out, expected)
        bound = error_bound(max_error(eager_out, expected), expected, case.dtype)
        passed &= error <= bound  # False for NaN: an unwritten (poisoned) element fails
        worst_error, worst_bound = max(worst_error, error / scale), max(worst_bound, bound / scale)
    return {"passed": bool(passed), "rel_error": worst_error, "rel_bound": worst_bound, "note": note}


def _input_sets(case: OpCase, device: torch.device) -> list[list]:
    """Enough fresh input sets that together they span L2_SPILL x the L2 cache."""
    count = 1
    if device.type == "cuda":
        l2_bytes = torch.cuda.get_device_properties(device).L2_cache_size
        count = min(MAX_INPUT_SETS, max(1, math.ceil(L2_SPILL * l2_bytes / max(case.bytes, 1))))
    return [case.make_args(device, torch.Generator(device=device).manual_seed(seed)) for seed in range(count)]


def datasheet_for(device: torch.device) -> Optional[roofline.Ceilings]:
    """The datasheet ceilings of the GPU `device` is (None on a CPU or for a GPU not in roofline.GPUS)."""
    return roofline.detect(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def matmul_precision(case: OpCase, ceilings: roofline.Ceilings) -> str:
    """The tensor-core rate that bounds `case`: fp8 where it has e4m3 operands and `ceilings` know the
    fp8 rate, else bf16 (about half the fp8 rate, so such a floor is too high)."""
    return "fp8" if case.matmul == "fp8" and ceilings.fp8_tflops else "bf16"


def bench_case(name: str, case_name: str, case: OpCase, device: torch.device, ceilings: dict,
               runs: int = RUNS, impl_names: Optional[list[str]] = None,
               datasheet: Optional[roofline.Ceilings] = None) -> list[dict]:
    """One row per implementation of one case (an implementation that raises gets a note).
    ceilings: measured (`measure_ceilings`); datasheet: default, the datasheet of `device`'s GPU."""
    on_gpu = device.type == "cuda"
    input_sets = _input_sets(case, device)
    truth = _truth(name, input_sets[0], case)
    measured = roofline.from_measured(ceilings, "this run")
    precision = matmul_precision(case, measured)
    matmul_tflops = measured.rate(precision)
    floor_s, bound = roofline.floor_seconds(case.flops, case.bytes, measured, precision)
    floor_ms, bound = floor_s * 1e3, BOUNDS[bound]
    datasheet = datasheet or datasheet_for(device)
    sheet_ms = (roofline.floor_seconds(case.flops, case.bytes, datasheet, matmul_precision(case, datasheet))[0] * 1e3
                if datasheet else None)
    base = {"op": name, "case": case_name, "shape": case.shape, "dtype": dtype_name(case.dtype), "flops": case.flops,
            "bytes": case.bytes, "input_sets": len(input_sets), "runs": runs, "bound": bound,
            "floor_ms": f"{floor_ms:.5f}", "datasheet": datasheet.name if datasheet else "",
            "datasheet_floor_ms": f"{sheet_ms:.5g}" if datasheet else "", "copy_gbps": f"{ceilings['copy_gbps']:.1f}",
            "matmul_bf16_tflops": f"{ceilings['matmul_bf16_tflops']:.1f}", "timings_meaningful": on_gpu,
            "note": "" if on_gpu else DRY_RUN_NOTE}
    rows = []
    for impl, fn in implementations(name, case, on_gpu).items():
        if impl_names and impl not in impl_names:
            continue
        row = {**base, "impl": impl}
        try:
            row["rel_error"] = f"{_relative_error(fn(*input_sets[0]), truth):.2e}"
            rotation = itertools.cycle(input_sets)
            timed = time_calls(lambda: fn(*next(rotation)), device, warmup=3, runs=runs, sync_each=False)
        except Exception as error:  # an unsupported shape, OOM, a baseline that needs a GPU: a row that says so
            if on_gpu:
                torch.cuda.empty_cache()
            row["note"] = f"skipped: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
            rows.append(row)
            continue
        ms = timed["median_ms"]
        tflops, gbps = case.flops / ms / 1e9, case.bytes / ms / 1e6
        pct = tflops / matmul_tflops if bound == "matmul" else gbps / ceilings["copy_gbps"]
        row.update(ms=f"{ms:.4f}", tflops=f"{tflops:.2f}", gbps=f"{gbps:.1f}", vs_floor=f"{ms / floor_ms:.2f}",
                   pct_of_ceiling=f"{100 * pct:.1f}")
        if sheet_ms:
            row["vs_datasheet_floor"] = f"{ms / sheet_ms:.2f}"
        rows.append(row)
    baseline_ms = [float(r["ms"]) for r in rows if "ms" in r and not r["impl"].startswith("pid_")]
    for row in rows:
        if baseline_ms and "ms" in row:
            row["speedup_vs_best_baseline"] = f"{min(baseline_ms) / float(row['ms']):.2f}"
    del input_sets, truth
    if on_gpu:
        torch.cuda.empty_cache()
    return [{column: row.get(column, "") for column in COLUMNS} for row in rows]


def print_row(row: dict) -> None:
    def value(key):
        return row.get(key) or "-"

    print(f"{row['op']:<20} {row['case']:<22} {row['impl']:<22} {value('ms'):>9} ms {value('tflops'):>8} TFLOP/s "
          f"{value('gbps'):>8} GB/s {value('pct_of_ceiling'):>6}% of {row['bound']:<6} x{value('vs_floor'):>6} floor "
          + (f"x{row['vs_datasheet_floor']:>6} {row['datasheet']} floor " if row.get("vs_datasheet_floor") else "")
          + f"err {value('rel_error')} {row.get('note') or ''}", flush=True)


def main(name: str, cases: Callable[[bool], dict[str, OpCase]], description: str) -> int:
    """Command line of benchmarks/bench_<name>.py: run the chosen cases, append rows to
    <out-dir>/<name>.csv. Without a GPU it says so, unless --dry-run (tiny shapes on the CPU
    under the Triton interpreter, timings meaningless)."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all; --list shows them)")
    parser.add_argument("--impls", help="comma-separated implementation names (default: all)")
    parser.add_argument("--runs", type=int, help=f"timed calls per implementation, median reported (default {RUNS}; "
                        f"{DRY_RUNS} in a dry run)")
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, Triton interpreter")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[2] / "benchmarks" / "results")
    options = parser.parse_args()
    if options.dry_run and os.environ.get("TRITON_INTERPRET") != "1":
        # Triton reads it when the kernels are defined, and `import pid` has already done that: rerun.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "TRITON_INTERPRET": "1"})
    table = cases(options.dry_run)
    if options.list:
        print("\n".join(table))
        return 0
    chosen = options.cases.split(",") if options.cases else list(table)
    unknown = sorted(set(chosen) - set(table))
    if unknown:
        parser.error(f"unknown cases {unknown}; cases: {', '.join(table)}")
    runs = options.runs or (DRY_RUNS if options.dry_run else RUNS)
    if runs < 10 and not options.dry_run:
        parser.error("report medians of at least 10 timed runs (--runs >= 10)")
    if not torch.cuda.is_available() and not options.dry_run:
        print(f"bench_{name} needs a CUDA GPU; nothing measured (--dry-run checks it on the CPU)")
        return 0
    device = torch.device("cuda" if not options.dry_run else "cpu")
    ceilings = measure_ceilings(device)
    print(f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s, bf16 matmul {ceilings['matmul_bf16_tflops']:.0f} TFLOP/s"
          + ("" if device.type == "cuda" else f" ({DRY_RUN_NOTE})"))
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    impl_names = options.impls.split(",") if options.impls else None
    rows = []
    for case_name in chosen:
        for row in bench_case(name, case_name, table[case_name], device, ceilings, runs, impl_names):
            print_row(row)
            rows.append(row)
    append_csv(options.out_dir / f"{name}.csv", rows, command)
    print(f"appended {len(rows)} rows to {options.out_dir / f'{name}.csv'}")
    return 0


__all__ = ["COLUMNS", "OpCase", "SIZES", "TINY_SIZES", "bench_case", "check_case", "config", "datasheet_for",
           "implementations", "main", "norm_weight", "randn", "row_layouts", "sizes"]
