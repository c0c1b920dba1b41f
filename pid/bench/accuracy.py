"""The error rule of the fused ops, shared by the tests and the GPU correctness stage.

Against a float64 evaluation of the reference, a kernel's error may be at most FACTOR x
the error of the eager reference run in the same dtype, plus a floor of a few units in
the last place of that dtype (the Triton interpreter truncates fp32 -> bf16 casts; fp32
eager error can be 0). Errors are max |out - truth|; NaN never passes.
"""

from __future__ import annotations

from typing import Sequence

import torch

FACTOR = 2.0
# Units in the last place allowed on top of FACTOR x eager error, per dtype.
ULP_FLOOR = {torch.float32: 8, torch.float16: 2, torch.bfloat16: 2}


def cast_floats(args: Sequence, dtype: torch.dtype) -> list:
    """args with every floating tensor (also inside tuples and lists) cast to dtype."""

    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        if isinstance(value, (tuple, list)):
            return type(value)(cast(v) for v in value)
        return value

    return [cast(a) for a in args]


def outputs(result) -> list[torch.Tensor]:
    """The tensors of an op's result (a tensor, or a tuple whose None entries are dropped)."""
    if isinstance(result, torch.Tensor):
        return [result]
    return [r for r in result if isinstance(r, torch.Tensor)]


def max_error(out: torch.Tensor, truth: torch.Tensor) -> float:
    """max |out - truth| in float64 (nan if out holds a NaN)."""
    return (out.double() - truth.double()).abs().max().item()


def error_bound(eager_error: float, truth: torch.Tensor, dtype: torch.dtype) -> float:
    """The largest max |out - truth| the rule allows a kernel run in dtype."""
    ulp = torch.finfo(dtype).eps * truth.double().abs().max().item()
    return FACTOR * eager_error + ULP_FLOOR[dtype] * ulp


__all__ = ["FACTOR", "ULP_FLOOR", "cast_floats", "error_bound", "max_error", "outputs"]
