"""What the machine can run: Triton (on a GPU or under TRITON_INTERPRET=1), the CUDA extension."""

from __future__ import annotations

import os
from typing import Optional

import torch

try:  # Triton is optional: absent on macOS/Windows wheels, and then every op falls back.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None


def interpreting() -> bool:
    """True under TRITON_INTERPRET=1: Triton kernels run on CPU tensors, slowly, for testing."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def force_triton() -> bool:
    """PID_FORCE_TRITON=1: run every Triton op, and fail rather than fall back."""
    return os.environ.get("PID_FORCE_TRITON") == "1"


def triton_device_reasons(*tensors: Optional[torch.Tensor]) -> list[str]:
    """Why Triton cannot run on these tensors (empty list: it can)."""
    if triton is None:
        return ["triton is not installed"]
    reasons = []
    for tensor in tensors:
        if tensor is None:
            continue
        if tensor.device.type == "cpu" and not interpreting():
            reasons.append("CPU tensor (Triton runs on CPU only under TRITON_INTERPRET=1)")
            break
        if tensor.device.type not in ("cpu", "cuda"):
            reasons.append(f"{tensor.device.type} tensors are not supported")
            break
    return reasons


def dtype_reasons(allowed: tuple[torch.dtype, ...], *tensors: Optional[torch.Tensor]) -> list[str]:
    for tensor in tensors:
        if tensor is not None and tensor.dtype not in allowed:
            names = ", ".join(str(d).replace("torch.", "") for d in allowed)
            return [f"dtype {str(tensor.dtype).replace('torch.', '')} (supported: {names})"]
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
