"""fp8 (e4m3) inference: quantized weights, fp8 GEMMs and attention, and their CPU emulation.

- `quantize_model(net, policy)`: in place, by the per-layer policy (`pid.quant.policy`);
- `pid.load(..., precision="fp8")`, `pid quantize` exports (`pid.quant.export`);
- `pid.CompileConfig(precision="fp8")` quantizes a compiled model.
"""

from pid.quant.convert import QuantReport, quantize_model, weight_bytes
from pid.quant.fp8 import fp8_device_reasons
from pid.quant.linear import FP8Linear
from pid.quant.policy import DEFAULT_RULES, Policy, Rule, load_policy

__all__ = [
    "DEFAULT_RULES", "FP8Linear", "Policy", "QuantReport", "Rule", "fp8_device_reasons", "load_policy",
    "quantize_model", "weight_bytes",
]
