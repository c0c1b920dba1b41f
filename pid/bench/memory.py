"""A live-bytes tracker: peak tensor memory of any PyTorch code, without the device it targets.

`LiveBytes` is a TorchDispatchMode that sees every tensor an op creates: a storage no input
of the op owns is a new allocation, counted at its `nbytes()` until a weakref finalizer on
the storage says it was freed. Run on the meta device, nothing is allocated and a 4096²
decode traces in seconds; run on real tensors, the same counts can be checked against the
allocator (tests/pid/bench/test_memory.py). What it cannot see: workspaces an op allocates
and frees inside itself (cuBLAS, cuDNN), the caching allocator's rounding and fragmentation,
and the CUDA context; a GPU's `max_memory_allocated` is a little higher for those.

On meta, `F.scaled_dot_product_attention` would run its math fallback (an N x N score matrix
in float32). `fused_attention()` models the kernel a GPU runs instead (flash): the output in
[B, N, H, D] memory and a float32 log-sum-exp [B, H, N], nothing quadratic.

`Autocast` emulates CUDA bfloat16 autocast for code that runs under it (the official
network): a torch function mode casts the inputs of matmul-class ops to bfloat16 and of
precision-sensitive ops to float32, and keeps the bfloat16 copies of parameters for the
autocast region, as autocast's weight-cast cache does (autocast itself only acts on CUDA
and CPU tensors, never on meta ones). Its casts run inside LiveBytes, which counts them.

This module imports nothing of `pid` but itself: the official runner loads it by path in a
process where `import pid` is the official package.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves, tree_map

GIB = 1024**3
MIB = 1024**2
# Allocations at least this large record the Python frame that made them (walking frames is
# the tracker's only non-trivial cost).
FRAME_MIN_BYTES = MIB
_THIS_FILE = os.path.abspath(__file__)
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


@dataclass(frozen=True)
class Allocation:
    """One live storage: its size and where it came from."""

    nbytes: int
    op: str  # the aten op that created it, e.g. "aten.addmm.default"
    shape: tuple
    dtype: str
    frame: str  # "file:line (function)" of the innermost non-torch caller, or ""

    def describe(self) -> str:
        shape = "x".join(map(str, self.shape))
        return f"{self.nbytes / MIB:9.1f} MiB  [{shape}] {self.dtype}  {self.op}  {self.frame}"


def _caller_frame() -> str:
    """The innermost Python frame outside torch and this file."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if filename != _THIS_FILE and not filename.startswith(_TORCH_DIR):
            short = os.path.relpath(filename) if filename.startswith(os.getcwd()) else os.path.basename(filename)
            return f"{short}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return ""


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages created inside the mode while they are alive.

    `current` and `peak` are bytes; `at_peak` lists the live allocations at the peak, largest
    first. Storages created before the mode (weights) are never counted.
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self.allocations = 0
        self._live: dict[int, Allocation] = {}
        self._peak_live: dict[int, Allocation] = {}

    # ---- counting ---------------------------------------------------------------------------
    def _freed(self, key: int) -> None:
        allocation = self._live.pop(key, None)
        if allocation is not None:
            self.current -= allocation.nbytes

    def _record(self, tensor: torch.Tensor, op: str, inputs: set) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)  # storages keep one Python object while alive, so the id is stable
        if key in inputs or key in self._live:
            return  # a view of an input, an in-place result, or a second output on one storage
        nbytes = storage.nbytes()
        frame = _caller_frame() if nbytes >= FRAME_MIN_BYTES else ""
        self._live[key] = Allocation(nbytes, op, tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""), frame)
        weakref.finalize(storage, self._freed, key)
        self.current += nbytes
        self.allocations += 1
        if self.current > self.peak:
            self.peak = self.current
            self._peak_live = dict(self._live)

    def at_peak(self, top: Optional[int] = None) -> list[Allocation]:
        ordered = sorted(self._peak_live.values(), key=lambda allocation: -allocation.nbytes)
        return ordered if top is None else ordered[:top]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = _storage_ids((args, kwargs))
        out = func(*args, **kwargs)
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._record(tensor, str(func), inputs)
        return out


def _storage_ids(tree) -> set:
    return {id(t.untyped_storage()) for t in tree_leaves(tree) if isinstance(t, torch.Tensor)}


# ---- attention as a fused kernel -------------------------------------------------------------


def _flash_attention_model(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                           enable_gqa=False):
    """What a flash kernel allocates: out [B, N, H, Dv] (returned as [B, H, N, Dv]) and a float32
    log-sum-exp [B, H, N] that the caller drops. Values are not computed (meta tensors only)."""
    *lead, heads, length, _ = query.shape
    out = torch.empty(*lead, length, heads, value.shape[-1], dtype=query.dtype, device=query.device)
    torch.empty(*lead, heads, length, dtype=torch.float32, device=query.device)
    return out.transpose(-3, -2)


@contextlib.contextmanager
def fused_attention(autocast: Optional["Autocast"] = None):
    """Within the block, scaled_dot_product_attention on meta tensors allocates what a fused GPU
    kernel does (real tensors still run the real op). With `autocast`, its inputs are cast to
    the autocast dtype first, as CUDA autocast does for SDPA."""
    original = F.scaled_dot_product_attention

    def attention(query, key, value, *args, **kwargs):
        if not query.is_meta:
            return original(query, key, value, *args, **kwargs)
        if autocast is not None and autocast.enabled:
            query, key, value = (autocast.lower(t) for t in (query, key, value))
        return _flash_attention_model(query, key, value, *args, **kwargs)

    F.scaled_dot_product_attention = attention
    torch.nn.functional.scaled_dot_product_attention = attention
    patched_modules = [m for m in list(sys.modules.values())
                       if getattr(m, "scaled_dot_product_attention", None) is original and m is not F]
    for module in patched_modules:  # `from torch.nn.functional import scaled_dot_product_attention`
        module.scaled_dot_product_attention = attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        for module in patched_modules:
            module.scaled_dot_product_attention = original


# ---- CUDA autocast, emulated -------------------------------------------------------------------

# CUDA autocast's op lists (aten/src/ATen/autocast_mode.cpp), by the name a torch function mode
# sees (functions and Tensor methods).
_LOWER_PRECISION = {
    "linear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "baddbmm", "addbmm", "addmv", "mv", "addr",
    "einsum", "chain_matmul", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "prelu",
}
_FLOAT32 = {
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow", "__pow__", "__rpow__", "softplus", "layer_norm", "group_norm", "norm", "cdist",
    "renorm", "logsumexp", "cosine_similarity",
}
# Float32 ops autocast runs by passing dtype=float32 (no float32 copy of the input).
_FLOAT32_OUTPUT = {"softmax", "log_softmax", "cumsum", "cumprod", "sum", "prod"}


class Autocast(TorchFunctionMode):
    """CUDA-style bfloat16 autocast for a LiveBytes trace. Use it where the code says
    `torch.autocast("cuda", dtype=..., enabled=...)` (the official loop enters it once per step):
    matmul-class inputs are cast to the low dtype, precision-sensitive ones to float32, and the
    low-dtype copies of parameters are kept until the region exits, as autocast's cache does."""

    def __init__(self, parameters, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.dtype = dtype
        self.enabled = False
        self._requested = True
        self._parameter_storages = {id(p.untyped_storage()) for p in parameters}
        self._cache: dict = {}  # (storage id, offset, shape, stride) -> low-dtype copy

    def __call__(self, device_type: str = "cuda", dtype=None, enabled: bool = True, **_):
        self._requested = enabled
        return self

    def __enter__(self):
        self.enabled = self._requested
        return super().__enter__() if self.enabled else self

    def __exit__(self, *exc):
        was_enabled, self.enabled = self.enabled, False
        self._cache.clear()  # autocast drops its cached weight casts when the region exits
        return super().__exit__(*exc) if was_enabled else False

    def lower(self, tensor):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.float32:
            return tensor
        key = (id(tensor.untyped_storage()), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        if key[0] not in self._parameter_storages:
            return tensor.to(self.dtype)
        if key not in self._cache:
            self._cache[key] = tensor.to(self.dtype)
        return self._cache[key]

    @staticmethod
    def _raise(tensor):
        if isinstance(tensor, torch.Tensor) and tensor.dtype in (torch.bfloat16, torch.float16):
            return tensor.float()
        return tensor

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in _LOWER_PRECISION:
            args, kwargs = tree_map(self.lower, (args, kwargs))
        elif name in _FLOAT32:
            args, kwargs = tree_map(self._raise, (args, kwargs))
        elif name in _FLOAT32_OUTPUT and args and isinstance(args[0], torch.Tensor) and args[0].dtype in (
            torch.bfloat16, torch.float16
        ) and kwargs.get("dtype") is None:
            kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (a model's weights: parameters and buffers)."""
    seen = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        seen[id(storage)] = storage.nbytes()
    return sum(seen.values())


__all__ = ["Allocation", "Autocast", "GIB", "LiveBytes", "MIB", "fused_attention", "storage_bytes"]
