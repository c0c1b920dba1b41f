"""CUDA out-of-memory during a decode, turned into an error that says what to change."""

from __future__ import annotations

import re

import torch

GIB = 1024**3


class DecodeOutOfMemoryError(torch.OutOfMemoryError):
    """A decode that did not fit in device memory; still a torch.OutOfMemoryError for callers that catch it."""


def _requested(message: str) -> str:
    match = re.search(r"Tried to allocate ([0-9.]+ [KMGT]?i?B)", message)
    return match.group(1) if match else "an unknown amount"


def out_of_memory_error(
    error: BaseException, image_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> DecodeOutOfMemoryError:
    """The error to raise for `error`: batch, size, dtype, the memory in use and the failed request."""
    batch, _, height, width = image_shape
    memory = ""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / GIB
        total = torch.cuda.get_device_properties(device).total_memory / GIB
        memory = f"; peak allocated {peak:.2f} GiB of the device's {total:.1f} GiB"
    dtype_hint = "" if dtype == torch.bfloat16 else ", bfloat16 weights (dtype='bf16' halves float32's memory)"
    return DecodeOutOfMemoryError(
        f"out of memory on {device} decoding batch {batch} at {height}x{width} in "
        f"{str(dtype).replace('torch.', '')}: the failed request asked for {_requested(str(error))}{memory}. "
        f"Try a smaller batch (decode one image per call){dtype_hint}, or a smaller output size; "
        f"multi-GPU and tiled decoding are not implemented yet"
    )
