"""`FP8Linear`: an nn.Linear whose weight is stored in e4m3 with per-output-channel scales.

Two modes, chosen per layer by the policy (`pid.quant.policy`):
- "fp8": activations are quantized per token at run time and the product runs in fp8
  (`pid.quant.fp8.scaled_mm` on a GPU, its float32 emulation elsewhere);
- "fp8_weight": only the storage is fp8; the weight is dequantized and the product runs in
  the activation dtype (for GEMVs that run once per decode, where fp8 compute buys nothing).

State-dict keys: `<layer>.weight` (float8_e4m3fn [N, K]), `<layer>.weight_scale` (float32
[N]) and `<layer>.bias` (model dtype), so a quantized export keeps the release's key names
plus one scale per layer. `module.to(dtype)` casts only the bias: the quantized tensors
keep their dtypes and follow device moves.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from pid.quant.fp8 import dequantize, quantize_rows, scaled_mm
from pid.seams import QuantizedRows

MODES = ("fp8", "fp8_weight")
QUANTIZED_BUFFERS = ("weight", "weight_scale")


class FP8Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, mode: str, dtype=None, device=None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"FP8Linear mode must be one of {MODES}, got {mode!r}")
        self.in_features, self.out_features, self.mode = in_features, out_features, mode
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.float8_e4m3fn, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, device=device)) if bias else None

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, mode: str) -> "FP8Linear":
        """Quantize `linear` (any float dtype, any device, meta included) per output channel."""
        weight = linear.weight
        has_bias = linear.bias is not None
        module = cls(linear.in_features, linear.out_features, has_bias, mode, weight.dtype, weight.device)
        quantized, scale = quantize_rows(weight)
        module.weight, module.weight_scale = quantized, scale.view(-1)
        if linear.bias is not None:
            module.bias.copy_(linear.bias)
        return module

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        return dequantize(self.weight, self.weight_scale.view(-1, 1)).to(dtype)

    def forward(self, x) -> torch.Tensor:
        """x [..., K] -> [..., N] in x's dtype; in "fp8" mode x may also be a `pid.seams.QuantizedRows`
        (a producer already quantized it per token, as `quantize_rows` does)."""
        if isinstance(x, QuantizedRows):
            if self.mode != "fp8":
                raise ValueError(f"an {self.mode} layer takes a tensor, not QuantizedRows")
            return self._product(x.values, x.scales, x.dtype)
        if self.mode == "fp8_weight":
            return F.linear(x, self.dequantized_weight(x.dtype), self.bias)
        return self._product(*quantize_rows(x), x.dtype)

    def _product(self, values: torch.Tensor, scales: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        # Off a GPU, the float32 emulation (what CI runs); it is exact up to summation order.
        out = scaled_mm(
            values.reshape(-1, self.in_features).contiguous(), scales.reshape(-1, 1), self.weight, self.weight_scale,
            self.bias, out_dtype, backend="torch" if values.is_cuda else "emulate",
        )
        return out.view(*values.shape[:-1], self.out_features)

    def _apply(self, fn: Callable, recurse: bool = True):
        # nn.Module.to(dtype) would cast the e4m3 weight and its float32 scales like any float
        # tensor; keep their dtypes and apply only the device change.
        quantized = {name: self._buffers.pop(name) for name in QUANTIZED_BUFFERS}
        super()._apply(fn, recurse)
        for name, tensor in quantized.items():
            device = fn(torch.empty(0, device=tensor.device)).device
            self._buffers[name] = torch.empty_like(tensor, device=device) if tensor.is_meta else tensor.to(device)
        return self

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}, mode={self.mode}"
