"""Benchmark pid_kernels/unembed_update.py: fused final layer + un-patchify + sampler step.

Cases (bf16 pixel tokens, float32 images as in the Decoder, batch 1, Dp = 16,
P = 16), at 1024², 2048² and 4096² images:
  renoise_<S>: a middle step: x_next = (1 - t') * (x_t - t * v) + t' * noise;
  last_<S>:    the last step: x0 = x_t - t * v (no noise read).
Memory-bound: bytes = pixel tokens + x_t (+ noise) read once + the image written
once, reported as GB/s and % of the measured copy bandwidth (target: >= 80%).
Implementations: ours (`pid_triton`), the eager reference, the reference under
torch.compile. Inputs rotate over enough copies that they do not sit in L2.

Usage: python benchmarks/bench_unembed_update.py [--cases renoise_2048] [--runs 20]
Rows go to benchmarks/results/unembed_update.csv, the plot to unembed_update.png.
Without CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny
shape per kind of step on CPU under the Triton interpreter (no timings).
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
PIXEL_DIM = 16
# Rotate input copies until this many bytes are touched: twice the largest L2 (B200, 126 MB).
ROTATE_BYTES = 256 << 20
CASES = {f"{step}_{size}": (step, size, size, PIXEL_DIM) for step in ("renoise", "last") for size in (1024, 2048, 4096)}
SMOKE_CASES = {"renoise_smoke": ("renoise", 48, 80, 16), "last_smoke": ("last", 48, 80, 16)}


def seam_args(case, device, dtype=torch.bfloat16, seed=0):
    step, height, width, dim = case
    gen = torch.Generator(device=device).manual_seed(seed)
    tokens = (height // PATCH_SIZE) * (width // PATCH_SIZE)
    pixels = torch.randn(tokens, PATCH_SIZE**2, dim, generator=gen, device=device).to(dtype)
    norm_weight = (torch.rand(dim, generator=gen, device=device) + 0.5).to(dtype)
    weight = (torch.randn(3, dim, generator=gen, device=device) / dim**0.5).to(dtype)
    bias = torch.randn(3, generator=gen, device=device).to(dtype)
    x_t = torch.randn(1, 3, height, width, generator=gen, device=device)
    noise = torch.randn(1, 3, height, width, generator=gen, device=device) if step == "renoise" else None
    t, t_next = torch.tensor(0.866, device=device), torch.tensor(0.634 if noise is not None else 0.0, device=device)
    return [pixels, norm_weight, weight, bias, (height, width), PATCH_SIZE, x_t, t, t_next, noise]


def moved_bytes(case, element_bytes=2):
    """Fewest bytes one call moves: pixel tokens in, x_t (and noise) in, the float32 image out."""
    step, height, width, dim = case
    float32_images = 3 if step == "renoise" else 2
    return height * width * (dim * element_bytes + float32_images * 3 * 4)


def implementations(on_gpu):
    from pid_kernels import unembed_update

    impls = {"pid_triton": unembed_update.fused, "eager_reference": unembed_update.reference}
    if on_gpu:
        impls["compiled_reference"] = torch.compile(unembed_update.reference, fullgraph=True, dynamic=False)
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
        print(f"smoke {name}: pid_triton agrees with eager (rel L2 {error:.1e}); {moved_bytes(case)} bytes")
    print("smoke ok (no timings: the benchmark itself needs a CUDA GPU)")
    return 0


def benchmark(case_names, runs) -> int:
    from common import append_csv, measure_ceilings, plot, time_cuda

    ceilings = measure_ceilings()
    print(f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s (bf16 matmul {ceilings['matmul_bf16_tflops']:.0f} TFLOP/s)")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    rows = []
    for case_name in case_names:
        case = CASES[case_name]
        moved = moved_bytes(case)
        copies = -(-ROTATE_BYTES // moved)
        arg_sets = [seam_args(case, "cuda", seed=seed) for seed in range(copies)]
        impls = implementations(on_gpu=True)
        expected = impls["eager_reference"](*arg_sets[0])
        for impl, fn in impls.items():
            rotation = itertools.cycle(arg_sets)
            ms = time_cuda(lambda: fn(*next(rotation)), runs=runs)
            gbps = moved / ms / 1e6
            pct = 100 * gbps / ceilings["copy_gbps"]
            rows.append({
                "op": "unembed_update", "case": case_name, "impl": impl, "dtype": "bfloat16 pixels, float32 images",
                "batch": 1, "image": f"{case[1]}x{case[2]}", "pixel_dim": case[3], "bytes": moved,
                "ms": f"{ms:.4f}", "gbps": f"{gbps:.0f}",
                "ceiling": "copy", "pct_of_ceiling": f"{pct:.1f}",
                "rel_l2_vs_eager": f"{relative_l2(fn(*arg_sets[0]), expected):.2e}",
                **{key: f"{value:.1f}" for key, value in ceilings.items()}, "command": command,
            })
            print(f"{case_name:13s} {impl:20s} {ms:9.4f} ms {gbps:7.0f} GB/s "
                  f"{pct:5.1f}% of {rows[-1]['ceiling']} ceiling  err {rows[-1]['rel_l2_vs_eager']}")
        del arg_sets, expected
        torch.cuda.empty_cache()
    csv_path = RESULTS / "unembed_update.csv"
    append_csv(csv_path, rows)
    plot(csv_path, RESULTS / "unembed_update.png", y="pct_of_ceiling")
    print(f"wrote {csv_path} and {RESULTS / 'unembed_update.png'}")
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
        print("bench_unembed_update needs a CUDA GPU; nothing measured (use --smoke for a CPU check)")
        return 0
    unknown = set(options.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")
    return benchmark(options.cases.split(","), options.runs)


if __name__ == "__main__":
    sys.exit(main())
