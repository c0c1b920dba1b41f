"""Measured quality of fp8 decodes on the CPU emulation (the CI quality gate and the policy's
evidence).

Network: `QUALITY_CONFIG`, the v1 Flux architecture shrunk (6 MM-DiT blocks of width 256 with
head dim 64, 2 PiT blocks with head dim 72, the real pixel width 16, sr 4x; patch 8 instead of
16, so a 128² image has 256 patch tokens and attention runs over several 128-token key blocks),
decoded at 128² by the distilled 4-step sampler. Two weight sets:
- "random": seeded random weights (`pid.cli.demo.randomize_`), rounded to bf16 as the released
  checkpoints are;
- "outliers": the same plus injected outliers, as trained diffusion transformers have them
  (`inject_outliers`): in each MM-DiT block, 1 channel in 32 of the normalized activations that
  feed the qkv and MLP GEMMs amplified OUTLIER_GAIN x (the consuming weight columns divided
  by the same, so the function is unchanged and only the per-token quantization is stressed),
  and 1 weight in 256 of every linear layer multiplied by WEIGHT_OUTLIER_GAIN.
For each: PSNR of the fp8 decode against the bf16 decode (the target), and both decodes'
PSNR against the float32 decode. `python -m pid.quant.quality` prints the table and the
per-layer-group sensitivities the default policy was chosen from.
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from typing import Optional

import torch

from pid.bench.decode import BenchCase, build_weights, make_inputs
from pid.bench.measure import psnr
from pid.configs import released_config
from pid.model.network import PiDNet
from pid.quant.convert import quantize_model
from pid.quant.policy import DEFAULT_RULES, Policy, Rule
from pid.sampling.distilled import Decoder

QUALITY_CONFIG = {
    **released_config("PiD_res2k_sr4x_official_flux_distill_4step"),
    "hidden_size": 256, "num_groups": 4, "patch_depth": 6, "pixel_attn_hidden_size": 144, "pixel_num_groups": 2,
    "txt_embed_dim": 128, "txt_max_length": 32, "lq_hidden_dim": 64, "lq_num_res_blocks": 1, "patch_size": 8,
}
QUALITY_IMAGE_SIZE = 128
CAPTION_TOKENS = 32
TARGET_PSNR_DB = 35.0
WEIGHT_SETS = ("random", "outliers")
OUTLIER_CHANNEL_EVERY = 32
OUTLIER_GAIN = 32.0
WEIGHT_OUTLIER_EVERY = 256
WEIGHT_OUTLIER_GAIN = 8.0
# Norm weight -> the linear layers that consume its (modulated) output.
_NORM_CONSUMERS = {
    "norm_x1": ("attn.qkv_x",), "norm_y1": ("attn.qkv_y",),
    "norm_x2": ("mlp_x.w1", "mlp_x.w3"), "norm_y2": ("mlp_y.w1", "mlp_y.w3"),
}


@torch.no_grad()
def inject_outliers(net: PiDNet, seed: int) -> PiDNet:
    """Add the "outliers" weight set's outliers to a float32 net in place (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    for block in net.patch_blocks:
        for norm_name, consumers in _NORM_CONSUMERS.items():
            norm = getattr(block, norm_name).weight
            channels = torch.randperm(norm.numel(), generator=generator)[: norm.numel() // OUTLIER_CHANNEL_EVERY]
            norm[channels] *= OUTLIER_GAIN
            for consumer in consumers:
                block.get_submodule(consumer).weight[:, channels] /= OUTLIER_GAIN
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.Linear):
            flat = module.weight.view(-1)
            picked = torch.randperm(flat.numel(), generator=generator)[: max(1, flat.numel() // WEIGHT_OUTLIER_EVERY)]
            flat[picked] *= WEIGHT_OUTLIER_GAIN
    for param in net.parameters():  # back to bf16-representable values, as a checkpoint holds
        param.copy_(param.to(torch.bfloat16))
    return net


def quality_net(weight_set: str, seed: int = 0, config: Optional[dict] = None) -> PiDNet:
    if weight_set not in WEIGHT_SETS:
        raise ValueError(f"weight_set must be one of {WEIGHT_SETS}, got {weight_set!r}")
    net = build_weights(config or QUALITY_CONFIG, seed)
    return inject_outliers(net, seed) if weight_set == "outliers" else net


def _decode(net: PiDNet, inputs: dict) -> torch.Tensor:
    return Decoder(net).decode(inputs["latent"], inputs["sigma"], inputs["captions"], seed=0)


@dataclass
class Decodes:
    """One weight set decoded in float32, bf16 and fp8 (per policy name)."""

    fp32: torch.Tensor
    bf16: torch.Tensor
    fp8: dict

    def rows(self) -> list[dict]:
        rows = [{"path": "bf16", "psnr_vs_bf16": float("inf"), "psnr_vs_fp32": psnr(self.bf16, self.fp32)}]
        for name, image in self.fp8.items():
            rows.append({"path": name, "psnr_vs_bf16": psnr(image, self.bf16), "psnr_vs_fp32": psnr(image, self.fp32)})
        return rows


def decode_all(net32: PiDNet, policies: dict, image_size: int = QUALITY_IMAGE_SIZE) -> Decodes:
    """Decode one input with `net32`, its bf16 copy and one fp8 copy per named policy."""
    inputs = make_inputs(net32, BenchCase(image_size, 1), min(CAPTION_TOKENS, net32.txt_max_length), seed=0)
    net16 = copy.deepcopy(net32).to(torch.bfloat16)
    fp8 = {}
    for name, policy in policies.items():
        quantized = copy.deepcopy(net16)
        quantize_model(quantized, policy)
        fp8[name] = _decode(quantized, inputs)
        del quantized
    return Decodes(fp32=_decode(net32, inputs), bf16=_decode(net16, inputs), fp8=fp8)


def format_table(results: dict) -> str:
    """results: weight set -> Decodes.rows() -> a fixed-width table."""
    lines = [f"{'weights':10s} {'path':28s} {'PSNR vs bf16':>13s} {'PSNR vs fp32':>13s}"]
    for weight_set, rows in results.items():
        for row in rows:
            psnrs = f"{row['psnr_vs_bf16']:11.2f}dB {row['psnr_vs_fp32']:11.2f}dB"
            lines.append(f"{weight_set:10s} {row['path']:28s} {psnrs}")
    return "\n".join(lines)


# ---- per-layer-group sensitivity (the policy's evidence) -----------------------------------
SENSITIVITY_GROUPS = {
    "MM-DiT qkv": ("patch_blocks.*.attn.qkv_[xy]",),
    "MM-DiT attn proj": ("patch_blocks.*.attn.proj_[xy]",),
    "MM-DiT MLP": ("patch_blocks.*.mlp_[xy].w[123]",),
    "PiT compress": ("pixel_blocks.*.compress_to_attn",),
    "PiT expand": ("pixel_blocks.*.expand_from_attn",),
    "PiT attn qkv+proj": ("pixel_blocks.*.attn.*",),
    "MM-DiT attention": ("patch_blocks.*.attn",),
    "PiT attention": ("pixel_blocks.*.attn",),
    "MM-DiT adaLN (fp8 compute)": ("patch_blocks.*.adaLN_modulation*",),
    "PiT adaLN (fp8 compute)": ("pixel_blocks.*.adaLN_modulation*",),
    "LQ adapter heads": ("lq_proj.output_heads.*", "lq_proj.pit_head"),
    "caption embedder": ("y_embedder.*",),
    "sigma gates": ("*.content_proj",),
    "patch embedding": ("s_embedder.proj",),
}


def sensitivity_policy(patterns: tuple, precision: str = "fp8", recipe: str = "sage") -> Policy:
    """Only the layers matching `patterns` in `precision`; everything else kept."""
    rules = tuple(Rule(pattern, precision, "under test") for pattern in patterns)
    return Policy(rules + (Rule("*", "bf16", "kept for the measurement"),), recipe)


def layer_sensitivity(net32: PiDNet, image_size: int = QUALITY_IMAGE_SIZE) -> list[dict]:
    """PSNR vs bf16 with one layer group at a time in fp8 (everything else bf16)."""
    policies = {name: sensitivity_policy(patterns) for name, patterns in SENSITIVITY_GROUPS.items()}
    policies["MM-DiT adaLN (fp8 storage)"] = sensitivity_policy(("patch_blocks.*.adaLN_modulation*",), "fp8_weight")
    policies["PiT adaLN (fp8 storage)"] = sensitivity_policy(("pixel_blocks.*.adaLN_modulation*",), "fp8_weight")
    attention = ("patch_blocks.*.attn", "pixel_blocks.*.attn")
    policies["attention, fa3 recipe"] = sensitivity_policy(attention, "fp8", "fa3")
    policies["attention, sage recipe"] = sensitivity_policy(attention, "fp8", "sage")
    return decode_all(net32, policies, image_size).rows()[1:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pid.quant.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--sensitivity", action="store_true", help="also measure each layer group alone")
    parser.add_argument("--size", type=int, default=QUALITY_IMAGE_SIZE)
    args = parser.parse_args(argv)
    policies = {"fp8 (default policy)": Policy(), "fp8, fa3 attention": Policy(DEFAULT_RULES, "fa3")}
    results = {}
    for weight_set in WEIGHT_SETS:
        net32 = quality_net(weight_set)
        results[weight_set] = decode_all(net32, policies, args.size).rows()
        if args.sensitivity:
            results[f"{weight_set}:groups"] = layer_sensitivity(net32, args.size)
    print(f"CPU emulation, seeded random weights, shrunk v1 Flux (pid.quant.quality.QUALITY_CONFIG) at {args.size}²")
    print(format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
