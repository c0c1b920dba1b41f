"""Shared checks for fused ops: tolerance from PyTorch's own low-precision error.

The rule (per op, per dtype): against a float64 evaluation of the reference, our
kernel's error may be at most FACTOR x the error of the eager reference run in
the same dtype, plus a floor of a few units in the last place of that dtype
(the Triton interpreter truncates fp32 -> bf16 casts; fp32 eager error can be 0).

PID_TEST_COMPILE=1 reruns the op tests through torch.compile(fullgraph=True).
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch

FACTOR = 2.0
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Units in the last place allowed on top of FACTOR x eager error, per dtype.
ULP_FLOOR = {torch.float32: 8, torch.float16: 2, torch.bfloat16: 2}


def compile_requested() -> bool:
    return os.environ.get("PID_TEST_COMPILE") == "1"


def maybe_compiled(fn: Callable) -> Callable:
    """fn, or torch.compile(fn, fullgraph=True) under PID_TEST_COMPILE=1 (graph breaks fail)."""
    if not compile_requested():
        return fn
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="aot_eager" if not torch.cuda.is_available() else "inductor")


def _cast(args: Sequence, dtype: torch.dtype):
    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        if isinstance(value, (tuple, list)):
            return type(value)(cast(v) for v in value)
        return value

    return [cast(a) for a in args]


def _flat(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    return [r for r in result if isinstance(r, torch.Tensor)]


def assert_within_eager_error(
    fused: Callable, reference: Callable, args: Sequence, dtype: torch.dtype, what: str = ""
) -> None:
    """Check fused(*args in dtype) against reference(*args in float64), scaled by eager's error."""
    truth = _flat(reference(*_cast(args, torch.float64)))
    eager = _flat(reference(*_cast(args, dtype)))
    ours = _flat(fused(*_cast(args, dtype)))
    assert len(ours) == len(truth), f"{what}: {len(ours)} outputs, expected {len(truth)}"
    for index, (o, e, t) in enumerate(zip(ours, eager, truth)):
        assert o.shape == t.shape, f"{what}[{index}]: shape {tuple(o.shape)} != {tuple(t.shape)}"
        if not t.is_floating_point():
            assert torch.equal(o, e), f"{what}[{index}]: integer outputs differ from eager"
            continue
        eager_error = (e.double() - t).abs().max().item()
        ulp = torch.finfo(dtype).eps * t.abs().max().item()
        bound = FACTOR * eager_error + ULP_FLOOR[dtype] * ulp
        error = (o.double() - t).abs().max().item()
        assert error <= bound, (
            f"{what}[{index}] {dtype}: max error {error:.3e} > {bound:.3e} "
            f"(= {FACTOR} x eager {eager_error:.3e} + {ULP_FLOOR[dtype]} ulp)"
        )
