"""Quantized exports: `.safetensors` with e4m3 weights, float32 scales and the layout.

An export is what `pid.save_safetensors` writes for a quantized network: the release's
`net.` keys (e4m3 `weight` and float32 `weight_scale` for each quantized layer, the kept
layers in bf16 or the given dtype), the config under "pid_config" and, under "pid_quant",
{"format": FORMAT, "attention_recipe": ..., "layers": {name: precision}}. `pid.load`
reads the layout first (`read_layout`), builds the quantized module structure on the meta
device and loads the tensors as stored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
import torch.nn as nn

from pid.quant.convert import QUANT_ATTRIBUTE, QuantReport, quantized_layout
from pid.quant.linear import QUANTIZED_BUFFERS, FP8Linear

QUANT_METADATA_KEY = "pid_quant"
FORMAT = "pid-fp8-e4m3-rowwise-v1"


def export_metadata(report: QuantReport) -> dict[str, str]:
    layout = {name: precision for name, (precision, _) in report.layers.items()}
    spec = {"format": FORMAT, "attention_recipe": report.attention_recipe, "layers": layout}
    return {QUANT_METADATA_KEY: json.dumps(spec)}


def quantized_keys(net: nn.Module) -> set[str]:
    """State-dict keys whose dtype an export keeps (e4m3 weights, float32 scales)."""
    return {
        f"{name}.{buffer}" for name, module in net.named_modules() if isinstance(module, FP8Linear)
        for buffer in QUANTIZED_BUFFERS
    }


class Layout:
    """The layout of a quantized export: applied to a (meta) network before loading."""

    def __init__(self, spec: Mapping, origin: str):
        if spec.get("format") != FORMAT:
            raise ValueError(f"{origin}: unknown quantized format {spec.get('format')!r} (this version reads {FORMAT})")
        self.layers, self.attention_recipe, self.origin = dict(spec["layers"]), spec["attention_recipe"], origin

    def apply(self, net: nn.Module) -> None:
        quantized_layout(net, self.layers, self.attention_recipe)

    def check(self, net: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
        """Refuse a file whose quantized tensors are not stored as e4m3 / float32 (a load would
        otherwise convert them silently)."""
        wrong = [
            f"{key}: {state[key].dtype}" for key in sorted(quantized_keys(net))
            if key in state and state[key].dtype != net.state_dict()[key].dtype
        ]
        if wrong:
            raise ValueError(f"{self.origin}: quantized tensors stored in the wrong dtype: {', '.join(wrong[:8])}")


def read_layout(path: Path) -> Optional[Layout]:
    """The layout of a quantized `.safetensors` export, or None for any other checkpoint file."""
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if QUANT_METADATA_KEY not in metadata:
        return None
    return Layout(json.loads(metadata[QUANT_METADATA_KEY]), str(path))


def is_quantized(net: nn.Module) -> bool:
    return getattr(net, QUANT_ATTRIBUTE, None) is not None


def quantize_checkpoint(
    source: Union[str, os.PathLike], out: Union[str, os.PathLike], policy=None, dtype: torch.dtype = torch.bfloat16
) -> QuantReport:
    """`pid quantize`: load `source`, quantize it by `policy`, write the export to `out`."""
    import pid
    from pid.quant.convert import quantize_model

    if Path(out).suffix != ".safetensors":
        raise ValueError(f"--out must be a .safetensors file, got {out}")
    net = pid.load(source, dtype=dtype)
    if is_quantized(net):
        raise ValueError(f"{source} is already a quantized export")
    report = quantize_model(net, policy)
    pid.save_safetensors(net, out, dtype=dtype)
    return report
