"""fp8 numerics: row-wise quantization, the scaled product (CPU torch._scaled_mm vs the
float32 emulation), and the device refusal."""

import pytest
import torch

from pid.quant import fp8


def test_quantize_rows_maps_each_row_max_to_448_and_dequantizes_closely():
    x = torch.randn(7, 40) * torch.logspace(-3, 3, 7).view(-1, 1)
    q, scale = fp8.quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (7, 1) and scale.dtype == torch.float32
    assert torch.equal(q.float().abs().amax(-1), torch.full((7,), 448.0))
    relative = (fp8.dequantize(q, scale) - x).abs() / x.abs().amax(-1, keepdim=True)
    assert relative.max() <= 2**-4 * 1.01  # half an e4m3 step of the row maximum's binade


def test_zero_rows_quantize_to_zeros():
    q, scale = fp8.quantize_rows(torch.zeros(2, 16))
    assert torch.equal(fp8.dequantize(q, scale), torch.zeros(2, 16))


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_cpu_scaled_mm_matches_the_emulation(out_dtype, with_bias):
    gen = torch.Generator().manual_seed(0)
    a_q, a_scale = fp8.quantize_rows(torch.randn(37, 96, generator=gen))
    w_q, w_scale = fp8.quantize_rows(torch.randn(80, 96, generator=gen))
    bias = torch.randn(80, generator=gen) if with_bias else None
    ours = fp8.scaled_mm(a_q, a_scale, w_q, w_scale.view(-1), bias, out_dtype)
    emulated = fp8.scaled_mm(a_q, a_scale, w_q, w_scale.view(-1), bias, out_dtype, backend="emulate")
    assert ours.dtype == emulated.dtype == out_dtype
    # fp32: summation order only; bf16: the bias is added before the rounding there, after here.
    tolerance = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2**-7, atol=2**-7)}[out_dtype]
    torch.testing.assert_close(ours.float(), emulated.float(), **tolerance)


def test_emulation_is_the_exact_product_of_the_quantized_values():
    a_q, a_scale = fp8.quantize_rows(torch.randn(5, 64))
    w_q, w_scale = fp8.quantize_rows(torch.randn(6, 64))
    exact = (a_q.double() @ w_q.double().t()) * a_scale.double() * w_scale.double().view(1, -1)
    emulated = fp8.scaled_mm(a_q, a_scale, w_q, w_scale.view(-1), None, torch.float32, backend="emulate")
    torch.testing.assert_close(emulated.double(), exact, rtol=1e-6, atol=1e-6)


def test_cpu_runs_fp8_and_old_gpus_are_refused_with_the_reason(monkeypatch):
    assert fp8.fp8_device_reasons(torch.device("cpu")) == []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    (reason,) = fp8.fp8_device_reasons(torch.device("cuda"))
    assert "A100" in reason and "8.0" in reason and "no fp8 tensor cores" in reason and "8.9" in reason
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert fp8.fp8_device_reasons(torch.device("cuda")) == []


def test_unknown_backend_is_refused():
    a_q, a_scale = fp8.quantize_rows(torch.randn(2, 16))
    with pytest.raises(ValueError, match="backend must be one of"):
        fp8.scaled_mm(a_q, a_scale, a_q, a_scale.view(-1), None, torch.float32, backend="cublas")
