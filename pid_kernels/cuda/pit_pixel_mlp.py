"""The MLP half of a PiT block, one thread per pixel (CUDA, csrc/pit_pixel_mlp.cu).

x + gate * fc2(gelu(fc1(adaLN(x)))) for pixels [B*Li, P2, 16] with shift/scale/gate
[B*Li, P2, 16] strided views of the [B*Li, P2, 96] modulation: each pixel's 16 values
and its 48 modulation values are read once and its 16 results written once; the
16 -> 64 -> 16 weights sit in shared memory as float32, and the hidden layer never
leaves registers. GELU is the exact (erf) form, as the release's nn.GELU(); all
arithmetic is float32 with one rounding at the end (eager rounds after every op).
The op's other backend, pid_kernels/triton/pit_pixel_mlp.py, runs the two products on the
tensor cores; the tuning tables' PIT_PIXEL_MLP["backend"] picks (pid_kernels.choose), and
this one runs where Triton cannot.
"""

from __future__ import annotations

import torch

from pid import seams
from pid_kernels.cuda import _rows as rows
from pid_kernels.cuda import loader as cuda_ext
from pid_kernels.registry import KernelOp, register

reference = seams.pit_pixel_mlp.reference

PIXEL_WIDTH = 16  # PID_PIXEL_WIDTH: the kernel is specialised to the release's Dp
HIDDEN_WIDTH = 64  # PID_PIXEL_HIDDEN = 4 * Dp

pit_pixel_mlp_op = cuda_ext.define(
    "pit_pixel_mlp(Tensor pixels, Tensor norm_weight, Tensor shift, Tensor scale, Tensor gate, "
    "Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, float eps) -> Tensor",
    fake=lambda pixels, *args: pixels.new_empty(pixels.shape),
    cpu=lambda pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps: reference(
        pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias
    ),
)


def pit_pixel_mlp(pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias) -> torch.Tensor:
    """Same arguments and result as `pid.seams.pit_pixel_mlp`."""
    modulation = [rows.as_rows(t, pixels) for t in (shift, scale, gate)]
    return pit_pixel_mlp_op(
        pixels, norm_weight, *modulation, fc1_weight, fc1_bias, fc2_weight, fc2_bias, seams.RMS_EPS
    )


def operand_reasons(pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias,
                    width: int = PIXEL_WIDTH, hidden: int = HIDDEN_WIDTH) -> list[str]:
    """Why the operands are not pixels [B*Li, P2, width] with shift/scale/gate broadcast to them
    (channels contiguous) and contiguous width -> hidden -> width weights in the pixels' dtype,
    as both backends' kernels take them (empty list: they are)."""
    if pixels.dim() != 3 or pixels.shape[-1] != width:
        return [f"pixels {tuple(pixels.shape)} are not [B*Li, P2, {width}]"]
    reasons = rows.row_reasons(pixels, shift=shift, scale=scale, gate=gate)
    reasons += rows.weight_reasons(norm_weight, pixels, "norm_weight")
    expected = {
        "fc1_weight": (fc1_weight, (hidden, width)),
        "fc1_bias": (fc1_bias, (hidden,)),
        "fc2_weight": (fc2_weight, (width, hidden)),
        "fc2_bias": (fc2_bias, (width,)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape or tensor.dtype != pixels.dtype or not tensor.is_contiguous():
            reasons.append(
                f"{name} must be a contiguous {list(shape)} {pixels.dtype}, got {tuple(tensor.shape)} {tensor.dtype}"
            )
    return reasons


def supports(pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias) -> list[str]:
    tensors = (pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias)
    return cuda_ext.device_reasons(*tensors) + operand_reasons(*tensors)


register(KernelOp("pit_pixel_mlp", "pit_pixel_mlp", "cuda", pit_pixel_mlp, supports))
