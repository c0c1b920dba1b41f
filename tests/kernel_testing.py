"""Shared checks for fused ops: tolerance from PyTorch's own low-precision error.

The rule (per op, per dtype) is `pid.bench.accuracy`'s, which the GPU correctness
stage of scripts/device_check.sh applies too: against a float64 evaluation of the
reference, at most FACTOR x the eager reference's error in the same dtype plus a
few units in the last place.

PID_TEST_COMPILE=1 reruns the op tests through torch.compile(fullgraph=True).
`with_dtypes` parametrizes a test over DTYPES with ids that name them;
`fused_decode_calls` is the tiny-model decode check every op test runs;
`compiled_with_ops` compiles a function and lists the custom ops in its graph.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import pytest
import torch
from torch._dynamo.backends.debugging import aot_eager

import pid
import pid_kernels
from pid.bench.accuracy import FACTOR, ULP_FLOOR, cast_floats, error_bound, max_error, outputs
from pid_kernels.runtime import FLOAT_DTYPES, dtype_name

DTYPES = FLOAT_DTYPES
# A tiny-model decode through fused ops vs the reference decode, both float32.
DECODE_TOLERANCE = {torch.float32: dict(rtol=1e-4, atol=1e-4)}
# Compiled on a GPU where there is one, else run by the Triton interpreter on CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

with_dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)


def compile_requested() -> bool:
    return os.environ.get("PID_TEST_COMPILE") == "1"


def maybe_compiled(fn: Callable) -> Callable:
    """fn, or torch.compile(fn, fullgraph=True) under PID_TEST_COMPILE=1 (graph breaks fail)."""
    if not compile_requested():
        return fn
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="aot_eager" if not torch.cuda.is_available() else "inductor")


def compiled_with_ops(fn: Callable, *args, namespace: str = "pid_cuda"):
    """fn(*args) through torch.compile(fullgraph=True, aot_eager), and the `namespace` ops in its graph."""
    torch._dynamo.reset()
    targets = []

    def backend(graph_module, example_inputs):
        targets.extend(str(node.target) for node in graph_module.graph.nodes if node.op == "call_function")
        return aot_eager(graph_module, example_inputs)

    result = torch.compile(fn, fullgraph=True, backend=backend)(*args)
    return result, [target for target in targets if namespace in target]


def fused_decode_calls(net, inputs: Sequence, names: Sequence[str], **decode_kwargs) -> dict[str, int]:
    """Decode `inputs` (latent, sigma, captions) with the ops `names` enabled strictly (a refusal
    raises) and check it against the reference decode within DECODE_TOLERANCE (float32).
    Returns how many times each op ran fused."""
    decode_kwargs = {"seed": 3, "steps": 2, **decode_kwargs}
    expected = pid.Decoder(net).decode(*inputs, **decode_kwargs)
    pid_kernels.enable(names, strict=True)
    try:
        before = {name: pid_kernels.CALLS[name]["fused"] for name in names}
        ours = pid.Decoder(net).decode(*inputs, **decode_kwargs)
        calls = {name: pid_kernels.CALLS[name]["fused"] - before[name] for name in names}
    finally:
        pid_kernels.disable(names)
    torch.testing.assert_close(ours, expected, **DECODE_TOLERANCE[torch.float32])
    return calls


def assert_within_eager_error(
    fused: Callable, reference: Callable, args: Sequence, dtype: torch.dtype, what: str = ""
) -> None:
    """Check fused(*args in dtype) against reference(*args in float64), scaled by eager's error."""
    truth = outputs(reference(*cast_floats(args, torch.float64)))
    eager = outputs(reference(*cast_floats(args, dtype)))
    ours = outputs(fused(*cast_floats(args, dtype)))
    assert len(ours) == len(truth), f"{what}: {len(ours)} outputs, expected {len(truth)}"
    for index, (o, e, t) in enumerate(zip(ours, eager, truth)):
        assert o.shape == t.shape, f"{what}[{index}]: shape {tuple(o.shape)} != {tuple(t.shape)}"
        if not t.is_floating_point():
            assert torch.equal(o, e), f"{what}[{index}]: integer outputs differ from eager"
            continue
        eager_error = max_error(e, t)
        bound = error_bound(eager_error, t, dtype)
        error = max_error(o, t)
        assert error <= bound, (
            f"{what}[{index}] {dtype}: max error {error:.3e} > {bound:.3e} "
            f"(= {FACTOR} x eager {eager_error:.3e} + {ULP_FLOOR[dtype]} ulp)"
        )


def residual_args(batch=2, tokens=37, width=64, per_token=False, device="cpu", seed=0):
    """The gated residual ops' inputs: x, y [B, L, C], norm weight [C] and the [B, 1 or L, 6C]
    modulation (chunked by the callers after any dtype cast, so views keep their strides)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    x, y = (torch.randn(batch, tokens, width, generator=gen, device=device) for _ in range(2))
    weight = torch.rand(width, generator=gen, device=device) + 0.5
    modulation = torch.randn(batch, tokens if per_token else 1, 6 * width, generator=gen, device=device)
    return [x, y, weight, modulation]


# GPU cases of the row ops (rmsnorm_modulate, gated_residual and their fusion), (batch, tokens,
# width, per-token modulation): MM-DiT rows (16-byte path), widths that are not a multiple of 8
# (element path), PiT pixels (one thread per pixel), and the widest fp32 row (block reduction).
ROW_GPU_CASES = {
    "mmdit_c256": (2, 37, 256, False),
    "mmdit_c1536": (2, 19, 1536, False),
    "scalar_c100": (2, 33, 100, False),
    "scalar_c5": (2, 45, 5, False),
    "scalar_c3": (2, 45, 3, False),
    "pit_pixels": (7, 37, 16, True),
    "wide_c4096": (2, 5, 4096, False),
}


def mlp_args(tokens=7, pixels_per_patch=37, misaligned=False, device="cpu", seed=0, width=16):
    """pit_pixel_mlp's inputs: pixels storage (flat, with a one-element offset when misaligned),
    the [N, P2, 6 * width] modulation and the weights: norm [width], fc1 [4 * width, width] + bias,
    fc2 [width, 4 * width] + bias (the release's width is 16)."""
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=gen, device=device) * scale

    hidden = 4 * width
    pixels = randn(tokens * pixels_per_patch * width + int(misaligned))
    modulation = randn(tokens, pixels_per_patch, 6 * width)
    weights = [torch.rand(width, generator=gen, device=device) + 0.5, randn(hidden, width, scale=width**-0.5),
               randn(hidden), randn(width, hidden, scale=hidden**-0.5), randn(width)]
    return [pixels, modulation, *weights]


def per_pixel(fn: Callable) -> Callable:
    """fn called with the seam's arguments built from mlp_args after any dtype cast, so the
    modulation's views keep their strides."""

    def call(storage, modulation, norm_weight, fc1_weight, fc1_bias, fc2_weight, fc2_bias):
        tokens, pixels_per_patch, _ = modulation.shape
        width = norm_weight.shape[0]
        pixels = storage[storage.numel() % width:].view(tokens, pixels_per_patch, width)
        shift, scale, gate = modulation.chunk(6, -1)[3:]
        return fn(pixels, norm_weight, shift, scale, gate, fc1_weight, fc1_bias, fc2_weight, fc2_bias)

    return call


def mlp_seam_args(args: Sequence) -> list:
    """The seam's arguments from mlp_args (aligned pixels), as a list to edit."""
    return per_pixel(lambda *seam_args: list(seam_args))(*args)
