"""pid_kernels/triton/swiglu.py: silu(x w1^T) * (x w3^T) in one GEMM vs the seam's reference."""

import pytest
import torch

import pid
import pid_kernels
from kernel_testing import DTYPES, assert_within_eager_error, maybe_compiled
from pid_kernels.triton import swiglu
from tiny import tiny_inputs, tiny_net


def swiglu_args(rows=(3, 97), width=40, hidden=72, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*rows, width, generator=gen), torch.randn(hidden, width, generator=gen) / width**0.5,
            torch.randn(hidden, width, generator=gen) / width**0.5]


@pytest.fixture
def tiles(monkeypatch):
    monkeypatch.setenv("PID_TUNING_SWIGLU", "BLOCK_M=32,BLOCK_N=32,BLOCK_K=32")


@pytest.mark.parametrize("rows,width,hidden", [((3, 97), 40, 72), ((1, 1), 16, 16), ((2, 33), 96, 64)])
def test_matches_eager_error(tiles, rows, width, hidden):
    """Ragged rows, columns and K (40 = 32 + 8), a single row, several K steps."""
    args = swiglu_args(rows, width, hidden)
    assert swiglu.supports(*args) == []
    for dtype in DTYPES:
        assert_within_eager_error(maybe_compiled(swiglu.swiglu), swiglu.reference, args, dtype, f"{rows} {width}")


def test_supports_reasons(monkeypatch):
    x, w1, w3 = swiglu_args()
    assert "dtype float64" in " ".join(swiglu.supports(x.double(), w1.double(), w3.double()))
    assert "differ in dtype" in " ".join(swiglu.supports(x, w1.half(), w3))
    assert "are not [..., C], [H, C], [H, C]" in " ".join(swiglu.supports(x, w1, w3[:-1]))
    assert "not contiguous" in " ".join(swiglu.supports(x.mT.contiguous().mT, w1, w3))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "CPU tensor" in " ".join(swiglu.supports(x, w1, w3))


def test_enabled_in_tiny_decode(tiles):
    """Every MM-DiT block's SwiGLU through the fused op, strictly, vs the reference decode (float32)."""
    net = tiny_net()
    latent, sigma, captions = tiny_inputs(net, text_len=7)
    expected = pid.Decoder(net).decode(latent, sigma, captions, seed=3, steps=2)
    pid_kernels.enable([swiglu.NAME], strict=True)
    try:
        before = pid_kernels.CALLS[swiglu.NAME]["fused"]
        ours = pid.Decoder(net).decode(latent, sigma, captions, seed=3, steps=2)
        assert pid_kernels.CALLS[swiglu.NAME]["fused"] > before
    finally:
        pid_kernels.disable([swiglu.NAME])
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
