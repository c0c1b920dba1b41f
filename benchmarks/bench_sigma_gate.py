"""Benchmark pid_kernels/sigma_gate.py: the fused sigma-aware LQ gate.

Cases (bf16, batch 1, released width C = 1536), at 1024², 2048² and 4096² output
((S/16)² patch tokens M):
  per_channel_<S>: v1 gate, W [C, 2C]: a GEMM, FLOPs = 2 * M * C * 2C, reported
                   as TFLOP/s and % of the measured bf16 matmul rate;
  per_token_<S>:   v1.5 gate, W [1, 2C]: memory-bound, bytes = x and lq read once
                   (bf16) + the float32 output written once, reported as GB/s and
                   % of the measured copy bandwidth.
Implementations: ours (`pid_triton`), the eager reference, the reference under
torch.compile. Inputs rotate over enough copies that they do not sit in L2.

Usage: python benchmarks/bench_sigma_gate.py [--cases per_channel_2048] [--runs 20]
Rows go to benchmarks/results/sigma_gate.csv, the plot to sigma_gate.png.
Tile overrides: PID_TUNING_SIGMA_GATE=BLOCK_N=256,num_stages=3 (see pid_kernels/tuning).
Without CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny
shape on CPU under the Triton interpreter (no timings).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"
PATCH_SIZE = 16
WIDTH = 1536
# Rotate input copies until this many bytes are touched: twice the largest L2 (B200, 126 MB).
ROTATE_BYTES = 256 << 20
CASES = {f"{kind}_{size}": (kind, (size // PATCH_SIZE) ** 2, WIDTH)
         for kind in ("per_channel", "per_token") for size in (1024, 2048, 4096)}
SMOKE_CASES = {"per_channel_smoke": ("per_channel", 37, 48), "per_token_smoke": ("per_token", 37, 48)}


def seam_args(case, device, dtype=torch.bfloat16, seed=0):
    kind, tokens, width = case
    gen = torch.Generator(device=device).manual_seed(seed)
    x, lq = (torch.randn(1, tokens, width, generator=gen, device=device).to(dtype) for _ in range(2))
    outputs = width if kind == "per_channel" else 1
    weight = (torch.randn(outputs, 2 * width, generator=gen, device=device) / (2 * width) ** 0.5).to(dtype)
    bias = torch.randn(outputs, generator=gen, device=device).to(dtype)
    log_alpha = torch.tensor(0.4, device=device).to(dtype)
    return [x, lq, weight, bias, log_alpha, torch.rand(1, generator=gen, device=device)]


def work(case, element_bytes=2):
    """(FLOPs, fewest bytes moved) of one call."""
    kind, tokens, width = case
    flops = 2 * tokens * width * 2 * width if kind == "per_channel" else 4 * tokens * width
    weight_bytes = (width if kind == "per_channel" else 1) * 2 * width * element_bytes
    return flops, tokens * width * (2 * element_bytes + 4) + weight_bytes


def implementations(on_gpu):
    from pid_kernels import sigma_gate

    impls = {"pid_triton": sigma_gate.sigma_gate, "eager_reference": sigma_gate.reference}
    if on_gpu:
        impls["compiled_reference"] = torch.compile(sigma_gate.reference, fullgraph=True, dynamic=False)
    return impls


def relative_l2(out, expected):
    return ((out.float() - expected.float()).norm() / expected.float().norm()).item()


def smoke() -> int:
    for name, case in SMOKE_CASES.items():
        args = seam_args(case, "cpu")
        impls = implementations(on_gpu=False)
        expected = impls["eager_reference"](*args)
        error = relative_l2(impls["pid_triton"](*args), expected)
        assert error < 1e-2, f"{name}: relative L2 error {error:.2e} vs the eager reference"
        flops, moved = work(case)
        print(f"smoke {name}: pid_triton agrees with eager (rel L2 {error:.1e}); {flops} FLOPs, {moved} bytes")
    print("smoke ok (no timings: the benchmark itself needs a CUDA GPU)")
    return 0


def benchmark(case_names, runs) -> int:
    from common import append_csv, measure_ceilings, plot, time_cuda

    ceilings = measure_ceilings()
    print(f"ceilings: bf16 matmul {ceilings['matmul_bf16_tflops']:.0f} TFLOP/s, copy {ceilings['copy_gbps']:.0f} GB/s")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    rows = []
    for case_name in case_names:
        case = CASES[case_name]
        flops, moved = work(case)
        copies = -(-ROTATE_BYTES // moved)
        arg_sets = [seam_args(case, "cuda", seed=seed) for seed in range(copies)]
        compute_bound = case[0] == "per_channel"
        impls = implementations(on_gpu=True)
        expected = impls["eager_reference"](*arg_sets[0])
        for impl, fn in impls.items():
            rotation = itertools.cycle(arg_sets)
            ms = time_cuda(lambda: fn(*next(rotation)), runs=runs)
            tflops, gbps = flops / ms / 1e9, moved / ms / 1e6
            pct = 100 * (tflops / ceilings["matmul_bf16_tflops"] if compute_bound else gbps / ceilings["copy_gbps"])
            rows.append({
                "op": "sigma_gate", "case": case_name, "impl": impl, "dtype": "bfloat16", "batch": 1,
                "tokens": case[1], "width": case[2], "flops": flops, "bytes": moved, "ms": f"{ms:.4f}",
                "tflops": f"{tflops:.1f}", "gbps": f"{gbps:.0f}",
                "ceiling": "matmul_bf16" if compute_bound else "copy", "pct_of_ceiling": f"{pct:.1f}",
                "rel_l2_vs_eager": f"{relative_l2(fn(*arg_sets[0]), expected):.2e}",
                **{key: f"{value:.1f}" for key, value in ceilings.items()}, "command": command,
            })
            print(f"{case_name:18s} {impl:20s} {ms:9.4f} ms {tflops:7.1f} TFLOP/s {gbps:7.0f} GB/s "
                  f"{pct:5.1f}% of {rows[-1]['ceiling']} ceiling  err {rows[-1]['rel_l2_vs_eager']}")
        del arg_sets, expected
        torch.cuda.empty_cache()
    csv_path = RESULTS / "sigma_gate.csv"
    append_csv(csv_path, rows)
    plot(csv_path, RESULTS / "sigma_gate.png", y="pct_of_ceiling")
    print(f"wrote {csv_path} and {RESULTS / 'sigma_gate.png'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {','.join(CASES)}")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per implementation (median reported)")
    parser.add_argument("--smoke", action="store_true", help="tiny CPU check under TRITON_INTERPRET=1, no timings")
    options = parser.parse_args()
    if options.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before pid_kernels imports triton
        return smoke()
    if not torch.cuda.is_available():
        print("bench_sigma_gate needs a CUDA GPU; nothing measured (use --smoke for a CPU check)")
        return 0
    unknown = set(options.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    return benchmark(options.cases.split(","), options.runs)


if __name__ == "__main__":
    sys.exit(main())
