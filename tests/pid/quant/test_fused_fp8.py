"""The fp8 decode through the fused producer -> fp8 GEMM path (the *_fp8 Triton ops, under the
interpreter here) equals the emulation path; which consumers get pre-quantized inputs; the report."""

import pytest
import torch

import pid
from kernel_testing import fused_decode_calls
from pid.quant.convert import quantize_model
from pid.quant.fp8 import quantize_rows
from pid.quant.policy import Policy, Rule
from pid.seams import QuantizedRows
from pid_kernels.runtime import interpreting
from tiny import tiny_inputs, tiny_net

FP8_OPS = ["rmsnorm_modulate_fp8", "gated_residual_rmsnorm_modulate_fp8", "sigma_gate_fp8", "patch_embed_fp8"]
# The default policy plus the sigma gates and the patch embedding in fp8, so every fused fp8 op
# of the decode runs.
FP8_ALL = Policy(
    (Rule("*.content_proj", "fp8", "test: the fp8 gate GEMM"), Rule("s_embedder.proj", "fp8", "test: fp8 patch GEMM"))
    + Policy().rules
)


def quantized_tiny(policy=FP8_ALL):
    net = tiny_net()
    quantize_model(net, policy)
    return net


def test_blocks_mark_the_consumers_whose_gemms_are_fp8():
    net = quantized_tiny()
    assert all(block.fp8_consumers == {"attn_x", "attn_y", "mlp_x", "mlp_y"} for block in net.patch_blocks)
    keep_mlp = Policy((Rule("patch_blocks.0.mlp_x.w3", "bf16", "test"),) + Policy().rules)
    net = quantized_tiny(keep_mlp)
    assert net.patch_blocks[0].fp8_consumers == {"attn_x", "attn_y", "mlp_y"}  # w1 alone is not enough


def test_fp8_linear_takes_quantized_rows():
    layer = quantized_tiny().patch_blocks[0].attn.qkv_x
    x = torch.randn(2, 5, layer.in_features)
    rows = QuantizedRows(*quantize_rows(x), x.dtype)
    assert torch.equal(layer(rows), layer(x))


@pytest.mark.skipif(not interpreting() and not torch.cuda.is_available(), reason="needs TRITON_INTERPRET=1 or a GPU")
def test_fused_decode_equals_the_emulation():
    net = quantized_tiny()
    inputs = tiny_inputs(net, image_hw=(32, 64))
    kwargs = {"seed": 3, "steps": 2}
    calls = fused_decode_calls(net, inputs, FP8_OPS, **kwargs)  # also: the fused decode equals the emulation
    blocks, steps = len(net.patch_blocks), kwargs["steps"]
    # Per step: both streams' attention inputs, both MLP inputs but the last block's text one, every gate.
    assert calls["rmsnorm_modulate_fp8"] == steps * 2 * blocks
    assert calls["gated_residual_rmsnorm_modulate_fp8"] == steps * (2 * blocks - 1)
    assert calls["sigma_gate_fp8"] > 0
    assert calls["patch_embed_fp8"] == steps


def test_compile_report_lists_the_fused_fp8_ops():
    decoder = pid.compile(pid.Decoder(tiny_net()), pid.CompileConfig(precision="fp8", cuda_graphs=False))
    try:
        report = str(decoder.pid_compile_report)
        for name in FP8_OPS:
            assert f"triton op {name}" in report, report
        assert "fp8 GEMM inputs made by their adaLN producers" in report, report
    finally:
        pid.revert(decoder)
