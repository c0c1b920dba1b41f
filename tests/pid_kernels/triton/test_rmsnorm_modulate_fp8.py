"""pid_kernels/triton/rmsnorm_modulate_fp8.py (and its residual variant's shared kernel,
pid.quant.triton_quantize): the fused adaLN + per-token e4m3 quantization vs the unfused
composition, rmsnorm_modulate's reference followed by pid.quant.fp8.quantize_rows."""

import pytest
import torch

from fp8_testing import assert_matches_quantized
from kernel_testing import DEVICE, maybe_compiled, residual_args, with_dtypes
from pid.quant.fp8 import E4M3
from pid_kernels.runtime import interpreting
from pid_kernels.triton import rmsnorm_modulate_fp8 as op

def modulate_args(batch, tokens, width, dtype, per_token=False, seed=0):
    x, _, weight, modulation = residual_args(batch, tokens, width, per_token, seed=seed)
    x, weight, modulation = (t.to(DEVICE, dtype) for t in (x, weight, modulation))
    shift, scale = modulation.chunk(6, dim=-1)[:2]  # strided views, as the block passes them
    return [x, weight, shift, scale]


@with_dtypes
@pytest.mark.parametrize("batch,tokens,width,per_token", [
    (2, 37, 96, False),   # batch > 1, a width that is not a power of two
    (1, 5, 1536, False),  # the release width
    (3, 11, 50, True),    # per-token modulation views, odd width
], ids=["b2_c96", "b1_c1536", "b3_c50_per_token"])
def test_matches_the_unfused_composition(batch, tokens, width, per_token, dtype):
    args = modulate_args(batch, tokens, width, dtype, per_token)
    assert op.supports(*args) == []
    ours = maybe_compiled(op.rmsnorm_modulate_fp8)(*args)
    assert_matches_quantized(ours, op.reference(*args), f"{dtype} {tuple(args[0].shape)}")


def test_two_dimensional_rows_and_zero_rows():
    """x [rows, C] works too; an all-zero row gets MIN_SCALE and zero values (no NaN)."""
    x, weight, shift, scale = modulate_args(1, 9, 40, torch.float32)
    args = [x[0], weight, torch.zeros_like(shift[0]), scale[0]]
    args[0][3] = 0.0
    values, scales = op.rmsnorm_modulate_fp8(*args)
    assert_matches_quantized((values, scales), op.reference(*args), "2-D")
    assert torch.equal(values[3].float(), torch.zeros(40)) and scales[3].item() == pytest.approx(1e-12)


def test_refusals(monkeypatch):
    x, weight, shift, scale = modulate_args(2, 7, 32, torch.float32)
    assert "float64" in " ".join(op.supports(x.double(), weight.double(), shift.double(), scale.double()))
    assert "does not broadcast" in " ".join(op.supports(x, weight, shift[..., :16], scale))
    assert "weight must be" in " ".join(op.supports(x, weight[:16], shift, scale))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CPU tensor" in " ".join(op.supports(x.cpu(), weight.cpu(), shift.cpu(), scale.cpu()))


def test_refuses_gpus_without_fp8():
    assert "8.9" in " ".join(op.FP8_CAPABILITY.reasons((8, 0)))
    assert op.FP8_CAPABILITY.reasons((9, 0)) == []


def test_fake_gives_the_shapes():
    args = [t.to("meta") for t in modulate_args(2, 7, 32, torch.bfloat16)]
    values, scales = op.rmsnorm_modulate_fp8(*args)
    assert values.shape == (2, 7, 32) and values.dtype == E4M3 and scales.shape == (2, 7, 1)


@pytest.mark.gpu
@with_dtypes
def test_cuda_release_width(dtype):
    assert not interpreting()
    args = modulate_args(2, 333, 1536, dtype)
    assert_matches_quantized(op.rmsnorm_modulate_fp8(*args), op.reference(*args), f"cuda {dtype}")
