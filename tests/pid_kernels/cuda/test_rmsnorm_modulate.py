"""pid_kernels/cuda/rmsnorm_modulate.py: CPU fallback, fake shapes under torch.compile, kernel vs eager on GPU."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import pid_kernels
from kernel_testing import ROW_GPU_CASES, assert_within_eager_error, compiled_with_ops, maybe_compiled, with_dtypes
from pid import seams
from pid_kernels.cuda import rmsnorm_modulate as module


def adaln_args(batch=2, tokens=37, width=64, per_token=False, device="cpu", seed=0):
    """x [B, L, C], weight [C], and the [B, 1 or L, 6C] modulation whose first two chunks
    are shift and scale (chunked inside the callers, so every dtype keeps the strides)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(batch, tokens, width, generator=gen, device=device)
    weight = torch.rand(width, generator=gen, device=device) + 0.5
    modulation = torch.randn(batch, tokens if per_token else 1, 6 * width, generator=gen, device=device)
    return [x, weight, modulation]


def chunked(fn):
    return lambda x, weight, modulation: fn(x, weight, *modulation.chunk(6, -1)[:2])


def test_cpu_falls_back_to_the_reference():
    """CPU tensors are refused with the reason and the seam runs its reference (the kernel
    itself is checked against eager on a GPU, in test_kernel_within_eager_error)."""
    x, weight, modulation = adaln_args()
    shift, scale = modulation.chunk(6, -1)[:2]
    assert any("CPU tensor" in reason for reason in module.supports(x, weight, shift, scale))
    pid_kernels.enable(["rmsnorm_modulate"], strict=False)
    try:
        before = dict(pid_kernels.CALLS["rmsnorm_modulate"])
        seams.rmsnorm_modulate(x, weight, shift, scale)
        assert pid_kernels.CALLS["rmsnorm_modulate"]["fallback"] == before["fallback"] + 1
        assert pid_kernels.CALLS["rmsnorm_modulate"]["fused"] == before["fused"]
    finally:
        pid_kernels.disable(["rmsnorm_modulate"])


def test_refusals_name_their_reason():
    x, weight, modulation = adaln_args()
    shift, scale = modulation.chunk(6, -1)[:2]
    reasons = module.supports(x.double(), weight, shift, scale) + module.supports(x, weight[:5], shift, scale)
    assert any("float64" in r for r in reasons) and any("weight must be" in r for r in reasons)
    assert any("x is 4-D" in r for r in module.supports(x[None], weight, shift, scale))


@with_dtypes
def test_fake_shapes_under_compile(dtype):
    """The op is in the compiled graph; on CPU its implementation is the reference, so the result
    equals the reference called with the seam's arguments only if the wrapper passes them right."""
    x, weight, modulation = adaln_args(tokens=5, width=24)
    args = [t.to(dtype) for t in (x, weight, modulation)]
    out, used = compiled_with_ops(chunked(module.rmsnorm_modulate), *args)
    assert used and out.dtype == dtype and out.shape == x.shape
    assert torch.equal(out, chunked(module.reference)(*args))


def test_fake_shapes_of_pit_pixels():
    with FakeTensorMode():
        pixels = torch.empty(6, 256, 16, dtype=torch.bfloat16, device="cuda")
        shift, scale = torch.empty(6, 256, 96, dtype=torch.bfloat16, device="cuda").chunk(6, -1)[:2]
        out = module.rmsnorm_modulate(pixels, torch.empty(16, dtype=torch.bfloat16, device="cuda"), shift, scale)
        assert out.shape == pixels.shape and out.dtype == torch.bfloat16 and out.is_cuda


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", ROW_GPU_CASES)
def test_kernel_within_eager_error(case, dtype):
    batch, tokens, width, per_token = ROW_GPU_CASES[case]
    args = adaln_args(batch, tokens, width, per_token, device="cuda", seed=len(case))
    shift, scale = args[2].chunk(6, -1)[:2]
    assert module.supports(args[0], args[1], shift, scale) == []
    assert_within_eager_error(maybe_compiled(chunked(module.rmsnorm_modulate)), chunked(module.reference), args,
                              dtype, case)


@pytest.mark.gpu
@with_dtypes
def test_kernel_two_dimensional_x_and_strict_seam(dtype):
    x, weight, modulation = adaln_args(1, 29, 72, device="cuda")
    x, shift, scale = x[0], modulation[0, 0, :72], modulation[0, 0, 72:144]
    pid_kernels.enable(["rmsnorm_modulate"], strict=True)  # a refusal would raise
    try:
        args = [t.to(dtype) for t in (x, weight, shift, scale)]
        assert_within_eager_error(seams.rmsnorm_modulate, module.reference, args, dtype, "2-D x")
    finally:
        pid_kernels.disable(["rmsnorm_modulate"])
