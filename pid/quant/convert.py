"""Quantizing a PiDNet in place by a policy, and what the result holds.

`quantize_model(net, policy)` swaps each Linear the policy names "fp8"/"fp8_weight" for an
`FP8Linear` (quantized from the layer's current weights, per output channel) and gives the
attention modules it names "fp8" the fp8 attention core. It works on any device, the meta
device included (used to size the weights of the released architectures without
allocating them). State-dict keys stay the release's, plus one `weight_scale` per layer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from pid.quant.attention import attention_op
from pid.quant.linear import FP8Linear
from pid.quant.policy import Policy, plan

QUANT_ATTRIBUTE = "pid_quant"  # on the net: the QuantReport of its quantization
# MMDiTBlock.fp8_consumers names -> the layers that consume that adaLN output; a consumer whose
# layers all compute in fp8 gets its input from the producer already quantized (seams.QuantizedRows).
FP8_CONSUMERS = {"attn_x": ("attn.qkv_x",), "attn_y": ("attn.qkv_y",), "mlp_x": ("mlp_x.w1", "mlp_x.w3"),
                 "mlp_y": ("mlp_y.w1", "mlp_y.w3")}


@dataclass
class QuantReport:
    """Per layer: its precision and the policy's reason."""

    layers: dict = field(default_factory=dict)  # name -> (precision, reason)
    attention_recipe: str = ""
    weight_bytes: int = 0

    def names(self, precision: str) -> list[str]:
        return [name for name, (chosen, _) in self.layers.items() if chosen == precision]

    def groups(self) -> list[tuple[str, str, int]]:
        """(precision, reason, number of layers) per distinct decision, in layer order."""
        counts = Counter(self.layers.values())
        return [(precision, reason, count) for (precision, reason), count in counts.items()]

    def lines(self) -> list[str]:
        return [f"{precision} ({count} layers): {reason}" for precision, reason, count in self.groups()]

    def __str__(self) -> str:
        head = f"fp8 weights: {self.weight_bytes / 2**30:.3f} GiB; attention recipe {self.attention_recipe}"
        return "\n".join([head, *self.lines()])


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def mark_fp8_consumers(net: nn.Module) -> None:
    """Set each MM-DiT block's `fp8_consumers` from which of its layers are fp8 FP8Linears."""
    for block in getattr(net, "patch_blocks", ()):
        block.fp8_consumers = frozenset(
            consumer for consumer, layers in FP8_CONSUMERS.items()
            if all(getattr(block.get_submodule(layer), "mode", None) == "fp8" for layer in layers)
        )


def weight_bytes(net: nn.Module) -> int:
    """Bytes of every parameter and buffer of the state dict (works on the meta device)."""
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


@torch.no_grad()
def quantize_model(net: nn.Module, policy: Optional[Policy] = None) -> QuantReport:
    """Quantize `net` in place by `policy` (default: `Policy()`); returns what was done."""
    if getattr(net, QUANT_ATTRIBUTE, None) is not None:
        raise ValueError("this network is already quantized (see net.pid_quant)")
    policy = policy or Policy()
    layers = plan(net, policy)
    report = QuantReport(attention_recipe=policy.attention_recipe)
    for name, rule in layers.linears.items():
        if rule.precision != "bf16":
            _set_submodule(net, name, FP8Linear.from_linear(net.get_submodule(name), rule.precision))
        report.layers[name] = (rule.precision, rule.reason)
    for name, rule in layers.attentions.items():
        if rule.precision == "fp8":
            net.get_submodule(name).attention_op = attention_op(policy.attention_recipe)
        report.layers[name] = (rule.precision, rule.reason)
    for name, rule in layers.convs.items():
        report.layers[name] = (rule.precision, rule.reason)
    mark_fp8_consumers(net)
    report.weight_bytes = weight_bytes(net)
    setattr(net, QUANT_ATTRIBUTE, report)
    return report


def quantized_layout(net: nn.Module, layers: dict, attention_recipe: str) -> None:
    """Give `net` (usually on the meta device) the module structure of a quantized export:
    `layers` maps names to precisions, as `export_metadata` writes them."""
    report = QuantReport(attention_recipe=attention_recipe)
    for name, precision in layers.items():
        try:
            module = net.get_submodule(name)
        except AttributeError:
            raise ValueError(f"quantized export names layer {name!r}, which this config does not have") from None
        if isinstance(module, nn.Linear) and precision != "bf16":
            _set_submodule(net, name, FP8Linear.from_linear(module, precision))
        elif precision == "fp8" and hasattr(module, "attention_op"):
            module.attention_op = attention_op(attention_recipe)
        elif precision != "bf16":
            raise ValueError(f"quantized export asks {precision} for {name}, a {type(module).__name__}")
        report.layers[name] = (precision, "from the quantized export")
    mark_fp8_consumers(net)
    report.weight_bytes = weight_bytes(net)
    setattr(net, QUANT_ATTRIBUTE, report)
