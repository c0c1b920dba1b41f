"""Per-stage device time from torch.profiler ranges placed from outside, and NVML memory.

Imports nothing of `pid` (only torch, and pynvml when present): the official runner
loads this file by path in a process where `import pid` is the official package.
"""

from __future__ import annotations

import os
from typing import Callable

import torch


class Ranges:
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


def range_totals(fn: Callable[[], object], device: torch.device, ranges: Ranges, labels: set[str]) -> dict[str, float]:
    """Milliseconds per label over one call of fn() under torch.profiler, plus "decode" for
    the whole call: the device time of the kernels launched inside each range on a GPU,
    host time on the CPU. `ranges` (already wrapped) is undone afterwards."""
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
    totals: dict[str, float] = {}
    for event in prof.events():  # host-side range events only (no double count of GPU annotations)
        if event.name in labels | {"decode"} and event.device_type == torch.autograd.DeviceType.CPU:
            micros = getattr(event, "device_time_total", event.cuda_time_total) if on_gpu else event.cpu_time_total
            totals[event.name] = totals.get(event.name, 0.0) + micros / 1e3
    return totals


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


__all__ = ["Ranges", "nvml_used_bytes", "range_totals"]
