"""Benchmark pid_kernels/attention.py: fused QK-norm + RoPE + joint attention.

Cases (bf16, batch 1, released v1 widths), at 1024², 2048² and 4096² output
((S/16)² patch tokens):
  mmdit_<S>: one of the 14 MM-DiT joint attentions per step, 300 text + image
             tokens, 24 heads of 64 (no caption mask, as the release);
  pit_<S>:   one of the 2 PiT attentions per step, image tokens only, 16 heads of 72.
Implementations: ours (`pid_triton`, the tuning table's choice of key prologue,
and `pid_triton_fused_k`, keys normed in the loop), the eager reference, the
reference under torch.compile, each torch SDPA backend and flash-attn when
importable. The SDPA/flash-attn rows time the attention core only, on q/k/v
normed, rotated and laid out [B, H, L, D] beforehand (column `scope`); ours and
the references do the whole seam from the fused qkv projections.
FLOPs = 4 * B * H * L * L * D (L = text + image tokens, D the real head dim).

Usage: python benchmarks/bench_attention.py [--cases mmdit_2048,pit_2048] [--impls pid_triton,sdpa_cudnn]
       [--configs 'BLOCK_N=64,num_warps=4;num_stages=2'] (extra rows of ours at tuning overrides)
Rows go to benchmarks/results/attention.csv, the plot to attention.png. Without
CUDA it prints that it needs a GPU and exits 0; --smoke checks one tiny shape on
CPU under the Triton interpreter (no timings).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

import runner
from common import time_cuda
from runner import relative_l2

PATCH_SIZE = 16
TEXT_TOKENS = 300
RESOLUTIONS = (1024, 2048, 4096)
# (heads, head_dim, text tokens, calls per sampler step) of the released v1 network.
MMDIT = (24, 64, TEXT_TOKENS, 14)
PIT = (16, 72, 0, 2)
CASES = {
    **{f"mmdit_{size}": (*MMDIT, size // PATCH_SIZE) for size in RESOLUTIONS},
    **{f"pit_{size}": (*PIT, size // PATCH_SIZE) for size in RESOLUTIONS},
}
SMOKE_CASES = {"mmdit_smoke": (2, 64, 7, 14, 4), "pit_smoke": (2, 72, 0, 2, 3)}
# Small tiles and the key pre-pass, so the smoke run covers the path the real shapes take.
SMOKE_PREPARED_K = "BLOCK_M=16,BLOCK_N=16,FUSED_K_MAX_Q_TILES=0"
CORE_ONLY = "attention core only (pre-normed q/k/v [B,H,L,D])"
WHOLE_SEAM = "qkv -> out (norm + rope + attention)"


def seam_args(case, device, dtype, batch=1):
    """The seam's arguments for a case: fused qkv per stream, norm weights, RoPE tables."""
    from pid.model.positions import rope_2d, rope_text

    heads, head_dim, text_len, _, grid = case
    width = heads * head_dim
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    def norm_weights():
        return tuple((torch.rand(head_dim, generator=gen, device=device) + 0.5).to(dtype) for _ in range(2))

    args = [randn(batch, grid * grid, 3 * width), norm_weights(), rope_2d(head_dim, grid, grid, 64, 64, device=device),
            heads]
    if text_len:
        args += [randn(batch, text_len, 3 * width), norm_weights(), rope_text(head_dim, text_len, device=device)]
    return args


def prenormed_qkv(args):
    """Joint q, k, v [B, H, Lt+Li, D] exactly as the reference builds them (outside the timed region)."""
    from pid.seams import _split_qkv_norm_rope

    qkv_img, img_norm, img_rope, heads, *text = args
    streams = [_split_qkv_norm_rope(qkv_img, heads, *img_norm, img_rope)]
    if text:
        streams.insert(0, _split_qkv_norm_rope(text[0], heads, *text[1], text[2]))
    return [torch.cat(parts, 2).contiguous() for parts in zip(*streams)]


def with_tuning(fn, override):
    """fn run with PID_TUNING_ATTENTION*=override (read by the op at each call)."""

    def run():
        keys = ("PID_TUNING_ATTENTION", "PID_TUNING_ATTENTION_D128")
        saved = {key: os.environ.get(key) for key in keys}
        os.environ.update({key: override for key in keys})
        try:
            return fn()
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)

    return run


def implementations(args, text_len, on_gpu, configs=()):
    """name -> (fn returning the image output [B, Li, C], scope); `configs` adds ours at tuning overrides."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pid_kernels.triton import attention

    ours = lambda: attention.attention(*args)[0]  # noqa: E731
    impls = {
        "pid_triton": (ours, WHOLE_SEAM),
        "pid_triton_fused_k": (with_tuning(ours, "FUSED_K_MAX_Q_TILES=1000000000"), WHOLE_SEAM),
        "eager_reference": (lambda: attention.reference(*args)[0], WHOLE_SEAM),
        **{f"pid_triton[{config}]": (with_tuning(ours, config), WHOLE_SEAM) for config in configs},
    }
    if on_gpu:
        compiled = torch.compile(attention.reference, fullgraph=True, dynamic=False)
        impls["compiled_reference"] = (lambda: compiled(*args)[0], WHOLE_SEAM)
    q, k, v = prenormed_qkv(args)

    def image_part(out):
        return out.transpose(1, 2).flatten(2)[:, text_len:]

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
    for name, backend in (backends.items() if on_gpu else [("math", SDPBackend.MATH)]):

        def sdpa(backend=backend):
            with sdpa_kernel(backend):
                return image_part(F.scaled_dot_product_attention(q, k, v))

        impls[f"sdpa_{name}"] = (sdpa, CORE_ONLY)
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        flash_attn_func = None
    if on_gpu and flash_attn_func is not None:
        q_bshd, k_bshd, v_bshd = (t.transpose(1, 2).contiguous() for t in (q, k, v))
        impls["flash_attn"] = (lambda: flash_attn_func(q_bshd, k_bshd, v_bshd).flatten(2)[:, text_len:], CORE_ONLY)
    return impls


def case_flops(case, batch=1):
    heads, head_dim, text_len, _, grid = case
    tokens = text_len + grid * grid
    return 4 * batch * heads * tokens * tokens * head_dim


def smoke() -> int:
    """One tiny shape per case kind, on CPU under the interpreter: every CPU-capable impl agrees."""
    for name, case in SMOKE_CASES.items():
        args = seam_args(case, "cpu", torch.bfloat16)
        impls = implementations(args, case[2], on_gpu=False, configs=[SMOKE_PREPARED_K])
        expected = impls["eager_reference"][0]()
        for impl, (fn, _) in impls.items():
            error = relative_l2(fn(), expected)
            assert error < 2e-2, f"{name} {impl}: relative L2 error {error:.2e} vs the eager reference"
        print(f"smoke {name}: {', '.join(impls)} agree; {case_flops(case)} FLOPs per call")
    print(runner.SMOKE_OK)
    return 0


def print_row(row):
    value = lambda key: row.get(key, "-")  # noqa: E731
    print(f"{row['case']:11s} {row['impl']:24s} {value('ms'):>9s} ms {value('tflops'):>6s} TFLOP/s "
          f"{value('pct_of_matmul_ceiling'):>5s}% of matmul {value('pct_of_best_sdpa'):>5s}% of best SDPA "
          f"rel err {value('rel_l2_vs_eager')} {value('note') if 'note' in row else ''}")


def benchmark(case_names, options) -> int:
    configs = [config for config in options.configs.split(";") if config]
    chosen = [name for name in options.impls.split(",") if name] + [f"pid_triton[{config}]" for config in configs]
    impl_names = chosen if options.impls else []
    ceilings = runner.report_ceilings(compute_bound=True)
    rows = []
    for case_name in case_names:
        case = CASES[case_name]
        heads, head_dim, text_len, calls_per_step, grid = case
        args = seam_args(case, "cuda", torch.bfloat16)
        impls = implementations(args, text_len, on_gpu=True, configs=configs)
        expected = impls["eager_reference"][0]()
        flops = case_flops(case)
        case_rows = []
        for impl in impl_names or impls:
            if impl not in impls:
                continue
            fn, scope = impls[impl]
            row = {"op": "attention", "case": case_name, "impl": impl, "scope": scope, "dtype": "bfloat16",
                   "batch": 1, "heads": heads, "head_dim": head_dim, "text_tokens": text_len,
                   "image_tokens": grid * grid, "calls_per_step": calls_per_step, "flops": flops,
                   **{key: f"{value:.1f}" for key, value in ceilings.items()}}
            try:
                row["rel_l2_vs_eager"] = f"{relative_l2(fn(), expected):.2e}"
                ms = time_cuda(fn, runs=options.runs)
            except (RuntimeError, torch.OutOfMemoryError) as error:  # e.g. math backend OOM, unsupported dim
                torch.cuda.empty_cache()
                row["note"] = f"skipped: {str(error).splitlines()[0][:120]}"
                case_rows.append(row)
                continue
            tflops = flops / ms / 1e9
            row.update(ms=f"{ms:.4f}", ms_per_step=f"{ms * calls_per_step:.3f}", tflops=f"{tflops:.1f}",
                       pct_of_matmul_ceiling=f"{100 * tflops / ceilings['matmul_bf16_tflops']:.1f}")
            case_rows.append(row)
        sdpa_best = max((float(r["tflops"]) for r in case_rows if r["impl"].startswith("sdpa_") and "tflops" in r),
                        default=None)
        for row in case_rows:
            if sdpa_best and "tflops" in row:
                row["pct_of_best_sdpa"] = f"{100 * float(row['tflops']) / sdpa_best:.1f}"
            print_row(row)
        rows += case_rows
        del args, impls, expected
        torch.cuda.empty_cache()
    runner.write_results("attention", rows, y="tflops")
    return 0


def main() -> int:
    parser = runner.base_parser(__doc__, CASES, impls=True)
    parser.add_argument("--configs", default="", help="';'-separated tuning overrides to time as extra rows, "
                        "e.g. 'BLOCK_M=128,BLOCK_N=64,num_warps=4;BLOCK_N=128,num_stages=2'")
    return runner.triton_main("attention", parser, CASES, smoke, benchmark)


if __name__ == "__main__":
    sys.exit(main())
