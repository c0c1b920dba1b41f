"""Shared checks of the fused fp8 ops' tests (tests/pid_kernels/triton/test_*_fp8.py)."""

import torch

from pid.quant.fp8 import E4M3

# The output is rounded once to its dtype; the float32 truth differs by that and summation order.
OUTPUT_RTOL = {torch.float32: 1e-5, torch.bfloat16: 2**-8, torch.float16: 2**-11}

# Where the float32 summation order of the mean square moves a value across a rounding
# boundary, fused and reference differ by one step there; this share of the values at most.
MAX_FLIPPED = 1e-3


def assert_matches_quantized(ours, reference, what):
    """(values, scales) against the reference's: scales to float32 rounding, each value exact or
    one e4m3 step away, and at most MAX_FLIPPED of them not exact."""
    (values, scales), (ref_values, ref_scales) = ours, reference
    assert values.dtype == E4M3 and scales.dtype == torch.float32, what
    assert values.shape == ref_values.shape and scales.shape == ref_scales.shape, what
    torch.testing.assert_close(scales, ref_scales, rtol=2e-6, atol=0, msg=what)
    ours32, ref32 = values.float(), ref_values.float()
    step = torch.where(ref32.abs() < 2**-6, torch.full_like(ref32, 2**-9), ref32.abs() * 2**-3)
    assert ((ours32 - ref32).abs() <= step * 1.01).all(), f"{what}: a value is off by more than one e4m3 step"
    flipped = (ours32 != ref32).float().mean().item()
    assert flipped <= MAX_FLIPPED, f"{what}: {flipped:.2%} of the values differ"
