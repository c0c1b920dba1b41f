"""pid_kernels/gated_residual.py (CUDA): x + gate * y, in place, and fused with the next adaLN."""

import pytest
import torch
from torch._dynamo.backends.debugging import aot_eager

import pid_kernels
from kernel_testing import DTYPES, assert_within_eager_error, maybe_compiled
from pid import seams
from pid_kernels.cuda import gated_residual as module


def residual_args(batch=2, tokens=37, width=64, per_token=False, device="cpu", seed=0):
    """x, y [B, L, C], norm weight [C] and the [B, 1 or L, 6C] modulation (chunked by the callers)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x, y = (torch.randn(batch, tokens, width, generator=gen, device=device) for _ in range(2))
    weight = torch.rand(width, generator=gen, device=device) + 0.5
    modulation = torch.randn(batch, tokens if per_token else 1, 6 * width, generator=gen, device=device)
    return [x, y, weight, modulation]


def residual(fn):
    return lambda x, y, weight, modulation: fn(x, modulation.chunk(6, -1)[2], y)


def fused(fn):
    def call(x, y, weight, modulation):
        shift, scale, gate = modulation.chunk(6, -1)[3:]
        return fn(x, gate, y, weight, shift, scale)

    return call


def in_place(x, y, weight, modulation):
    return module.gated_residual_(x.clone(), modulation.chunk(6, -1)[2], y)


def compiled_with_ops(fn, *args):
    """fn(*args) through torch.compile(fullgraph=True, aot_eager), and the pid_cuda ops in its graph."""
    torch._dynamo.reset()
    targets = []

    def backend(graph_module, example_inputs):
        targets.extend(str(node.target) for node in graph_module.graph.nodes if node.op == "call_function")
        return aot_eager(graph_module, example_inputs)

    result = torch.compile(fn, fullgraph=True, backend=backend)(*args)
    return result, [target for target in targets if "pid_cuda" in target]


def test_cpu_falls_back_to_the_references():
    args = residual_args()
    x, y, weight, modulation = args
    gate = modulation.chunk(6, -1)[2]
    assert any("CPU tensor" in reason for reason in module.supports(x, gate, y))
    pid_kernels.enable(["gated_residual", "gated_residual_rmsnorm_modulate"], strict=False)
    try:
        assert torch.equal(residual(seams.gated_residual)(*args), residual(module.reference)(*args))
        fused_outputs = zip(fused(seams.gated_residual_rmsnorm_modulate)(*args), fused(module.fused_reference)(*args))
        for ours, expected in fused_outputs:
            assert torch.equal(ours, expected)
    finally:
        pid_kernels.disable(["gated_residual", "gated_residual_rmsnorm_modulate"])
    assert torch.equal(in_place(*args), residual(module.reference)(*args))


def test_fake_shapes_under_compile():
    args = residual_args(tokens=5, width=24)
    for dtype in DTYPES:
        cast = [t.to(dtype) for t in args]
        out, used = compiled_with_ops(residual(module.gated_residual), *cast)
        assert used == ["pid_cuda.gated_residual"] and out.dtype == dtype and out.shape == args[0].shape
        assert torch.equal(out, residual(module.reference)(*cast))
        (updated, modulated), used = compiled_with_ops(fused(module.gated_residual_rmsnorm_modulate), *cast)
        assert used and updated.shape == modulated.shape == args[0].shape and modulated.dtype == dtype
        for ours, expected in zip((updated, modulated), fused(module.fused_reference)(*cast)):
            assert torch.equal(ours, expected)


def test_in_place_op_under_compile():
    x, y, _, modulation = residual_args(tokens=5, width=24)
    gate = modulation.chunk(6, -1)[2]

    def step(x, gate, y):
        torch.ops.pid_cuda.gated_residual_(x, gate.expand(x.shape), y)
        return x * 2

    expected = module.reference(x, gate, y) * 2
    out, used = compiled_with_ops(step, x.clone(), gate, y)
    assert used and torch.equal(out, expected)


# (batch, tokens, width, per-token gate): MM-DiT rows (16-byte path), widths that are not a
# multiple of 8 (element path), PiT pixels after the expand GEMM (per-pixel gate, one
# thread per pixel), and the widest fp32 row (block reduction in the fusion).
GPU_CASES = {
    "mmdit_c256": (2, 37, 256, False),
    "mmdit_c1536": (2, 19, 1536, False),
    "scalar_c100": (2, 33, 100, False),
    "scalar_c5": (2, 45, 5, False),
    "pit_pixels": (7, 37, 16, True),
    "wide_c4096": (2, 5, 4096, False),
}


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES)
def test_kernels_within_eager_error(case):
    batch, tokens, width, per_token = GPU_CASES[case]
    args = residual_args(batch, tokens, width, per_token, device="cuda", seed=len(case))
    x, y, weight, modulation = args
    shift, scale, gate = modulation.chunk(6, -1)[3:]
    assert module.supports(x, gate, y) == [] and module.fused_supports(x, gate, y, weight, shift, scale) == []
    for dtype in DTYPES:
        assert_within_eager_error(maybe_compiled(residual(module.gated_residual)), residual(module.reference), args,
                                  dtype, f"{case} gated_residual")
        assert_within_eager_error(in_place, residual(module.reference), args, dtype, f"{case} gated_residual_")
        assert_within_eager_error(maybe_compiled(fused(module.gated_residual_rmsnorm_modulate)),
                                  fused(module.fused_reference), args, dtype, f"{case} fused")


@pytest.mark.gpu
def test_seams_run_fused_in_strict_mode():
    args = residual_args(2, 9, 40, device="cuda")
    pid_kernels.enable(["gated_residual", "gated_residual_rmsnorm_modulate"], strict=True)  # refusals raise
    try:
        for dtype in DTYPES:
            assert_within_eager_error(residual(seams.gated_residual), residual(module.reference), args, dtype, "seam")
            assert_within_eager_error(fused(seams.gated_residual_rmsnorm_modulate), fused(module.fused_reference),
                                      args, dtype, "fused seam")
    finally:
        pid_kernels.disable(["gated_residual", "gated_residual_rmsnorm_modulate"])
