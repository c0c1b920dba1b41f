"""Measurements of `pid bench`: CUDA-event timing, the matmul ceiling, memory, PSNR, stages.

Self-contained (an installed `pid bench` cannot import benchmarks/common.py); the
timing and ceiling follow the same method: CUDA events, medians, a bf16 8192³
matmul measured in the same run.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from pid.model.network import PiDNet

MATMUL_SIZE = 8192
GIB = 2**30


def psnr(images: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of images against reference (both in [-1, 1], so data_range 2); inf if equal."""
    if images.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(images.shape)} vs {tuple(reference.shape)}")
    mse = (images.double().cpu() - reference.double().cpu()).pow(2).mean().item()
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def time_calls(fn: Callable[[], torch.Tensor], device: torch.device, warmup: int, runs: int):
    """(per-run milliseconds, last output): CUDA events on a GPU, a host clock on the CPU."""
    for _ in range(warmup):
        fn()
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.cuda.synchronize(device)
    times, output = [], None
    for _ in range(runs):
        if on_gpu:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            output = fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            output = fn()
            times.append((time.perf_counter() - began) * 1e3)
    return times, output


def measure_matmul_tflops(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """The measured rate of one large matmul (bf16 8192³ on a GPU; a small one on the CPU)."""
    size, runs = (MATMUL_SIZE, 20) if device.type == "cuda" else (512, 3)
    dtype = dtype if device.type == "cuda" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator).to(dtype)
    b = torch.randn(size, size, device=device, generator=generator).to(dtype)
    times, _ = time_calls(lambda: a @ b, device, warmup=3, runs=runs)
    return 2 * size**3 / statistics.median(times) / 1e9, f"{str(dtype).replace('torch.', '')} {size}^3 matmul"


def nvml_used_bytes(device: torch.device):
    """(bytes, 'process' | 'device') from NVML, or (None, None) without nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
        props = torch.cuda.get_device_properties(device)
        bus_id = f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
        handle = pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)
        for process in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if process.pid == os.getpid() and process.usedGpuMemory:
                return process.usedGpuMemory, "process"
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used, "device"
    except Exception:  # optional: not installed, or not permitted in a container
        return None, None


class _Ranges:
    """Wraps callables in torch.profiler.record_function ranges, and undoes it."""

    def __init__(self):
        self._restore = []

    def wrap(self, owner, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        had_own = attribute in vars(owner)

        def wrapped(*args, **kwargs):
            with torch.profiler.record_function(label):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)
        self._restore.append((owner, attribute, had_own, original))

    def undo(self) -> None:
        for owner, attribute, had_own, original in reversed(self._restore):
            if had_own:
                setattr(owner, attribute, original)
            else:
                delattr(owner, attribute)
        self._restore.clear()


def profile_stages(net: PiDNet, fn: Callable[[], torch.Tensor], device: torch.device, letter: str) -> dict:
    """Milliseconds per stage of one decode: device time of the kernels launched inside
    each range on a GPU (host time on the CPU). (a) gets every stage; (b), (c) adapter and
    sampler (their blocks run inside compiled code); (d) only the total (a graph replay)."""
    ranges = _Ranges()
    if letter != "d":
        ranges.wrap(net, "prepare", "adapter")
        ranges.wrap(net, "timestep_conditioning", "adapter")
        ranges.wrap(net, "pixel_features", "network")
    if letter == "a":
        for module in [*net.patch_blocks, *net.lq_proj.gate_modules]:
            ranges.wrap(module, "forward", "patch blocks")
        for module in net.pixel_blocks:
            ranges.wrap(module, "forward", "pixel blocks")
    on_gpu = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_gpu else [])
    try:
        with torch.profiler.profile(activities=activities) as prof:
            with torch.profiler.record_function("decode"):
                fn()
            if on_gpu:
                torch.cuda.synchronize(device)
    finally:
        ranges.undo()
    labels = {"adapter", "network", "patch blocks", "pixel blocks", "decode"}
    totals: dict[str, float] = {}
    for event in prof.events():  # host-side range events only (no double count of GPU annotations)
        if event.name in labels and event.device_type == torch.autograd.DeviceType.CPU:
            micros = getattr(event, "device_time_total", event.cuda_time_total) if on_gpu else event.cpu_time_total
            totals[event.name] = totals.get(event.name, 0.0) + micros / 1e3
    stages = {"total": totals.get("decode")}
    if letter != "d":
        stages["adapter"] = totals.get("adapter", 0.0)
        stages["sampler"] = stages["total"] - stages["adapter"] - totals.get("network", 0.0)
    if letter == "a":
        stages["patch_blocks"] = totals.get("patch blocks")
        stages["pixel_blocks"] = totals.get("pixel blocks")
    return stages


__all__ = ["GIB", "measure_matmul_tflops", "nvml_used_bytes", "profile_stages", "psnr", "time_calls"]
