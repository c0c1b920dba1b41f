"""pid_kernels/triton/gated_residual_rmsnorm_modulate_fp8.py: x' = x + gate * y and the adaLN of
x' quantized per token, vs gated_residual_rmsnorm_modulate's reference + quantize_rows."""

import pytest
import torch

from fp8_testing import assert_matches_quantized
from kernel_testing import DEVICE, maybe_compiled, residual_args, with_dtypes
from pid_kernels.runtime import interpreting
from pid_kernels.triton import gated_residual_rmsnorm_modulate_fp8 as op


def residual_modulate_args(batch, tokens, width, dtype, per_token=False, seed=0):
    x, y, weight, modulation = (t.to(DEVICE, dtype) for t in residual_args(batch, tokens, width, per_token, seed=seed))
    shift, scale, gate = modulation.chunk(6, dim=-1)[3:]  # the MLP half's views
    return [x, gate, y, weight, shift, scale]


def check(args, what):
    assert op.supports(*args) == []
    updated, values, scales = maybe_compiled(op.gated_residual_rmsnorm_modulate_fp8)(*args)
    ref_updated, ref_values, ref_scales = op.reference(*args)
    assert torch.equal(updated, ref_updated), f"{what}: x' differs"  # elementwise: exact
    assert_matches_quantized((values, scales), (ref_values, ref_scales), what)


@with_dtypes
@pytest.mark.parametrize("batch,tokens,width,per_token", [
    (2, 37, 96, False), (1, 5, 1536, False), (3, 11, 50, True),
], ids=["b2_c96", "b1_c1536", "b3_c50_per_token"])
def test_matches_the_unfused_composition(batch, tokens, width, per_token, dtype):
    check(residual_modulate_args(batch, tokens, width, dtype, per_token), f"{dtype} B={batch} C={width}")


def test_refusals():
    x, gate, y, weight, shift, scale = residual_modulate_args(2, 7, 32, torch.float32)
    assert "y is torch.float16" in " ".join(op.supports(x, gate, y.half(), weight, shift, scale))
    assert "does not broadcast" in " ".join(op.supports(x, gate[..., :8], y, weight, shift, scale))


@pytest.mark.gpu
@with_dtypes
def test_cuda_release_width(dtype):
    assert not interpreting()
    check(residual_modulate_args(2, 333, 1536, dtype), f"cuda {dtype}")
