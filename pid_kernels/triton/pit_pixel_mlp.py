"""The MLP half of a PiT block on the tensor cores: the `pit_pixel_mlp` seam in Triton.

x + gate * fc2(gelu(fc1(adaLN(x)))) for pixels [B*Li, P2, 16] with shift/scale/gate
[B*Li, P2, 16] strided views of the [B*Li, P2, 96] modulation (narrower pixels, the tiny
configs' Dp = 4 or 8, are zero-padded to the 16-wide K of a tl.dot). One program takes
BLOCK_P pixels: it reads each pixel's 16 values and its 48 modulation values once,
normalizes and modulates them in float32, runs [BLOCK_P, 16] @ [16, 64] and, after the
exact (erf) GELU of the release's nn.GELU(), [BLOCK_P, 64] @ [64, 16] as tl.dot with
float32 accumulators, then adds gate * that to x and writes 16 values per pixel once.
The hidden layer never leaves registers; the 4 KB of 16-bit weights come from L2.

The CUDA C++ backend (pid_kernels/cuda/pit_pixel_mlp.py) runs the same op one thread per
pixel on the CUDA cores, 2 x 1024 multiply-adds per pixel on top of the rest; here they go
to the tensor cores. Derived, not timed (no device run yet): what is left per pixel (64
erf, the norm, the gating: roughly 1000 FP32 lane instructions) is about what an H200
issues (~33 T lane instructions/s) in the time its HBM (4.8 TB/s) moves one bf16 pixel's
160 bytes, so this kernel sits near its memory floor, not safely under it; erf is the
remaining cost. The tuning table's "backend" picks between the two (pid_kernels/registry.py,
`choose`).

Precision: the dot operands are the input dtype (the modulated activations and the GELU
output are rounded to it, as eager rounds them), products accumulate in float32, and
everything else is float32 with one rounding at the end. float32 inputs use exact (ieee)
dots, as the interpreter does for every dtype (its 16-bit dot is wrong).

Static compile (`compile_specs` through pid_kernels.triton._sass, bf16 and fp16 alike, the
tables' BLOCK_P = 128 on 4 warps; Triton 3.9 here / 3.6 as on the GPU machine):
  sm_90a   wgmma (m64n64k16, then m64n16k16), 140 / 137 registers, no spills, 8 KB smem, 3 CTAs/SM;
  sm_100a  tcgen05, 128 / 163 registers, no spills, 8 KB smem;
  sm_120   mma.sync (m16n8k16), 174 / 172 registers, no spills, 8 KB smem.
compile_for marks only the pointers 16-byte aligned; with the strides the launcher also
specializes as multiples of 16 (PiD's are), every pixel and modulation row loads and
stores as 16-byte vectors (checked by hand on 3.6, same MMA and no spills).

Tuning keys (PIT_PIXEL_MLP): backend ("triton" or "cuda", read by the registry), measured,
BLOCK_P (pixels per program, a power of two >= 16), num_warps.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.cuda import _rows as rows
from pid_kernels.registry import KernelOp, register
from pid_kernels.cuda.pit_pixel_mlp import HIDDEN_WIDTH, PIXEL_WIDTH, operand_reasons
from pid_kernels.runtime import tl, triton, triton_device_reasons
from pid_kernels.triton._common import MIN_DOT_K, dot, dot_precision
from pid_kernels.tuning import config

NAME = "pit_pixel_mlp"
reference = seams.pit_pixel_mlp.reference

# The widest pixel and hidden layer one program holds: the release's 16 -> 64 -> 16. Narrower
# ones (the tiny test configs' Dp = 4, 8) are zero-padded to a 16-wide K, tl.dot's smallest.
MAX_WIDTH = MIN_DOT_K
MAX_HIDDEN = 4 * MAX_WIDTH
# No K loop to pipeline: each product is a single tl.dot.
NUM_STAGES = 1
SQRT_HALF = tl.constexpr(0.7071067811865476)


@triton.jit
def _pixel_rows(pixels, inner, stride_outer, stride_inner):
    """Element offsets (int64) of pixels of an [outer, inner, C] view flattened to outer * inner rows."""
    pixels = pixels.to(tl.int64)
    return (pixels // inner) * stride_outer + (pixels % inner) * stride_inner


@triton.jit
def _load_pixels(ptr, rows, channels, WIDTH: tl.constexpr, BLOCK_D: tl.constexpr):
    """[rows, BLOCK_D] float32, channels past WIDTH zero (no mask at all when there are none)."""
    offsets = rows[:, None] + channels[None, :]
    if BLOCK_D == WIDTH:
        values = tl.load(ptr + offsets)
    else:
        values = tl.load(ptr + offsets, mask=(channels < WIDTH)[None, :], other=0.0)
    return values.to(tl.float32)


@triton.jit
def _pit_pixel_mlp_kernel(
    x_ptr, shift_ptr, scale_ptr, gate_ptr, out_ptr,
    norm_w_ptr, fc1_w_ptr, fc1_b_ptr, fc2_w_ptr, fc2_b_ptr,
    total, inner, eps,
    stride_x_outer, stride_x_inner, stride_shift_outer, stride_shift_inner,
    stride_scale_outer, stride_scale_inner, stride_gate_outer, stride_gate_inner,
    WIDTH: tl.constexpr, HIDDEN: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_P: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    """x, shift, scale, gate: [outer, inner, WIDTH] views, channels contiguous; out [total, WIDTH]
    contiguous; fc1 [HIDDEN, WIDTH], fc2 [WIDTH, HIDDEN] contiguous; total = outer * inner.
    BLOCK_D, BLOCK_H: WIDTH and HIDDEN padded to powers of two >= 16 (zeros add nothing)."""
    pixels = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
    # Wrapped rows keep the loads free of row masks; only the store masks them.
    wrapped = pixels % total
    channels = tl.arange(0, BLOCK_D)
    units = tl.arange(0, BLOCK_H)
    channel_ok = channels < WIDTH
    unit_ok = units < HIDDEN

    x = _load_pixels(x_ptr, _pixel_rows(wrapped, inner, stride_x_outer, stride_x_inner), channels, WIDTH, BLOCK_D)
    inv_rms = tl.rsqrt(tl.sum(x * x, axis=1) / WIDTH + eps)
    norm_w = tl.load(norm_w_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)
    shift = _load_pixels(shift_ptr, _pixel_rows(wrapped, inner, stride_shift_outer, stride_shift_inner), channels,
                         WIDTH, BLOCK_D)
    scale = _load_pixels(scale_ptr, _pixel_rows(wrapped, inner, stride_scale_outer, stride_scale_inner), channels,
                         WIDTH, BLOCK_D)
    modulated = x * inv_rms[:, None] * norm_w[None, :] * (1.0 + scale) + shift

    # fc1^T [BLOCK_D, BLOCK_H] and fc2^T [BLOCK_H, BLOCK_D]: the B operands of the two products.
    fc1_t = tl.load(fc1_w_ptr + units[None, :] * WIDTH + channels[:, None],
                    mask=channel_ok[:, None] & unit_ok[None, :], other=0.0)
    fc2_t = tl.load(fc2_w_ptr + channels[None, :] * HIDDEN + units[:, None],
                    mask=unit_ok[:, None] & channel_ok[None, :], other=0.0)
    pre = dot(modulated.to(fc1_t.dtype), fc1_t, None, DOT_PRECISION)
    pre += tl.load(fc1_b_ptr + units, mask=unit_ok, other=0.0).to(tl.float32)[None, :]
    act = 0.5 * pre * (1.0 + tl.erf(pre * SQRT_HALF))  # nn.GELU(), exact
    mlp = dot(act.to(fc2_t.dtype), fc2_t, None, DOT_PRECISION)
    mlp += tl.load(fc2_b_ptr + channels, mask=channel_ok, other=0.0).to(tl.float32)[None, :]

    gate = _load_pixels(gate_ptr, _pixel_rows(wrapped, inner, stride_gate_outer, stride_gate_inner), channels,
                        WIDTH, BLOCK_D)
    out = (x + gate * mlp).to(out_ptr.dtype.element_ty)
    out_offsets = pixels[:, None] * WIDTH + channels[None, :]
    if BLOCK_D == WIDTH:
        tl.store(out_ptr + out_offsets, out, mask=(pixels < total)[:, None])
    else:
        tl.store(out_ptr + out_offsets, out, mask=(pixels < total)[:, None] & channel_ok[None, :])


def _padded(width: int) -> int:
    return max(MIN_DOT_K, triton.next_power_of_2(width))


def _strides(views: list[torch.Tensor]) -> list[int]:
    """The (outer, inner) strides of the x, shift, scale and gate [outer, inner, C] views, in kernel order."""
    return [stride for view in views for stride in view.stride()[:2]]


@torch.library.custom_op("pid::pit_pixel_mlp", mutates_args=())
def pit_pixel_mlp(
    pixels: torch.Tensor, norm_weight: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, gate: torch.Tensor,
    fc1_weight: torch.Tensor, fc1_bias: torch.Tensor, fc2_weight: torch.Tensor, fc2_bias: torch.Tensor,
) -> torch.Tensor:
    """Same arguments and result as `pid.seams.pit_pixel_mlp`: pixels [B*Li, P2, Dp] -> [B*Li, P2, Dp], Dp <= 16."""
    views = [rows.as_rows(t, pixels) for t in (pixels, shift, scale, gate)]
    outer, inner, width = views[0].shape
    hidden = fc1_weight.shape[0]
    out = torch.empty(pixels.shape, device=pixels.device, dtype=pixels.dtype)
    total = outer * inner
    if total == 0:
        return out
    tuning = config(NAME)
    _pit_pixel_mlp_kernel[(triton.cdiv(total, tuning["BLOCK_P"]),)](
        *views, out, norm_weight, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
        total, inner, seams.RMS_EPS, *_strides(views),
        WIDTH=width, HIDDEN=hidden, BLOCK_D=_padded(width), BLOCK_H=_padded(hidden), BLOCK_P=tuning["BLOCK_P"],
        DOT_PRECISION=dot_precision(pixels.dtype), num_warps=tuning["num_warps"], num_stages=NUM_STAGES,
    )
    return out


@pit_pixel_mlp.register_fake
def _pit_pixel_mlp_fake(pixels, *weights_and_modulation):
    return torch.empty_like(pixels)


def compile_specs(arch: str) -> list[dict]:
    """Keyword arguments of pid_kernels.triton._sass.compile_for (plus "variant") for the kernel as
    launched on `arch` ("sm_90a", "sm_100a", "sm_120") at PiD's shapes (bf16 and fp16, the table's
    BLOCK_P and num_warps, the modulation's 96-element pixel stride)."""
    from pid_kernels.triton import _sass

    tuning = config(NAME, _sass.tuning_arch(arch))
    specs = []
    for dtype, element in ((torch.bfloat16, "*bf16"), (torch.float16, "*fp16")):
        signature = {name: element for name in ("x_ptr", "shift_ptr", "scale_ptr", "gate_ptr", "out_ptr", "norm_w_ptr",
                                                 "fc1_w_ptr", "fc1_b_ptr", "fc2_w_ptr", "fc2_b_ptr")}
        signature |= {"total": "i32", "inner": "i32", "eps": "fp32"}
        signature |= {f"stride_{view}_{axis}": "i32" for view in ("x", "shift", "scale", "gate")
                      for axis in ("outer", "inner")}
        constexprs = {"WIDTH": PIXEL_WIDTH, "HIDDEN": HIDDEN_WIDTH, "BLOCK_D": PIXEL_WIDTH, "BLOCK_H": HIDDEN_WIDTH,
                      "BLOCK_P": tuning["BLOCK_P"], "DOT_PRECISION": dot_precision(dtype)}
        specs.append(dict(fn=_pit_pixel_mlp_kernel, signature=signature, constexprs=constexprs, arch=arch,
                          num_warps=tuning["num_warps"], num_stages=NUM_STAGES,
                          variant=f"Dp16 {str(dtype).removeprefix('torch.')}",
                          shapes="every PiT shape (one launch per 128 pixels)",
                          mma_useful_fraction=1.0))  # Dp 16 and 4 * Dp fill the 16-wide MMA tiles
    return specs


def supports(pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias) -> list[str]:
    """Why the fused kernel refuses these inputs (empty list: it runs them)."""
    tensors = (pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    reasons = triton_device_reasons(*tensors)
    if len({t.device for t in tensors}) > 1:
        reasons.append("tensors on different devices")
    width = pixels.shape[-1] if pixels.dim() else 0
    hidden = fc1_weight.shape[0] if fc1_weight.dim() else 0
    if width > MAX_WIDTH or hidden > MAX_HIDDEN:
        reasons.append(f"pixel width {width}, hidden width {hidden} (the kernel holds at most {MAX_WIDTH}, {MAX_HIDDEN})")
    return reasons + operand_reasons(*tensors, width=width, hidden=hidden)


register(KernelOp(NAME, NAME, "triton", pit_pixel_mlp, supports))
