"""Per-token e4m3 quantization fused into the adaLN producers of the fp8 GEMMs' inputs.

One Triton program per token row: (optionally x' = x + gate * y, written in x's dtype), the RMS
statistics, * weight * (1 + scale) + shift, then the row's absolute maximum, its float32 scale
(amax / 448, at least `fp8.MIN_SCALE`) and the e4m3 values, written directly: the modulated row
never goes to memory in bf16 and no separate amax / quantize pass reads it back. It serves the
seams `rmsnorm_modulate_fp8` and `gated_residual_rmsnorm_modulate_fp8` (op modules of those names
in pid_kernels/triton/), whose references are the unfused compositions: the producer seam's
reference followed by `pid.quant.fp8.quantize_rows`. To stay on them, every rounding the eager
chain makes in x's dtype is made here too (gate * y, + x, the normed row, * weight, 1 + scale,
* (1 + scale), + shift), with correctly rounded division and square root; what remains is the
float32 summation order of the mean square, so the output is the reference's bit for bit except
where that last-place difference moves a value across a rounding boundary (tests: under 0.1% of
the values, each by one step). Rows are read through strides as `pid_kernels.cuda._rows` views
them (the modulation's broadcast views, never copied).

Static compile (`compile_specs`, benchmarks/STATIC.md) at C = 1536, 4 warps:
memory-bound, no MMA, 0 spills, 88-104 registers on sm_90a and sm_100a with triton 3.9 and 3.6
(4-5 programs per SM by registers). Never run on a GPU.
"""

from __future__ import annotations

import torch

from pid.quant.fp8 import E4M3_MAX, MIN_SCALE
from pid_kernels.cuda import _rows as rows
from pid_kernels.runtime import interpreting, tl, triton

# Warps per row: 1536 bf16 channels (next power of two 2048) are 16 per thread at 4 warps.
NUM_WARPS = 4
# Kernels read module constants only as tl.constexpr.
_E4M3_MAX, _MIN_SCALE = tl.constexpr(E4M3_MAX), tl.constexpr(MIN_SCALE)


@triton.jit
def round_to_e4m3(x, INTERPRETED: tl.constexpr):
    """float32 x in [-448, 448] -> e4m3, round to nearest even. The interpreter's own float32 ->
    e4m3 cast drops the carry into the exponent (7.76 -> 4 instead of 8), so under it the value
    is rounded in float32 bit arithmetic first and the cast is then exact."""
    if INTERPRETED:
        magnitude = tl.abs(x)
        bits = magnitude.to(tl.int32, bitcast=True)
        bits = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -0x100000  # keep 3 mantissa bits, ties to even
        subnormal = ((magnitude * 512.0 + 8388608.0) - 8388608.0) / 512.0  # e4m3 subnormals: multiples of 2^-9
        rounded = tl.where(magnitude < 0.015625, subnormal, bits.to(tl.float32, bitcast=True))
        x = tl.where(x < 0, -rounded, rounded)
    return x.to(tl.float8e4nv)


@triton.jit
def _in_dtype(value, like_ptr, INTERPRETED: tl.constexpr):
    """float32 `value` rounded to the dtype `like_ptr` points to (to nearest even), back in float32:
    eager's per-op rounding. The interpreter truncates float32 -> bf16 casts, so under it bf16 is
    rounded in bit arithmetic (finite values)."""
    if INTERPRETED and like_ptr.dtype.element_ty == tl.bfloat16:
        bits = value.to(tl.int32, bitcast=True)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & -0x10000).to(tl.float32, bitcast=True)
    else:
        rounded = value.to(like_ptr.dtype.element_ty).to(tl.float32)
    return rounded


@triton.jit
def _modulate_fp8_kernel(
    x_ptr, gate_ptr, y_ptr, weight_ptr, shift_ptr, scale_ptr, updated_ptr, values_ptr, scales_ptr,
    inner, C, eps,
    stride_x_outer, stride_x_inner, stride_gate_outer, stride_gate_inner, stride_y_outer, stride_y_inner,
    stride_shift_outer, stride_shift_inner, stride_scale_outer, stride_scale_inner,
    RESIDUAL: tl.constexpr, BLOCK_C: tl.constexpr, INTERPRETED: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    outer, in_outer = row // inner, row % inner
    cols = tl.arange(0, BLOCK_C)
    ok = cols < C
    x = tl.load(x_ptr + outer * stride_x_outer + in_outer * stride_x_inner + cols, mask=ok, other=0.0).to(tl.float32)
    if RESIDUAL:
        gate = tl.load(gate_ptr + outer * stride_gate_outer + in_outer * stride_gate_inner + cols, mask=ok, other=0.0)
        y = tl.load(y_ptr + outer * stride_y_outer + in_outer * stride_y_inner + cols, mask=ok, other=0.0)
        x = _in_dtype(x + _in_dtype(gate.to(tl.float32) * y.to(tl.float32), x_ptr, INTERPRETED), x_ptr, INTERPRETED)
        tl.store(updated_ptr + row * C + cols, x.to(updated_ptr.dtype.element_ty), mask=ok)
    mean_square = tl.sum(x * x, axis=0) / C
    normed = _in_dtype(x * tl.math.div_rn(1.0, tl.math.sqrt_rn(mean_square + eps)), x_ptr, INTERPRETED)
    weight = tl.load(weight_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    shift = tl.load(shift_ptr + outer * stride_shift_outer + in_outer * stride_shift_inner + cols, mask=ok, other=0.0)
    scale = tl.load(scale_ptr + outer * stride_scale_outer + in_outer * stride_scale_inner + cols, mask=ok, other=0.0)
    modulated = _in_dtype(weight * normed, x_ptr, INTERPRETED) * _in_dtype(1.0 + scale.to(tl.float32), x_ptr,
                                                                           INTERPRETED)
    modulated = _in_dtype(_in_dtype(modulated, x_ptr, INTERPRETED) + shift.to(tl.float32), x_ptr, INTERPRETED)
    row_scale = tl.maximum(tl.math.div_rn(tl.max(tl.abs(modulated), axis=0), _E4M3_MAX), _MIN_SCALE)
    quantized = tl.minimum(tl.maximum(tl.math.div_rn(modulated, row_scale), -_E4M3_MAX), _E4M3_MAX)
    tl.store(values_ptr + row * C + cols, round_to_e4m3(quantized, INTERPRETED), mask=ok)
    tl.store(scales_ptr + row, row_scale)


def modulate_fp8(x, gate, y, weight, shift, scale, eps: float):
    """(x' or None, e4m3 values shaped like x, float32 scales x.shape[:-1] + (1,)); x' = x + gate * y
    where gate and y are given (both or neither). Inputs as `pid_kernels.cuda._rows.row_reasons` takes them."""
    residual = gate is not None
    views = {name: rows.as_rows(t if t is not None else x, x) for name, t in
             (("x", x), ("gate", gate), ("y", y), ("shift", shift), ("scale", scale))}
    outer, inner, width = views["x"].shape
    values = torch.empty(x.shape, dtype=torch.float8_e4m3fn, device=x.device)
    scales = torch.empty(*x.shape[:-1], 1, dtype=torch.float32, device=x.device)
    updated = torch.empty_like(x, memory_format=torch.contiguous_format) if residual else values
    strides = [s for name in ("x", "gate", "y", "shift", "scale") for s in views[name].stride()[:2]]
    _modulate_fp8_kernel[(outer * inner,)](
        views["x"], views["gate"], views["y"], weight, views["shift"], views["scale"], updated, values, scales,
        inner, width, eps, *strides,
        RESIDUAL=residual, BLOCK_C=triton.next_power_of_2(width), INTERPRETED=interpreting(), num_warps=NUM_WARPS,
    )
    return (updated if residual else None), values, scales


def compile_specs(arch: str) -> list[dict]:
    """The variants the op modules launch at PiD's MM-DiT rows (C = 1536, bf16), as
    `pid_kernels.triton._sass.compile_for` keyword arguments plus a `variant` label."""
    width = 1536
    pointer = "*bf16"
    signature = {
        "x_ptr": pointer, "gate_ptr": pointer, "y_ptr": pointer, "weight_ptr": pointer, "shift_ptr": pointer,
        "scale_ptr": pointer, "updated_ptr": pointer, "values_ptr": "*fp8e4nv", "scales_ptr": "*fp32",
        "inner": "i32", "C": "i32", "eps": "fp32",
        **{f"stride_{name}_{axis}": "i32" for name in ("x", "gate", "y", "shift", "scale") for axis in ("outer", "inner")},
    }
    return [
        {"fn": _modulate_fp8_kernel, "signature": signature, "arch": arch, "num_warps": NUM_WARPS, "num_stages": 1,
         "constexprs": {"RESIDUAL": residual, "BLOCK_C": triton.next_power_of_2(width), "INTERPRETED": False},
         "variant": f"{label} C={width} bf16 -> e4m3", "shapes": "v1 MM-DiT rows"}
        for residual, label in ((False, "rmsnorm_modulate_fp8"), (True, "gated_residual_rmsnorm_modulate_fp8"))
    ]
