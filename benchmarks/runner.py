"""The driver shared by the bench_<op>.py scripts: the command line, timing over rotating
input copies, the rows and their printout, the CSV + plot tail.

A script keeps only what is its own op's: cases, FLOP and byte counts, implementations.
The Triton seams whose cases are timed alike (patch_embed, sigma_gate, unembed_update)
describe themselves as a `Seam`; bench_attention.py and memory_bound.py use the pieces.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from common import measure_ceilings, plot, time_cuda

# pid_kernels is not installed: the scripts import it from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
# Rotate input copies until this many bytes are touched: twice the largest L2 (B200, 126 MB).
ROTATE_BYTES = 256 << 20
SMOKE_OK = "smoke ok (no timings: the benchmark itself needs a CUDA GPU)"


def base_parser(description: str, cases: dict, impls: bool = False) -> argparse.ArgumentParser:
    """The options every bench_<op>.py takes: --cases, --impls (where it can pick them), --runs."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--cases", default=",".join(cases), help=f"comma-separated, from {','.join(cases)}")
    if impls:
        parser.add_argument("--impls", default="", help="comma-separated implementation names (default: all)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per implementation (median reported)")
    return parser


def chosen_cases(parser: argparse.ArgumentParser, options: argparse.Namespace, cases: dict) -> list[str]:
    """The --cases names, in order; an unknown one is a usage error."""
    names = options.cases.split(",")
    unknown = set(names) - set(cases)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    return names


def triton_main(op: str, parser: argparse.ArgumentParser, cases: dict, smoke: Callable[[], int],
                benchmark: Callable[[list[str], argparse.Namespace], int]) -> int:
    """Command line of a Triton op's benchmark: --smoke runs smoke() on the CPU; without a GPU
    it says so and exits 0; else benchmark(case names, options)."""
    parser.add_argument("--smoke", action="store_true", help="tiny CPU check under TRITON_INTERPRET=1, no timings")
    options = parser.parse_args()
    if options.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before pid_kernels imports triton
        return smoke()
    if not torch.cuda.is_available():
        print(f"bench_{op} needs a CUDA GPU; nothing measured (use --smoke for a CPU check)")
        return 0
    return benchmark(chosen_cases(parser, options, cases), options)


def report_ceilings(compute_bound: bool) -> dict[str, float]:
    """measure_ceilings(), printed with the ceiling the benchmark's rows are judged against first."""
    ceilings = measure_ceilings()
    matmul = f"bf16 matmul {ceilings['matmul_bf16_tflops']:.0f} TFLOP/s"
    copy = f"copy {ceilings['copy_gbps']:.0f} GB/s"
    print(f"ceilings: {matmul}, {copy}" if compute_bound else f"ceilings: {copy} ({matmul})")
    return ceilings


def time_rotating(fn: Callable, input_sets: list[list], runs: int) -> float:
    """time_cuda of fn(*inputs), taking the input sets in turn so that no set stays in L2."""
    rotation = itertools.cycle(input_sets)
    return time_cuda(lambda: fn(*next(rotation)), runs=runs)


def relative_l2(out: torch.Tensor, expected: torch.Tensor) -> float:
    return ((out.float() - expected.float()).norm() / expected.float().norm()).item()


def write_results(op: str, rows: list[dict], y: str) -> None:
    """Append rows to results/<op>.csv, plot column y of it to results/<op>.png, say where."""
    from pid.bench.report import append_csv  # not at the top: importing pid imports triton (see --smoke)

    csv_path, png_path = RESULTS / f"{op}.csv", RESULTS / f"{op}.png"
    append_csv(csv_path, rows)
    plot(csv_path, png_path, y=y)
    print(f"wrote {csv_path} and {png_path}")


@dataclass(frozen=True)
class Seam:
    """A Triton seam's benchmark: its cases and how to build, count and run them. A case is
    a tuple only the script's functions read; each case is timed on enough input copies
    to spill L2 and judged against one measured ceiling (matmul or copy)."""

    op: str  # results/<op>.csv and the "op" column
    cases: dict[str, tuple]
    smoke_cases: dict[str, tuple]  # tiny shapes for --smoke on the CPU
    seam_args: Callable[..., list]  # (case, device, seed=0) -> the op's arguments
    work: Callable[[tuple], tuple[int, int]]  # case -> (FLOPs, 0 where not counted; fewest bytes moved)
    kernels: Callable[[tuple], tuple[Callable, Callable]]  # case -> (ours, its eager reference)
    columns: Callable[[tuple], dict]  # case -> CSV columns after op, case, impl (an "op" here overrides)
    compute_bound: Callable[[tuple], bool] = lambda case: False  # judged against the matmul ceiling
    name_width: int = 17  # of the case column in the printout
    tflops_digits: int = 1

    def main(self, description: str) -> int:
        return triton_main(self.op, base_parser(description, self.cases), self.cases, self.smoke, self.benchmark)

    def implementations(self, case: tuple, on_gpu: bool) -> dict[str, Callable]:
        ours, reference = self.kernels(case)
        impls = {"pid_triton": ours, "eager_reference": reference}
        if on_gpu:
            impls["compiled_reference"] = torch.compile(reference, fullgraph=True, dynamic=False)
        return impls

    def smoke(self) -> int:
        for name, case in self.smoke_cases.items():
            args = self.seam_args(case, "cpu")
            impls = self.implementations(case, False)
            expected = impls["eager_reference"](*args)
            error = relative_l2(impls["pid_triton"](*args), expected)
            assert error < 1e-2, f"{name}: relative L2 error {error:.2e} vs the eager reference"
            flops, moved = self.work(case)
            counts = f"{flops} FLOPs, {moved} bytes" if flops else f"{moved} bytes"
            print(f"smoke {name}: pid_triton agrees with eager (rel L2 {error:.1e}); {counts}")
        print(SMOKE_OK)
        return 0

    def benchmark(self, case_names: list[str], options: argparse.Namespace) -> int:
        ceilings = report_ceilings(any(self.compute_bound(case) for case in self.cases.values()))
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        rows = []
        for case_name in case_names:
            case = self.cases[case_name]
            copies = -(-ROTATE_BYTES // self.work(case)[1])
            arg_sets = [self.seam_args(case, "cuda", seed=seed) for seed in range(copies)]
            impls = self.implementations(case, True)
            expected = impls["eager_reference"](*arg_sets[0])
            for impl, fn in impls.items():
                ms = time_rotating(fn, arg_sets, options.runs)
                error = relative_l2(fn(*arg_sets[0]), expected)
                rows.append(self._row(case_name, impl, ms, error, ceilings, command))
                self._print(rows[-1])
            del arg_sets, expected
            torch.cuda.empty_cache()
        write_results(self.op, rows, y="pct_of_ceiling")
        return 0

    def _row(self, case_name: str, impl: str, ms: float, error: float, ceilings: dict, command: str) -> dict:
        case = self.cases[case_name]
        flops, moved = self.work(case)
        compute_bound = self.compute_bound(case)
        tflops, gbps = flops / ms / 1e9, moved / ms / 1e6
        pct = 100 * (tflops / ceilings["matmul_bf16_tflops"] if compute_bound else gbps / ceilings["copy_gbps"])
        row = {"op": self.op, "case": case_name, "impl": impl, **self.columns(case),
               "flops": flops or None, "bytes": moved, "ms": f"{ms:.4f}",
               "tflops": f"{tflops:.{self.tflops_digits}f}" if flops else None, "gbps": f"{gbps:.0f}",
               "ceiling": "matmul_bf16" if compute_bound else "copy", "pct_of_ceiling": f"{pct:.1f}",
               "rel_l2_vs_eager": f"{error:.2e}", **{key: f"{value:.1f}" for key, value in ceilings.items()},
               "command": command}
        return {key: value for key, value in row.items() if value is not None}  # no FLOP columns where not counted

    def _print(self, row: dict) -> None:
        rate = f"{row['tflops']:>7s} TFLOP/s " if "tflops" in row else ""
        print(f"{row['case']:{self.name_width}s} {row['impl']:20s} {row['ms']:>9s} ms {rate}{row['gbps']:>7s} GB/s "
              f"{row['pct_of_ceiling']:>5s}% of {row['ceiling']} ceiling  err {row['rel_l2_vs_eager']}")
