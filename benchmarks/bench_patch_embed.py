"""Benchmark pid_kernels/patch_embed.py: the fused patch and pixel embeddings.

Cases (bf16, batch 1, released widths C = 1536, Dp = 16, P = 16), at 1024²,
2048² and 4096² images:
  patch_embed_<S>: unfold + linear 768 -> C, a GEMM: FLOPs = 2 * Li * C * 768,
                   reported as TFLOP/s and % of the measured bf16 matmul rate;
  pixel_embed_<S>: per-pixel linear 3 -> Dp + position table, patch-major:
                   memory-bound, bytes = image + position table read once +
                   pixel tokens written once, as GB/s and % of the measured copy
                   bandwidth (target: >= 80%).
Implementations: ours (`pid_triton`), the eager reference, the reference under
torch.compile. Inputs rotate over enough copies that they do not sit in L2.

Usage: python benchmarks/bench_patch_embed.py [--cases pixel_embed_2048] [--runs 20]
Rows go to benchmarks/results/patch_embed.csv, the plot to patch_embed.png.
Without CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny
shape per op on CPU under the Triton interpreter (no timings).
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
PIXEL_DIM = 16
# Rotate input copies until this many bytes are touched: twice the largest L2 (B200, 126 MB).
ROTATE_BYTES = 256 << 20
CASES = {f"{op}_{size}": (op, size, size, WIDTH if op == "patch_embed" else PIXEL_DIM)
         for op in ("patch_embed", "pixel_embed") for size in (1024, 2048, 4096)}
SMOKE_CASES = {"patch_embed_smoke": ("patch_embed", 48, 80, 40), "pixel_embed_smoke": ("pixel_embed", 48, 80, 16)}


def seam_args(case, device, dtype=torch.bfloat16, seed=0):
    op, height, width, out_dim = case
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=device) * scale).to(dtype)

    image = randn(1, 3, height, width)
    if op == "patch_embed":
        fan_in = 3 * PATCH_SIZE**2
        return [image, randn(out_dim, fan_in, scale=fan_in**-0.5), randn(out_dim), PATCH_SIZE]
    return [image, randn(out_dim, 3), randn(out_dim), randn(height * width, out_dim), PATCH_SIZE]


def work(case, element_bytes=2):
    """(FLOPs, fewest bytes moved) of one call."""
    op, height, width, out_dim = case
    pixels = height * width
    if op == "patch_embed":
        tokens, fan_in = pixels // PATCH_SIZE**2, 3 * PATCH_SIZE**2
        return 2 * tokens * out_dim * fan_in, (3 * pixels + out_dim * fan_in + tokens * out_dim) * element_bytes
    return 2 * pixels * out_dim * 4, (3 * pixels + 2 * pixels * out_dim) * element_bytes


def implementations(op, on_gpu):
    from pid_kernels import patch_embed

    ours, reference = {
        "patch_embed": (patch_embed.patch_embed, patch_embed.patch_embed_reference),
        "pixel_embed": (patch_embed.pixel_embed, patch_embed.pixel_embed_reference),
    }[op]
    impls = {"pid_triton": ours, "eager_reference": reference}
    if on_gpu:
        impls["compiled_reference"] = torch.compile(reference, fullgraph=True, dynamic=False)
    return impls


def relative_l2(out, expected):
    return ((out.float() - expected.float()).norm() / expected.float().norm()).item()


def smoke() -> int:
    for name, case in SMOKE_CASES.items():
        args = seam_args(case, "cpu")
        impls = implementations(case[0], on_gpu=False)
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
        compute_bound = case[0] == "patch_embed"
        impls = implementations(case[0], on_gpu=True)
        expected = impls["eager_reference"](*arg_sets[0])
        for impl, fn in impls.items():
            rotation = itertools.cycle(arg_sets)
            ms = time_cuda(lambda: fn(*next(rotation)), runs=runs)
            tflops, gbps = flops / ms / 1e9, moved / ms / 1e6
            pct = 100 * (tflops / ceilings["matmul_bf16_tflops"] if compute_bound else gbps / ceilings["copy_gbps"])
            rows.append({
                "op": case[0], "case": case_name, "impl": impl, "dtype": "bfloat16", "batch": 1,
                "image": f"{case[1]}x{case[2]}", "out_dim": case[3], "flops": flops, "bytes": moved,
                "ms": f"{ms:.4f}", "tflops": f"{tflops:.2f}", "gbps": f"{gbps:.0f}",
                "ceiling": "matmul_bf16" if compute_bound else "copy", "pct_of_ceiling": f"{pct:.1f}",
                "rel_l2_vs_eager": f"{relative_l2(fn(*arg_sets[0]), expected):.2e}",
                **{key: f"{value:.1f}" for key, value in ceilings.items()}, "command": command,
            })
            print(f"{case_name:17s} {impl:20s} {ms:9.4f} ms {tflops:7.2f} TFLOP/s {gbps:7.0f} GB/s "
                  f"{pct:5.1f}% of {rows[-1]['ceiling']} ceiling  err {rows[-1]['rel_l2_vs_eager']}")
        del arg_sets, expected
        torch.cuda.empty_cache()
    csv_path = RESULTS / "patch_embed.csv"
    append_csv(csv_path, rows)
    plot(csv_path, RESULTS / "patch_embed.png", y="pct_of_ceiling")
    print(f"wrote {csv_path} and {RESULTS / 'patch_embed.png'}")
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
        print("bench_patch_embed needs a CUDA GPU; nothing measured (use --smoke for a CPU check)")
        return 0
    unknown = set(options.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    return benchmark(options.cases.split(","), options.runs)


if __name__ == "__main__":
    sys.exit(main())
