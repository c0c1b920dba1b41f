"""pid_kernels/triton/sigma_gate_fp8.py: the fp8 gate GEMM with the gate epilogue vs the seam's
reference ([x, lq] quantized per token, the emulated fp8 product) evaluated in float32."""

import pytest
import torch

from fp8_testing import OUTPUT_RTOL
from kernel_testing import DEVICE, maybe_compiled, with_dtypes
from pid.quant.fp8 import quantize_rows
from pid_kernels.runtime import interpreting
from pid_kernels.triton import sigma_gate_fp8 as op



def gate_args(batch=2, tokens=37, width=48, dtype=torch.float32, seed=0):
    """Seam arguments: x, lq [B, Li, C], e4m3 weight [C, 2C] with scales [C], bias, log_alpha, sigma [B]."""
    gen = torch.Generator().manual_seed(seed)
    x, lq = (torch.randn(batch, tokens, width, generator=gen) for _ in range(2))
    weight_q, weight_scale = quantize_rows(torch.randn(width, 2 * width, generator=gen) / (2 * width) ** 0.5)
    bias, log_alpha, sigma = torch.randn(width, generator=gen), torch.tensor(0.4), torch.rand(batch, generator=gen)
    floats = [t.to(DEVICE, dtype) for t in (x, lq)]
    return [*floats, weight_q.to(DEVICE), weight_scale.view(-1).to(DEVICE), bias.to(DEVICE, dtype),
            log_alpha.to(DEVICE, dtype), sigma.to(DEVICE)]


def check(args, dtype, what):
    assert op.supports(*args) == [], what
    ours = maybe_compiled(op.sigma_gate_fp8)(*args)
    upcast = [t.float() if i not in (2, 3) else t for i, t in enumerate(args)]
    truth = op.reference(*upcast)  # float32 logit, e4m3 values as in dtype (exactly representable)
    assert ours.dtype == dtype and ours.shape == truth.shape, what
    scale = truth.abs().max().item()
    torch.testing.assert_close(ours.float(), truth, rtol=OUTPUT_RTOL[dtype], atol=OUTPUT_RTOL[dtype] * scale, msg=what)


@with_dtypes
@pytest.mark.parametrize("batch,tokens,width", [(2, 37, 48), (1, 130, 136)], ids=["b2_ragged", "b1_two_tiles"])
def test_matches_the_reference(batch, tokens, width, dtype):
    check(gate_args(batch, tokens, width, dtype), dtype, f"{dtype} B={batch} L={tokens} C={width}")


def test_strided_streams():
    """x and lq as token-strided views (channels contiguous), as the block and the LQ features give them."""
    x, lq, *rest = gate_args(batch=2, tokens=20, width=32)
    wide = torch.randn(2, 20, 64)
    check([wide[..., :32], lq, *rest], torch.float32, "strided x")


def test_refusals():
    x, lq, weight, weight_scale, bias, log_alpha, sigma = gate_args()
    assert "per-token gate" in " ".join(op.supports(x, lq, weight[:1], weight_scale[:1], bias[:1], log_alpha, sigma))
    assert "float8_e4m3fn" in " ".join(op.supports(x, lq, weight.float(), weight_scale, bias, log_alpha, sigma))
    assert "sigma" in " ".join(op.supports(x, lq, weight, weight_scale, bias, log_alpha, sigma[:1]))


@pytest.mark.gpu
@with_dtypes
def test_cuda_release_width(dtype):
    assert not interpreting()
    check(gate_args(2, 1000, 1536, dtype), dtype, f"cuda {dtype}")
