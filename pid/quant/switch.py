"""`pid.CompileConfig(precision="fp8")`: quantize a compiled network in place, and say what ran.

Refused on a GPU without fp8 tensor cores (compute capability < 8.9), with the reason. On
a CPU the fp8 products run through the float32 emulation. The fused fp8 ops (the `*_fp8` Triton
ops: adaLN producers that write e4m3 inputs, the fp8 sigma gate and patch embedding) are switched
on by `pid.compile` like every fused op, and its report lists them. On a GPU the attention modules
stay in bf16 (the fused bf16 attention kernel) by default: the Triton fp8 attention kernel
has not run on a GPU yet. Quantization replaces the weights, so `pid.revert` leaves it in
place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from pid.quant.convert import QUANT_ATTRIBUTE, QuantReport, quantize_model
from pid.quant.fp8 import fp8_device_reasons
from pid.quant.policy import DEFAULT_RULES, Policy, Rule

if TYPE_CHECKING:
    from pid.accel.compile import CompileReport
    from pid.model.network import PiDNet

PRECISIONS = ("fp8",)
NO_FP8_ATTENTION_KERNEL = (
    "the Triton fp8 attention kernel (pid.quant.triton_attention) has never run on a GPU: the bf16 "
    "attention kernel runs until a device run checks it (a policy rule can ask for fp8)"
)


def device_policy(device: torch.device) -> Policy:
    """The default policy, with attention kept in bf16 on a GPU (see the module docstring)."""
    if device.type != "cuda":
        return Policy()
    attention = (Rule("patch_blocks.*.attn", "bf16", NO_FP8_ATTENTION_KERNEL),
                 Rule("pixel_blocks.*.attn", "bf16", NO_FP8_ATTENTION_KERNEL))
    return Policy(attention + DEFAULT_RULES)


def quantize_for(net: "PiDNet", precision: str) -> QuantReport:
    """Quantize `net` in place for `precision` on its device (an already quantized net is kept);
    refused, with the reason, where fp8 products cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be None or one of {PRECISIONS}, got {precision!r}")
    reasons = fp8_device_reasons(net.device)
    if net.device.type == "cuda" and net.dtype != torch.bfloat16:
        reasons.append(f"the network is {net.dtype}: on a GPU the row-wise fp8 GEMMs take and give bf16")
    if reasons:
        raise ValueError(f"precision={precision!r} refused: " + "; ".join(reasons))
    quant = getattr(net, QUANT_ATTRIBUTE, None)
    return quant if quant is not None else quantize_model(net, device_policy(net.device))


def compile_precision(net: "PiDNet", precision: str, report: "CompileReport") -> None:
    """`quantize_for`, listing in `report` what runs in fp8 and why the rest does not."""
    quant = quantize_for(net, precision)
    emulated = " (CPU: float32 emulation of the fp8 products)" if net.device.type != "cuda" else ""
    report.applied.append(f"fp8 weights {quant.weight_bytes / 2**30:.3f} GiB{emulated}; kept by pid.revert")
    consumers = [block.fp8_consumers for block in net.patch_blocks]
    report.applied.append(
        f"fp8 GEMM inputs made by their adaLN producers (rmsnorm_modulate_fp8, gated_residual_rmsnorm_modulate_fp8;"
        f" fused where those triton ops are applied): {sum(map(len, consumers))} of {4 * len(consumers)}"
    )
    for chosen, reason, count in quant.groups():
        if chosen == "bf16":
            what, colon, why = reason.partition(": ")
            dtype = str(net.dtype).replace("torch.", "")
            report.skipped[f"fp8 of {what}"] = [f"{count} layers kept in {dtype}: {why if colon else reason}"]
        else:
            report.applied.append(f"{chosen} ({count} layers): {reason}")
