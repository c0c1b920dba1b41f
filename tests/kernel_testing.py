"""Shared checks for fused ops: tolerance from PyTorch's own low-precision error.

The rule (per op, per dtype) is `pid.bench.accuracy`'s, which the GPU correctness
stage of scripts/device_check.sh applies too: against a float64 evaluation of the
reference, at most FACTOR x the eager reference's error in the same dtype plus a
few units in the last place.

PID_TEST_COMPILE=1 reruns the op tests through torch.compile(fullgraph=True).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch

from pid.bench.accuracy import FACTOR, ULP_FLOOR, cast_floats, error_bound, max_error, outputs

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def compile_requested() -> bool:
    return os.environ.get("PID_TEST_COMPILE") == "1"


def maybe_compiled(fn: Callable) -> Callable:
    """fn, or torch.compile(fn, fullgraph=True) under PID_TEST_COMPILE=1 (graph breaks fail)."""
    if not compile_requested():
        return fn
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="aot_eager" if not torch.cuda.is_available() else "inductor")


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
