"""What every benchmark measures beside time: the device's ceilings, PSNR, per-stage time of a decode.

Ceilings are measured on random data in the same run (never datasheet numbers): a
device-to-device copy (bytes read + bytes written) and bf16 / fp8 matmuls at a size
that fills the chip, timed with `pid.bench.timing.time_calls` like everything else.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from pid.bench.profiling import Ranges, range_totals
from pid.bench.timing import time_calls

if TYPE_CHECKING:
    from pid.model.network import PiDNet

GIB = 2**30
MATMUL_SIZE = 8192  # fills an H100/H200/B200; 3 x 128 MiB of bf16 operands
COPY_BYTES = 1 << 30  # 8x the largest L2 (B200, 126 MB), so the copy streams from memory
# A dry run on the CPU: small probes (its numbers say nothing about a GPU).
DRY_MATMUL_SIZE = 128
DRY_COPY_BYTES = 4 << 20
CEILING_RUNS = 20


def psnr(images: torch.Tensor, reference: torch.Tensor, data_range: float = 2.0) -> float:
    """PSNR in dB of images against reference (both in [-1, 1], so data_range 2); inf if equal."""
    if images.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(images.shape)} vs {tuple(reference.shape)}")
    mse = (images.double().cpu() - reference.double().cpu()).pow(2).mean().item()
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _median_ms(fn: Callable[[], object], device: torch.device) -> float:
    return time_calls(fn, device, warmup=3, runs=CEILING_RUNS, sync_each=False)["median_ms"]


def _fp8_matmul(a: torch.Tensor, b: torch.Tensor) -> Callable[[], torch.Tensor]:
    """a @ b in float8 e4m3 with unit scales through torch._scaled_mm (raises where unsupported)."""
    a8 = a.to(torch.float8_e4m3fn)
    b8 = b.to(torch.float8_e4m3fn).t().contiguous().t()  # column-major second operand, as cuBLASLt wants
    one = torch.ones((), device=a.device)
    probe = lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
    probe()
    return probe


def measure_ceilings(device: torch.device | str) -> dict:
    """{"copy_gbps", "matmul_bf16_tflops", "matmul_fp8_tflops" (None where fp8 matmuls do not
    run), "fp8_note", "probe"}: a copy of COPY_BYTES and MATMUL_SIZE³ matmuls on random data
    (the small DRY_* probes on a CPU)."""
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    size, copy_bytes = (MATMUL_SIZE, COPY_BYTES) if on_gpu else (DRY_MATMUL_SIZE, DRY_COPY_BYTES)
    generator = torch.Generator(device=device).manual_seed(0)
    source = torch.randn(copy_bytes // 4, device=device, generator=generator)
    target = torch.empty_like(source)
    copy_ms = _median_ms(lambda: target.copy_(source), device)
    del source, target
    a = torch.randn(size, size, device=device, generator=generator)
    b = torch.randn(size, size, device=device, generator=generator)
    a16, b16 = a.bfloat16(), b.bfloat16()
    bf16_ms = _median_ms(lambda: a16 @ b16, device)
    fp8_tflops, fp8_note = None, ""
    try:
        fp8_tflops = 2 * size**3 / _median_ms(_fp8_matmul(a, b), device) / 1e9
    except (RuntimeError, AttributeError, TypeError) as error:  # no fp8 matmul on this device or build
        fp8_note = f"fp8 matmul not measured: {str(error).splitlines()[0][:160]}"
    return {
        "copy_gbps": 2 * copy_bytes / copy_ms / 1e6,
        "matmul_bf16_tflops": 2 * size**3 / bf16_ms / 1e9,
        "matmul_fp8_tflops": fp8_tflops,
        "fp8_note": fp8_note,
        "probe": f"copy {copy_bytes >> 20} MiB float32, matmul {size}^3",
    }


def profile_stages(net: PiDNet, fn: Callable[[], torch.Tensor], device: torch.device, letter: str) -> dict:
    """Milliseconds per stage of one decode: device time of the kernels launched inside
    each range on a GPU (host time on the CPU). (a) gets every stage; (b), (c) adapter and
    sampler (their blocks run inside compiled code); (d) only the total (a graph replay)."""
    ranges = Ranges()
    if letter != "d":
        ranges.wrap(net, "prepare", "adapter")
        ranges.wrap(net, "timestep_conditioning", "adapter")
        ranges.wrap(net, "pixel_features", "network")
    if letter == "a":
        for module in [*net.patch_blocks, *net.lq_proj.gate_modules]:
            ranges.wrap(module, "forward", "patch blocks")
        for module in net.pixel_blocks:
            ranges.wrap(module, "forward", "pixel blocks")
    totals = range_totals(fn, device, ranges, {"adapter", "network", "patch blocks", "pixel blocks"})
    stages = {"total": totals.get("decode")}
    if letter != "d":
        stages["adapter"] = totals.get("adapter", 0.0)
        stages["sampler"] = stages["total"] - stages["adapter"] - totals.get("network", 0.0)
    if letter == "a":
        stages["patch_blocks"] = totals.get("patch blocks")
        stages["pixel_blocks"] = totals.get("pixel blocks")
    return stages


__all__ = ["GIB", "MATMUL_SIZE", "measure_ceilings", "profile_stages", "psnr"]
