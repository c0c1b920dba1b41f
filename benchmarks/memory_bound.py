"""The runner behind the benchmarks of the CUDA extension's memory-bound ops
(bench_rmsnorm_modulate.py, bench_gated_residual.py, bench_pit_pixel_mlp.py, bench_to_image.py).

A case builds one set of inputs on the GPU and names the fewest bytes the op must move
(each input read once, each output written once, broadcast operands counted once).
Every implementation is timed with CUDA events (median of --runs after warm-up), cycling
through enough input sets to spill the L2 cache when one set would fit in it. Rows give
GB/s, % of the device-to-device copy bandwidth measured in the same run and, for ops
with arithmetic worth counting, TFLOP/s; the error column is max |ours - eager| / max
|eager| against the eager reference on the same inputs (0 for exact byte outputs).
"""

from __future__ import annotations

import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

import runner
from common import measure_ceilings

RESOLUTIONS = (1024, 2048, 4096)
PATCH_SIZE = 16
PIXELS_PER_PATCH = PATCH_SIZE * PATCH_SIZE
MMDIT_WIDTH = 1536  # the released v1 patch width C; modulation [B, 1, 6C]
PIXEL_WIDTH = 16  # Dp; pixel modulation [B*Li, 256, 6*Dp]
L2_SPILL = 4  # input sets span at least this many L2 caches


@dataclass
class Case:
    make_inputs: Callable[[], list]  # one input set, fresh random data
    bytes_moved: int
    impls: dict[str, Callable]  # name -> fn(*inputs); "eager_reference" is the baseline
    flops: int = 0
    info: dict = field(default_factory=dict)  # extra CSV columns (shapes, mode)


def tokens(resolution: int, batch: int) -> int:
    """Patch tokens of all images in the batch at this output resolution."""
    return batch * (resolution // PATCH_SIZE) ** 2


_compiled: dict[Callable, Callable] = {}


def compiled(reference: Callable) -> Callable:
    """torch.compile of a reference, one per function so later shapes reuse its dynamic graph."""
    if reference not in _compiled:
        _compiled[reference] = torch.compile(reference, fullgraph=True)
    return _compiled[reference]


def _outputs(result) -> list[torch.Tensor]:
    return [result] if isinstance(result, torch.Tensor) else [r for r in result if isinstance(r, torch.Tensor)]


def relative_error(ours, expected) -> float:
    worst = 0.0
    for o, e in zip(_outputs(ours), _outputs(expected)):
        scale = e.double().abs().max().item() or 1.0
        worst = max(worst, (o.double() - e.double()).abs().max().item() / scale)
    return worst


def _input_sets(case: Case) -> list[list]:
    l2_bytes = getattr(torch.cuda.get_device_properties(), "L2_cache_size", 64 << 20)
    return [case.make_inputs() for _ in range(max(1, math.ceil(L2_SPILL * l2_bytes / case.bytes_moved)))]


def main(op: str, cases: dict[str, Callable[[int], Case]], description: str) -> int:
    """Command line of bench_<op>.py: run the chosen cases, append rows to results/<op>.csv, plot GB/s."""
    parser = runner.base_parser(description, cases, impls=True)
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    options = parser.parse_args()
    case_names = runner.chosen_cases(parser, options, cases)
    if not torch.cuda.is_available():
        print(f"bench_{op} needs a CUDA GPU; nothing measured")
        return 0
    from pid_kernels.cuda import loader as cuda_ext

    print(f"CUDA extension: {cuda_ext.load()}")
    ceilings = measure_ceilings()
    copy_gbps = ceilings["copy_gbps"]
    print(f"ceilings: copy {copy_gbps:.0f} GB/s, bf16 matmul {ceilings['matmul_bf16_tflops']:.0f} TFLOP/s")
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    chosen_impls = [name for name in options.impls.split(",") if name]
    rows = []
    for case_name in case_names:
        case = cases[case_name](options.batch)
        input_sets = _input_sets(case)
        expected = case.impls["eager_reference"](*input_sets[0])
        for impl, fn in case.impls.items():
            if chosen_impls and impl not in chosen_impls:
                continue
            row = {"op": op, "case": case_name, "impl": impl, "batch": options.batch, **case.info,
                   "bytes_moved": case.bytes_moved, "input_sets": len(input_sets), "command": command,
                   "copy_gbps": f"{copy_gbps:.1f}"}
            try:
                row["max_rel_error_vs_eager"] = f"{relative_error(fn(*input_sets[0]), expected):.2e}"
                ms = runner.time_rotating(fn, input_sets, options.runs)
            except (RuntimeError, torch.OutOfMemoryError) as error:  # e.g. the eager chain out of memory at 4096²
                torch.cuda.empty_cache()
                row["note"] = f"skipped: {str(error).splitlines()[0][:120]}"
                rows.append(row)
                print(f"{case_name:24s} {impl:22s} {row['note']}")
                continue
            gbps = case.bytes_moved / ms / 1e6
            row.update(ms=f"{ms:.4f}", gbps=f"{gbps:.1f}", pct_of_copy=f"{100 * gbps / copy_gbps:.1f}")
            if case.flops:
                row["tflops"] = f"{case.flops / ms / 1e9:.2f}"
            rows.append(row)
            print(f"{case_name:24s} {impl:22s} {ms:9.4f} ms {gbps:8.1f} GB/s {row['pct_of_copy']:>5s}% copy "
                  f"{row.get('tflops', '-'):>6s} TFLOP/s err {row['max_rel_error_vs_eager']}")
        del input_sets, expected, case
        torch.cuda.empty_cache()
    runner.write_results(op, rows, y="gbps")
    return 0
