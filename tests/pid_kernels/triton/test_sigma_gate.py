"""pid_kernels/triton/sigma_gate.py: the fused sigma-aware LQ gate vs the seam's reference."""

import pytest
import torch

from kernel_testing import DEVICE, assert_within_eager_error, fused_decode_calls, maybe_compiled, with_dtypes
from pid_kernels.runtime import interpreting
from pid_kernels.triton import sigma_gate
from tiny import TINY_V15, tiny_inputs, tiny_net

# Several ragged row, column and K tiles in an interpreter-sized problem.
SMALL_TILES = "BLOCK_M=16,BLOCK_N=32,BLOCK_K=16"


def gate_args(batch=2, tokens=37, width=80, per_token=False, transposed=False, seed=0):
    """Seam arguments: x, lq [B, Li, C], weight [C or 1, 2C], bias, log_alpha, sigma [B]."""
    gen = torch.Generator().manual_seed(seed)
    shape = (tokens, batch, width) if transposed else (batch, tokens, width)
    x, lq = (torch.randn(shape, generator=gen) for _ in range(2))
    if transposed:  # token-major storage: batch stride C, token stride B*C
        x, lq = x.transpose(0, 1), lq.transpose(0, 1)
    outputs = 1 if per_token else width
    weight = torch.randn(outputs, 2 * width, generator=gen) / (2 * width) ** 0.5
    bias = torch.randn(outputs, generator=gen)
    return [a.to(DEVICE) for a in (x, lq, weight, bias, torch.tensor(0.4), torch.rand(batch, generator=gen))]


def check(args, dtype, what):
    assert sigma_gate.supports(*args) == []
    assert_within_eager_error(maybe_compiled(sigma_gate.sigma_gate), sigma_gate.reference, args, dtype, what)


@with_dtypes
@pytest.mark.parametrize("tiles", [None, SMALL_TILES], ids=["arch-table", "small-tiles"])
def test_per_channel(monkeypatch, tiles, dtype):
    if tiles:
        monkeypatch.setenv("PID_TUNING_SIGMA_GATE", tiles)
    check(gate_args(), dtype, f"per channel, {tiles or 'arch table'}")


@with_dtypes
def test_per_channel_strided_inputs(monkeypatch, dtype):
    monkeypatch.setenv("PID_TUNING_SIGMA_GATE", SMALL_TILES)
    check(gate_args(tokens=19, width=48, transposed=True), dtype, "token-major x, lq")


@with_dtypes
@pytest.mark.parametrize("row_elements", [8192, 256], ids=["many-rows", "two-rows"])
def test_per_token(monkeypatch, row_elements, dtype):
    monkeypatch.setenv("PID_TUNING_SIGMA_GATE", f"ROW_ELEMENTS={row_elements}")
    check(gate_args(per_token=True), dtype, f"per token, {row_elements} elements per program")
    check(gate_args(tokens=19, width=48, per_token=True, transposed=True), dtype, "per token, token-major x, lq")


def test_output_keeps_the_stream_dtype_like_the_seam():
    args = [a.bfloat16() for a in gate_args(tokens=5, width=16)]
    assert sigma_gate.sigma_gate(*args).dtype == sigma_gate.reference(*args).dtype == torch.bfloat16


def test_refusals(monkeypatch):
    args = gate_args(tokens=5, width=16)
    x, lq, weight, bias, log_alpha, sigma = args
    assert "float64" in " ".join(sigma_gate.supports(*[a.double() for a in args]))
    assert "neither [C, 2C] nor [1, 2C]" in " ".join(sigma_gate.supports(x, lq, weight[:3], bias[:3], log_alpha, sigma))
    assert "is not [B]" in " ".join(sigma_gate.supports(x, lq, weight, bias, log_alpha, sigma[:1]))
    assert "must be the same [B, Li, C]" in " ".join(sigma_gate.supports(x, lq[:, :3], weight, bias, log_alpha, sigma))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "CPU tensor" in " ".join(sigma_gate.supports(*[a.cpu() for a in args]))


@pytest.mark.parametrize("config", [None, TINY_V15], ids=["v1-per-channel", "v1.5-per-token"])
def test_enabled_in_tiny_decode(config):
    net = tiny_net(config).to(DEVICE)
    inputs = [a.to(DEVICE) for a in tiny_inputs(net)]
    assert fused_decode_calls(net, inputs, ["sigma_gate"])["sigma_gate"] > 0


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("per_token", [False, True], ids=["per-channel", "per-token"])
def test_cuda_release_width(per_token, dtype):
    """The arch table's tiles at the release width C=1536 on a 32x32 patch grid, both gate kinds."""
    assert not interpreting()
    check(gate_args(batch=2, tokens=1024, width=1536, per_token=per_token), dtype, f"C=1536, per_token={per_token}")
