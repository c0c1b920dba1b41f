"""What the machine can run: Triton (on a GPU or under TRITON_INTERPRET=1), the CUDA extension."""

from __future__ import annotations

import os
from typing import Optional

import torch

from pid.accel.kernels import force_triton

try:  # Triton is optional: absent on macOS/Windows wheels, and then every op falls back.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1: Triton kernels run on CPU tensors, slowly, for testing."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_device_reasons(*tensors: Optional[torch.Tensor]) -> list[str]:
    """Why Triton cannot run on these tensors (empty list: it can)."""
    if triton is None:
        return ["triton is not installed"]
    for tensor in tensors:
        if tensor is not None:
            reasons = triton_reasons_on(tensor.device)
            if reasons:
                return reasons
    return []


def triton_reasons_on(device: torch.device) -> list[str]:
    """Why Triton cannot run on `device` (empty list: it can)."""
    if triton is None:
        return ["triton is not installed"]
    if device.type == "cpu" and not interpreting():
        return ["CPU tensor (Triton runs on CPU only under TRITON_INTERPRET=1)"]
    if device.type not in ("cpu", "cuda"):
        return [f"{device.type} tensors are not supported"]
    return []


# The dtypes every fused op computes in (float32 accumulation, one rounding to the input dtype).
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def dtype_name(dtype: torch.dtype) -> str:
    """"bfloat16" for torch.bfloat16: the name used in refusals and test ids."""
    return str(dtype).replace("torch.", "")


def dtype_reasons(allowed: tuple[torch.dtype, ...], *tensors: Optional[torch.Tensor]) -> list[str]:
    """Why these tensors' dtypes are refused (empty list: all are in `allowed`; None is skipped)."""
    for tensor in tensors:
        if tensor is not None and tensor.dtype not in allowed:
            names = ", ".join(dtype_name(d) for d in allowed)
            return [f"dtype {dtype_name(tensor.dtype)} (supported: {names})"]
    return []


def compute_capability(device: Optional[torch.device] = None) -> Optional[tuple[int, int]]:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(device)


def tuning_arch(device: Optional[torch.device] = None) -> str:
    """The tuning table to use: PID_TUNING_ARCH if set, else from the compute capability."""
    override = os.environ.get("PID_TUNING_ARCH")
    if override:
        return override
    capability = compute_capability(device)
    if capability is None:
        return "sm90"  # the interpreter ignores launch parameters; any table works
    major = capability[0]
    return {9: "sm90", 10: "sm100", 12: "sm120"}.get(major, "sm90")
