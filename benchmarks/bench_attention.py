"""Benchmark attention: QK RMSNorm + RoPE + attention over the joint text/image sequence,
from the fused qkv projections to the output.

Cases (bf16, batch 1, heads and widths of the released v1 config), per output size S of
pid.bench.ops.SIZES ((S/P)² image tokens):
  mmdit_<S>: one MM-DiT joint attention, 300 caption + image tokens, 24 heads of 64;
  pit_<S>:   one PiT attention, image tokens only, 16 heads of 72.
FLOPs = 4 * H * L² * D (L = all tokens, D the head dim). Baselines, each the whole seam (its
separate QK-norm + RoPE in eager PyTorch, then the attention core): the seam's reference
under every SDPA backend the installed torch has (`sdpa_flash`, `sdpa_efficient`,
`sdpa_cudnn`; a dry run has `sdpa_math`), and `sageattention` when that package is
importable. The error is measured against the reference in float32.

Usage: python benchmarks/bench_attention.py [--cases mmdit_2048,pit_2048] [--impls pid_triton,sdpa_cudnn]
       [--runs 20] [--dry-run] [--list]
Rows go to benchmarks/results/attention.csv (pid.bench.ops.COLUMNS).
Tile overrides: PID_TUNING_ATTENTION=BLOCK_N=64,num_warps=4 (see pid_kernels/tuning).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import ops  # noqa: E402

OP = "attention"
BF16 = 2


def _sdpa_baselines() -> dict[str, Callable]:
    """The seam's reference with SDPA pinned to each backend (the math one on the CPU)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from pid.seams import SEAMS

    reference = SEAMS[OP].reference
    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    if not torch.cuda.is_available():
        names = {"math": "MATH"}
    baselines = {}
    for name, member in names.items():
        if hasattr(SDPBackend, member):  # older torch builds lack cuDNN attention

            def pinned(*args, backend=getattr(SDPBackend, member)):
                with sdpa_kernel(backend):
                    return reference(*args)

            baselines[f"sdpa_{name}"] = pinned
    return baselines


def _sage_baseline() -> dict[str, Callable]:
    """SageAttention's core after the seam's own QK-norm + RoPE, when sageattention is installed
    (a version that does not import with this torch/triton gives a row that says why)."""
    import importlib.util

    if importlib.util.find_spec("sageattention") is None:
        return {}
    try:
        from sageattention import sageattn
    except Exception as error:  # noqa: BLE001 - any import failure becomes the row's note
        reason = f"sageattention does not import here: {type(error).__name__}: {error}"

        def unavailable(*args):
            raise RuntimeError(reason)

        return {"sageattention": unavailable}
    from pid.seams import _split_qkv_norm_rope

    def sage(qkv_img, img_qk_norm, img_rope, num_heads, qkv_txt=None, txt_qk_norm=None, txt_rope=None):
        streams = [_split_qkv_norm_rope(qkv_img, num_heads, *img_qk_norm, img_rope)]
        if qkv_txt is not None:
            streams.insert(0, _split_qkv_norm_rope(qkv_txt, num_heads, *txt_qk_norm, txt_rope))
        q, k, v = (torch.cat(parts, 2) for parts in zip(*streams))
        out = sageattn(q, k, v, tensor_layout="HND", is_causal=False).transpose(1, 2).flatten(2)
        text_len = 0 if qkv_txt is None else qkv_txt.shape[1]
        return out[:, text_len:], (out[:, :text_len] if qkv_txt is not None else None)

    return {"sageattention": sage}


def _case(grid_h: int, grid_w: int, heads: int, head_dim: int, text_tokens: int, rope_ref: tuple[int, int],
          baselines: dict[str, Callable]) -> ops.OpCase:
    from pid.model.positions import rope_2d, rope_text

    width = heads * head_dim
    image_tokens = grid_h * grid_w

    def make_args(device, generator):
        def norms():
            return ops.norm_weight(generator, head_dim), ops.norm_weight(generator, head_dim)

        args = [ops.randn(generator, 1, image_tokens, 3 * width), norms(),
                rope_2d(head_dim, grid_h, grid_w, *rope_ref, device=device), heads]
        if text_tokens:
            args += [ops.randn(generator, 1, text_tokens, 3 * width), norms(), rope_text(head_dim, text_tokens,
                                                                                      device=device)]
        return args

    tokens = text_tokens + image_tokens
    return ops.OpCase(f"{heads} heads of {head_dim}, {text_tokens} text + {image_tokens} image tokens", make_args,
                      flops=4 * heads * tokens * tokens * head_dim,
                      bytes=BF16 * (3 * tokens * width + tokens * width), truth_dtype=torch.float32,
                      baselines=baselines)


def cases(tiny: bool = False) -> dict[str, ops.OpCase]:
    config = ops.config(tiny=tiny)
    patch = config["patch_size"]
    rope_ref = (config["rope_ref_h"] // patch, config["rope_ref_w"] // patch)
    mmdit = (config["num_groups"], config["hidden_size"] // config["num_groups"], config["txt_max_length"])
    pit = (config["pixel_num_groups"], config["pixel_attn_hidden_size"] // config["pixel_num_groups"], 0)
    baselines = _sdpa_baselines() | _sage_baseline()
    table = {}
    for size, (height, width) in ops.sizes(tiny).items():
        grid = (height // patch, width // patch)
        table[f"mmdit_{size}"] = _case(*grid, *mmdit, rope_ref, baselines)
        table[f"pit_{size}"] = _case(*grid, *pit, rope_ref, baselines)
    return table


if __name__ == "__main__":
    sys.exit(ops.main(OP, cases, __doc__))
