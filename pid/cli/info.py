"""`pid info`: what this machine has and which accelerated paths can run here, and why not."""

from __future__ import annotations

import importlib
import os
import platform

import torch

import pid


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except ImportError:
        return "not installed"


def gpu_lines() -> list[str]:
    if not torch.cuda.is_available():
        return ["GPU: none visible to torch (CUDA available: False)"]
    lines = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        lines.append(
            f"GPU {index}: {props.name}, sm_{props.major}{props.minor}, {props.total_memory / 2**30:.1f} GiB, "
            f"{props.multi_processor_count} SMs"
        )
    try:
        import pynvml

        pynvml.nvmlInit()
        lines.append(f"driver: {pynvml.nvmlSystemGetDriverVersion()}")
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            clock = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM)
            power = pynvml.nvmlDeviceGetPowerManagementLimit(handle) / 1000
            lines.append(f"GPU {index} (NVML): max SM clock {clock} MHz, power limit {power:.0f} W")
    except ImportError:
        lines.append("NVML: nvidia-ml-py not installed (pip install nvidia-ml-py for clocks and power)")
    except Exception as error:  # NVML reports driver problems through many exception types
        lines.append(f"NVML: unavailable ({error})")
    return lines


def accelerated_path_lines() -> list[str]:
    import pid_kernels

    lines = []
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for name in sorted(pid_kernels.REGISTRY):
        choice = pid_kernels.choose(name, device, build=False)  # report only: never a JIT build
        op = choice.op
        reasons = op.device_reasons(device, build=False)
        state = "usable" if not reasons else "not usable: " + "; ".join(reasons)
        lines.append(f"  {name:<32} {op.backend:<7} -> pid.seams.{op.seam}: {state}")
        if choice.why:  # an op with several backends
            lines.append(f"  {'':<32} backend {op.backend}: {choice.why}")
    for name, reason in sorted(pid_kernels.UNAVAILABLE.items()):
        lines.append(f"  {name:<32} not importable: {reason}")
    if not lines:
        lines.append("  (no fused ops registered)")
    from pid_kernels.cuda.loader import status

    lines.append(f"  CUDA extension: {status()}")
    return lines


def report() -> str:
    lines = [
        f"pid-kernels {pid.__version__}",
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}), triton {_version('triton')}, "
        f"numpy {_version('numpy')}, safetensors {_version('safetensors')}",
        *gpu_lines(),
        f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')!r} PID_FORCE_TRITON={os.environ.get('PID_FORCE_TRITON', '')!r}",
        "accelerated paths:",
        *accelerated_path_lines(),
    ]
    return "\n".join(lines)
