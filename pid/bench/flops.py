"""Analytic FLOP count of the PiD network: GEMMs, attention and convolutions.

One multiply-add is 2 FLOPs. Counted: every linear layer, the 3x3 convolutions of
the LQ adapter, and the two matmuls of every attention (QK^T and PV: 4 * L^2 * width
per sample). Not counted: norms, activations, softmax, RoPE, gates' sigmoid and
other element-wise work (a few percent of the time at most, none of the FLOPs that
matter for a matmul-bound decode).

`forward_flops` is one call of the network as the release makes it (LQ adapter,
caption projection and the last patch block's discarded text branch included, on
every call); at 2048² with 300 caption tokens on the v1 architecture it gives the
45.1 TFLOP per step quoted for v1. `decode_flops` is the useful work of a whole
decode: step-invariant work (LQ adapter, caption projection) once, the per-step
work once per step, the discarded text branch not at all. Benchmarks divide
`decode_flops` by the measured time, so every implementation is credited with the
same work and achieved TFLOP/s compares times directly.
"""

from __future__ import annotations

from typing import Any, Mapping

from pid.configs import resolve_config
from pid.model.positions import TIMESTEP_FEATURES
from pid.sampling.geometry import lq_alignment

# Terms computed once per decode by a sampler that hoists step-invariant work.
STEP_INVARIANT_TERMS = ("lq_adapter", "caption_projection")
# Computed by the release on every call and then discarded (the last block's text output).
DISCARDED_TERMS = ("last_block_text_output",)
CONV_TAPS = 9  # 3x3 convolutions


def _linear(tokens: float, fan_in: int, fan_out: int) -> float:
    return 2.0 * tokens * fan_in * fan_out


def _swiglu_hidden(width: int) -> int:
    return int(2 * (4 * width) / 3)


def forward_flops(
    config: str | Mapping[str, Any], image_hw: tuple[int, int], caption_tokens: int = 300, batch: int = 1
) -> dict[str, float]:
    """FLOPs of one network call on `batch` images of size image_hw, by term, plus 'total'.

    config: a released checkpoint/architecture name or a dict of constructor kwargs.
    """
    cfg = resolve_config(config)
    height, width = image_hw
    patch = cfg["patch_size"]
    hidden = cfg["hidden_size"]
    depth = cfg["patch_depth"]
    image_tokens = (height // patch) * (width // patch)
    text_tokens = min(caption_tokens, cfg["txt_max_length"])
    pixels = height * width
    pixels_per_patch = patch * patch
    pixel_dim = cfg["pixel_hidden_size"]
    attn_dim = cfg["pixel_attn_hidden_size"] or hidden
    mlp_hidden = _swiglu_hidden(hidden)
    gated_blocks = -(-depth // cfg["lq_interval"])
    gate_outputs = hidden if cfg["lq_gate_type"] == "sigma_aware_per_token_per_dim" else 1

    # LQ adapter: convs at the patch grid on the aligned latent, then one head per gated block.
    _, latent_channels = lq_alignment(cfg["lq_latent_channels"], patch, cfg["sr_scale"],
                                      cfg["latent_spatial_down_factor"], cfg["lq_latent_unpatchify_factor"])
    lq_hidden = cfg["lq_hidden_dim"]
    lq_convs = _linear(image_tokens, CONV_TAPS * latent_channels, lq_hidden) + (
        1 + 2 * cfg["lq_num_res_blocks"]
    ) * _linear(image_tokens, CONV_TAPS * lq_hidden, lq_hidden)
    lq_heads = (gated_blocks + (1 if cfg["pit_lq_inject"] else 0)) * _linear(image_tokens, lq_hidden, hidden)

    def stream_gemms(tokens: int) -> float:
        return (
            _linear(tokens, hidden, 3 * hidden)
            + _linear(tokens, hidden, hidden)
            + 3 * _linear(tokens, hidden, mlp_hidden)
        )

    joint_tokens = image_tokens + text_tokens
    text_output = _linear(text_tokens, hidden, hidden) + 3 * _linear(text_tokens, hidden, mlp_hidden)
    terms = {
        "lq_adapter": lq_convs + lq_heads,
        "caption_projection": _linear(text_tokens, cfg["txt_embed_dim"], hidden),
        "timestep_and_adaln": _linear(1, TIMESTEP_FEATURES, hidden)
        + _linear(1, hidden, hidden)
        + depth * 2 * _linear(1, hidden, 6 * hidden),
        "patch_embed": _linear(image_tokens, cfg["in_channels"] * pixels_per_patch, hidden),
        "lq_gates": gated_blocks * _linear(image_tokens, 2 * hidden, gate_outputs)
        + (_linear(image_tokens, 2 * hidden, gate_outputs) if cfg["pit_lq_inject"] else 0.0),
        "patch_blocks_image_gemms": depth * stream_gemms(image_tokens),
        "patch_blocks_text_gemms": depth * stream_gemms(text_tokens) - text_output,
        "last_block_text_output": text_output,
        "patch_blocks_attention": depth * 4.0 * joint_tokens**2 * hidden,
        "pixel_embed": _linear(pixels, cfg["in_channels"], pixel_dim),
        "pixel_blocks_adaln": cfg["pixel_depth"] * _linear(image_tokens, hidden, 6 * pixel_dim * pixels_per_patch),
        "pixel_blocks_compress_expand": cfg["pixel_depth"]
        * 2
        * _linear(image_tokens, pixels_per_patch * pixel_dim, attn_dim),
        "pixel_blocks_attention_gemms": cfg["pixel_depth"]
        * (_linear(image_tokens, attn_dim, 3 * attn_dim) + _linear(image_tokens, attn_dim, attn_dim)),
        "pixel_blocks_attention": cfg["pixel_depth"] * 4.0 * image_tokens**2 * attn_dim,
        "pixel_blocks_mlp": cfg["pixel_depth"] * 2 * _linear(pixels, pixel_dim, 4 * pixel_dim),
        "final_layer": _linear(pixels, pixel_dim, cfg["in_channels"]),
    }
    terms = {name: value * batch for name, value in terms.items()}
    terms["total"] = sum(terms.values())
    return terms


def decode_flops(
    config: str | Mapping[str, Any],
    image_hw: tuple[int, int],
    caption_tokens: int = 300,
    batch: int = 1,
    steps: int = 4,
) -> float:
    """Useful FLOPs of a `steps`-step decode: step-invariant terms once, the rest per step,
    the discarded text branch of the last block not at all."""
    terms = forward_flops(config, image_hw, caption_tokens, batch)
    once = sum(terms[name] for name in STEP_INVARIANT_TERMS)
    per_step = terms["total"] - once - sum(terms[name] for name in DISCARDED_TERMS)
    return once + steps * per_step


def breakdown_table(config: str | Mapping[str, Any], image_hw: tuple[int, int], caption_tokens: int = 300) -> str:
    """A plain-text table of forward_flops, batch 1, in TFLOP (GFLOP for small networks)."""
    terms = forward_flops(config, image_hw, caption_tokens)
    total = terms["total"]
    unit, scale = ("TFLOP", 1e12) if total >= 1e12 else ("GFLOP", 1e9)
    lines = [f"{'term':<32}{unit:>10}{'share':>8}"]
    for name, value in terms.items():
        if name != "total":
            lines.append(f"{name:<32}{value / scale:>10.3f}{value / total:>8.1%}")
    lines.append(f"{'total (one release forward)':<32}{total / scale:>10.3f}{1:>8.0%}")
    return "\n".join(lines)


__all__ = ["DISCARDED_TERMS", "STEP_INVARIANT_TERMS", "breakdown_table", "decode_flops", "forward_flops"]
