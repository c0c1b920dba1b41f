"""The seam override machinery that fused ops plug into."""

import pytest
import torch

import pid_kernels
from pid import seams
from pid_kernels.registry import KernelOp, KernelRefused


@pytest.fixture
def fake_op():
    calls = []

    def impl(x, gate, y):
        calls.append("fused")
        return x + gate * y

    def supports(x, gate, y):
        return [] if x.dim() == 2 else ["only 2-D inputs"]

    op = pid_kernels.register(KernelOp("fake_residual", "gated_residual", "triton", impl, supports))
    yield op, calls
    pid_kernels.disable(["fake_residual"])
    pid_kernels.REGISTRY.pop("fake_residual")


def test_enable_routes_and_falls_back(fake_op):
    op, calls = fake_op
    pid_kernels.enable(["fake_residual"], strict=False)
    assert "fake_residual" in pid_kernels.enabled()
    x = torch.ones(2, 3)
    assert torch.equal(seams.gated_residual(x, x, x), 2 * x) and calls == ["fused"]
    seams.gated_residual(torch.ones(2, 3, 4), torch.ones(4), torch.ones(4))  # refused -> reference
    assert calls == ["fused"] and pid_kernels.CALLS["fake_residual"]["fallback"] == 1
    pid_kernels.disable(["fake_residual"])
    assert "fake_residual" not in pid_kernels.enabled()


def test_strict_mode_raises_with_reasons(fake_op):
    pid_kernels.enable(["fake_residual"], strict=True)
    with pytest.raises(KernelRefused, match="only 2-D inputs"):
        seams.gated_residual(torch.ones(2, 3, 4), torch.ones(4), torch.ones(4))


def test_unknown_names():
    with pytest.raises(KeyError, match="unknown fused op"):
        pid_kernels.enable(["nope"])
    with pytest.raises(KeyError, match="unknown seam"):
        seams.override("nope", None)


def test_a_failing_kernel_falls_back_for_good_unless_strict():
    def broken(x, gate, y):
        raise RuntimeError("no kernel image for this GPU")

    pid_kernels.register(KernelOp("broken_residual", "gated_residual", "triton", broken, lambda *a: []))
    try:
        pid_kernels.enable(["broken_residual"], strict=False)
        x = torch.ones(2, 3)
        with pytest.warns(UserWarning, match="no kernel image"):
            assert torch.equal(seams.gated_residual(x, x, x), 2 * x)
        assert "no kernel image" in pid_kernels.registry.FAILED["broken_residual"]
        assert torch.equal(seams.gated_residual(x, x, x), 2 * x)  # no second attempt, no warning
        pid_kernels.enable(["broken_residual"], strict=True)
        pid_kernels.registry.FAILED.clear()
        with pytest.raises(RuntimeError, match="no kernel image"):
            seams.gated_residual(x, x, x)
    finally:
        pid_kernels.disable(["broken_residual"])
        pid_kernels.REGISTRY.pop("broken_residual")
        pid_kernels.registry.FAILED.pop("broken_residual", None)
