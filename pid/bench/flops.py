"""Analytic FLOP count of the PiD network: GEMMs, attention and convolutions, op by op.

One multiply-add is 2 FLOPs. Counted: every linear layer, the 3x3 convolutions of
the LQ adapter, and the two matmuls of every attention (QK^T and PV: 4 * L^2 * width
per sample). Not counted: norms, activations, softmax, RoPE, gates' sigmoid and
other element-wise work (a few percent of the time at most, none of the FLOPs that
matter for a matmul-bound decode).

`forward_ops` lists one network call op by op: each fused op of `pid.seams` and each
plain layer the network calls, with its FLOPs, the module whose fp8 policy decides it
and the sizes of the tensors it reads and writes (what `pid.bench.roofline` turns into
bytes). `forward_flops` sums those FLOPs by term: one call of the network as the release
makes it (LQ adapter, caption projection and the last patch block's discarded text branch
included, on every call); at 2048² with 300 caption tokens on the v1 architecture it gives
the 45.1 TFLOP per step quoted for v1. `decode_flops` is the useful work of a whole
decode: step-invariant work (LQ adapter, caption projection) once, the per-step
work once per step, the discarded text branch not at all. Benchmarks divide
`decode_flops` by the measured time, so every implementation is credited with the
same work and achieved TFLOP/s compares times directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from pid.configs import resolve_config
from pid.model.positions import TIMESTEP_FEATURES
from pid.sampling.geometry import lq_alignment

# Terms computed once per decode by a sampler that hoists step-invariant work.
STEP_INVARIANT_TERMS = ("lq_adapter", "caption_projection")
# Computed by the release on every call and then discarded (the last block's text output).
DISCARDED_TERMS = ("last_block_text_output",)
# The FLOP terms of forward_flops, in its order.
TERMS = (
    "lq_adapter", "caption_projection", "timestep_and_adaln", "patch_embed", "lq_gates", "patch_blocks_image_gemms",
    "patch_blocks_text_gemms", "last_block_text_output", "patch_blocks_attention", "pixel_embed",
    "pixel_blocks_adaln", "pixel_blocks_compress_expand", "pixel_blocks_attention_gemms", "pixel_blocks_attention",
    "pixel_blocks_mlp", "final_layer",
)
# The term of the per-step element-wise ops (no FLOPs counted).
ELEMENTWISE = "elementwise"
CONV_TAPS = 9  # 3x3 convolutions


@dataclass(frozen=True)
class OpCall:
    """One op of a network call, over the whole batch.

    op: the seam of `pid.seams` it runs as, or "gemm" / "conv" for a plain layer;
    term: the forward_flops term its FLOPs count in (ELEMENTWISE for the element-wise seams);
    layer: the qualified module name whose weights it reads (`pid.quant.policy` decides on it);
    weights: weight elements (and step-invariant tables) one call reads, whatever the batch;
    activations: activation elements read plus written, in the model dtype;
    float32: elements read plus written in float32 (the sampler's images).
    """

    op: str
    term: str
    layer: str
    flops: float
    weights: int
    activations: int
    float32: int = 0


def _linear(tokens: float, fan_in: int, fan_out: int) -> float:
    return 2.0 * tokens * fan_in * fan_out


def _swiglu_hidden(width: int) -> int:
    return int(2 * (4 * width) / 3)


def _gemm(term: str, layer: str, tokens: int, fan_in: int, fan_out: int, op: str = "gemm") -> OpCall:
    """A linear layer on `tokens` rows: x [tokens, fan_in] read, [tokens, fan_out] written."""
    return OpCall(op, term, layer, _linear(tokens, fan_in, fan_out), fan_in * fan_out, tokens * (fan_in + fan_out))


def forward_ops(
    config: str | Mapping[str, Any], image_hw: tuple[int, int], caption_tokens: int = 300, batch: int = 1
) -> list[OpCall]:
    """The ops of one network call on `batch` images of size image_hw, in call order
    (the release's call: the last block's text output branch included, under its term)."""
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
    channels = cfg["in_channels"]
    gated_blocks = -(-depth // cfg["lq_interval"])
    gate_outputs = hidden if cfg["lq_gate_type"] == "sigma_aware_per_token_per_dim" else 1
    ops: list[OpCall] = []

    # LQ adapter: convs at the patch grid on the aligned latent, then one head per gated block.
    _, latent_channels = lq_alignment(cfg["lq_latent_channels"], patch, cfg["sr_scale"],
                                      cfg["latent_spatial_down_factor"], cfg["lq_latent_unpatchify_factor"])
    lq_hidden = cfg["lq_hidden_dim"]
    conv_inputs = [latent_channels] + [lq_hidden] * (1 + 2 * cfg["lq_num_res_blocks"])
    for index, conv_in in enumerate(conv_inputs):
        conv = _gemm("lq_adapter", f"lq_proj.latent_proj.{index}", image_tokens, CONV_TAPS * conv_in, lq_hidden, "conv")
        ops.append(OpCall("conv", conv.term, conv.layer, conv.flops, conv.weights,
                          image_tokens * (conv_in + lq_hidden)))  # the input is read once, not once per tap
    heads = [f"lq_proj.output_heads.{i}" for i in range(gated_blocks)]
    heads += ["lq_proj.pit_head"] if cfg["pit_lq_inject"] else []
    ops += [_gemm("lq_adapter", head, image_tokens, lq_hidden, hidden) for head in heads]
    ops.append(_gemm("caption_projection", "y_embedder.proj", text_tokens, cfg["txt_embed_dim"], hidden))
    ops.append(_gemm("timestep_and_adaln", "t_embedder.mlp.0", 1, TIMESTEP_FEATURES, hidden))
    ops.append(_gemm("timestep_and_adaln", "t_embedder.mlp.2", 1, hidden, hidden))
    for index in range(depth):
        for stream in ("img", "txt"):
            ops.append(_gemm("timestep_and_adaln", f"patch_blocks.{index}.adaLN_modulation_{stream}.0", 1, hidden,
                             6 * hidden))

    embed = _gemm("patch_embed", "s_embedder.proj", image_tokens, channels * pixels_per_patch, hidden, "patch_embed")
    ops.append(embed)

    def sigma_gate(layer: str) -> OpCall:  # x and lq read, x' written; the [x, lq] GEMM inside
        return OpCall("sigma_gate", "lq_gates", layer, _linear(image_tokens, 2 * hidden, gate_outputs),
                      2 * hidden * gate_outputs, 3 * image_tokens * hidden)

    def stream_ops(block: int, stream: str, tokens: int, with_output: bool) -> tuple[list, list]:
        """(before attention, after attention) of one stream of a patch block."""
        x, term = ("x", "patch_blocks_image_gemms") if stream == "image" else ("y", "patch_blocks_text_gemms")
        prefix = f"patch_blocks.{block}"
        # shift, scale and gates are [C] vectors of the modulation
        before = [
            OpCall("rmsnorm_modulate", ELEMENTWISE, f"{prefix}.norm_{x}1", 0.0, hidden, 2 * (tokens + 1) * hidden),
            _gemm(term, f"{prefix}.attn.qkv_{x}", tokens, hidden, 3 * hidden),
        ]
        term, elementwise = (term, ELEMENTWISE) if with_output else ("last_block_text_output",) * 2
        swiglu = _gemm(term, f"{prefix}.mlp_{x}.w1", tokens, hidden, 2 * mlp_hidden, "swiglu")  # w1 and w3, one GEMM
        after = [
            _gemm(term, f"{prefix}.attn.proj_{x}", tokens, hidden, hidden),
            # x, y, gate, shift and scale read, x' and the modulated x' written
            OpCall("gated_residual_rmsnorm_modulate", elementwise, f"{prefix}.norm_{x}2", 0.0, hidden,
                   (4 * tokens + 3) * hidden),
            OpCall(swiglu.op, term, swiglu.layer, swiglu.flops, swiglu.weights, tokens * (hidden + mlp_hidden)),
            _gemm(term, f"{prefix}.mlp_{x}.w2", tokens, mlp_hidden, hidden),
            OpCall("gated_residual", elementwise, f"{prefix}.mlp_{x}", 0.0, 0, (3 * tokens + 1) * hidden),
        ]
        return before, after

    joint_tokens = image_tokens + text_tokens
    for index in range(depth):
        if index % cfg["lq_interval"] == 0:
            ops.append(sigma_gate(f"lq_proj.gate_modules.{index // cfg['lq_interval']}.content_proj"))
        image_before, image_after = stream_ops(index, "image", image_tokens, True)
        text_before, text_after = stream_ops(index, "text", text_tokens, index != depth - 1)
        ops += image_before + text_before
        # qkv of both streams read, the joint output written
        ops.append(OpCall("attention", "patch_blocks_attention", f"patch_blocks.{index}.attn",
                          4.0 * joint_tokens**2 * hidden, 0, 4 * joint_tokens * hidden))
        ops += image_after + text_after
    if cfg["pit_lq_inject"]:
        ops.append(sigma_gate("pit_lq_gate.content_proj"))

    # The position table is a step-invariant table read once per call: counted with the weights.
    ops.append(OpCall("pixel_embed", "pixel_embed", "pixel_embedder.proj", _linear(pixels, channels, pixel_dim),
                      channels * pixel_dim + pixels * pixel_dim, pixels * (channels + pixel_dim)))
    patch_width = pixels_per_patch * pixel_dim  # one patch's pixels, flattened
    for index in range(cfg["pixel_depth"]):
        prefix = f"pixel_blocks.{index}"
        ops += [
            _gemm("pixel_blocks_adaln", f"{prefix}.adaLN_modulation.0", image_tokens, hidden, 6 * patch_width),
            # x, shift and scale (per pixel) read, the result written
            OpCall("rmsnorm_modulate", ELEMENTWISE, f"{prefix}.norm1", 0.0, pixel_dim, 4 * pixels * pixel_dim),
            _gemm("pixel_blocks_compress_expand", f"{prefix}.compress_to_attn", image_tokens, patch_width, attn_dim),
            _gemm("pixel_blocks_attention_gemms", f"{prefix}.attn.qkv", image_tokens, attn_dim, 3 * attn_dim),
            OpCall("attention", "pixel_blocks_attention", f"{prefix}.attn", 4.0 * image_tokens**2 * attn_dim, 0,
                   4 * image_tokens * attn_dim),
            _gemm("pixel_blocks_attention_gemms", f"{prefix}.attn.proj", image_tokens, attn_dim, attn_dim),
            _gemm("pixel_blocks_compress_expand", f"{prefix}.expand_from_attn", image_tokens, attn_dim, patch_width),
            # x, the expanded attention output and the per-pixel gate read, x' written
            OpCall("gated_residual", ELEMENTWISE, f"{prefix}.expand_from_attn", 0.0, 0, 4 * pixels * pixel_dim),
            # x, shift, scale and gate read, x' written; fc1 and fc2 per pixel
            OpCall("pit_pixel_mlp", "pixel_blocks_mlp", f"{prefix}.mlp", 2 * _linear(pixels, pixel_dim, 4 * pixel_dim),
                   2 * 4 * pixel_dim * pixel_dim, 5 * pixels * pixel_dim),
        ]
    # Final layer and sampler step: pixel tokens read; x_t read and the next x_t written in float32
    # (the noise of the re-noising step is the roofline's to add: the last step reads none).
    ops.append(OpCall("unembed_update", "final_layer", "final_layer.linear", _linear(pixels, pixel_dim, channels),
                      pixel_dim * channels, pixels * pixel_dim, 2 * channels * pixels))
    return [OpCall(op.op, op.term, op.layer, op.flops * batch, op.weights, op.activations * batch, op.float32 * batch)
            for op in ops]


def forward_flops(
    config: str | Mapping[str, Any], image_hw: tuple[int, int], caption_tokens: int = 300, batch: int = 1
) -> dict[str, float]:
    """FLOPs of one network call on `batch` images of size image_hw, by term, plus 'total'.

    config: a released checkpoint/architecture name or a dict of constructor kwargs.
    """
    ops = forward_ops(config, image_hw, caption_tokens, batch)
    terms = {term: sum(op.flops for op in ops if op.term == term) for term in TERMS}
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


__all__ = ["DISCARDED_TERMS", "ELEMENTWISE", "STEP_INVARIANT_TERMS", "TERMS", "OpCall", "breakdown_table",
           "decode_flops", "forward_flops", "forward_ops"]
