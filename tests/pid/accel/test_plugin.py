"""Fused ops plug into the reference model in any subset; with all of them on, a bf16 decode
stays within twice the error of the eager bf16 decode (both against the fp32 decode)."""

import pytest
import torch

import pid
import pid_kernels
from tiny import TINY_V15, tiny_inputs, tiny_net

TRITON_OPS = sorted(name for name, op in pid_kernels.REGISTRY.items() if op.backend == "triton")


@pytest.fixture(autouse=True)
def _all_off():
    yield
    pid_kernels.disable()


def _decode(net, inputs, names):
    pid_kernels.disable()
    pid_kernels.enable(names, strict=True)
    try:
        return pid.Decoder(net).decode(*inputs, seed=0)
    finally:
        pid_kernels.disable()


@pytest.mark.parametrize("names", [[name] for name in TRITON_OPS] + [TRITON_OPS[::2]], ids=lambda n: "+".join(n))
def test_subsets_match_the_reference_in_fp32(names):
    net = tiny_net(TINY_V15)
    inputs = tiny_inputs(net, batch=1, image_hw=(32, 64))
    torch.testing.assert_close(_decode(net, inputs, names), _decode(net, inputs, []), rtol=1e-4, atol=1e-4)


def test_all_ops_bf16_within_twice_eager_bf16_error():
    net = tiny_net(TINY_V15)
    inputs = tiny_inputs(net, batch=1, image_hw=(32, 64))
    truth = _decode(net, inputs, [])
    net = net.to(torch.bfloat16)
    eager_error = (_decode(net, inputs, []) - truth).norm() / truth.norm()
    fused_error = (_decode(net, inputs, TRITON_OPS) - truth).norm() / truth.norm()
    assert fused_error <= 2 * eager_error, (fused_error.item(), eager_error.item())
