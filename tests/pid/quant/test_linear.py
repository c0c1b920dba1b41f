"""FP8Linear: quantized storage, the per-token fp8 product, dtype casts and device moves."""

import pytest
import torch
import torch.nn as nn

from pid.quant.fp8 import quantize_rows, scaled_mm
from pid.quant.linear import FP8Linear


@pytest.fixture
def linear():
    torch.manual_seed(0)
    return nn.Linear(48, 32).to(torch.bfloat16)


def test_fp8_mode_is_the_scaled_product_of_quantized_tokens(linear):
    layer = FP8Linear.from_linear(linear, "fp8")
    assert layer.weight.dtype == torch.float8_e4m3fn and layer.weight_scale.shape == (32,)
    x = torch.randn(2, 5, 48).bfloat16()
    x_q, x_scale = quantize_rows(x.reshape(-1, 48))
    expected = scaled_mm(x_q, x_scale, layer.weight, layer.weight_scale, linear.bias, torch.bfloat16, backend="emulate")
    out = layer(x)
    assert out.shape == (2, 5, 32) and out.dtype == torch.bfloat16
    assert torch.equal(out.reshape(-1, 32), expected)
    reference = linear(x).float()
    assert (out.float() - reference).norm() / reference.norm() < 0.06


def test_fp8_weight_mode_only_rounds_the_weight(linear):
    layer = FP8Linear.from_linear(linear, "fp8_weight")
    x = torch.randn(3, 48).bfloat16()
    expected = nn.functional.linear(x, layer.dequantized_weight(torch.bfloat16), linear.bias)
    assert torch.equal(layer(x), expected)


def test_dtype_casts_keep_the_quantized_tensors(linear):
    layer = FP8Linear.from_linear(linear, "fp8")
    weight, scale = layer.weight.clone(), layer.weight_scale.clone()
    layer.to(torch.float16)
    assert layer.bias.dtype == torch.float16
    assert torch.equal(layer.weight.float(), weight.float()) and torch.equal(layer.weight_scale, scale)
    assert sorted(layer.state_dict()) == ["bias", "weight", "weight_scale"]


def test_meta_layers_materialize_with_to_empty():
    with torch.device("meta"):
        layer = FP8Linear.from_linear(nn.Linear(16, 8, bias=False), "fp8")
    layer = layer.to_empty(device="cpu").to(torch.bfloat16)
    assert layer.weight.device.type == "cpu" and layer.weight.dtype == torch.float8_e4m3fn
    assert layer.weight_scale.dtype == torch.float32 and layer.bias is None


def test_unknown_mode_is_refused(linear):
    with pytest.raises(ValueError, match="mode must be one of"):
        FP8Linear.from_linear(linear, "int4")
