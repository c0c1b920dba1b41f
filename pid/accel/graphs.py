"""Whole-decode CUDA graphs: the 4-step decode of one input geometry captured once, replayed.

A graph is keyed by everything that fixes its kernels and buffers: batch, image
size, caption length (bucketed when a caption mask makes padding exact), whether a
mask is used, step count, device, the compute dtype, whether the gates' latent half
is precomputed, the set of fused ops in effect and the set of those that failed on
this machine (they run the reference instead). A new key captures a new graph
(re-capture triggers are exactly those); all graphs share one memory pool.

The Decoder hands in what a capture needs (its validated inputs, its `sample` loop
and its network's device, dtype and switches), so this module imports nothing of
the sampler.

Inputs are copied into static buffers before each replay. Noise is drawn inside
the graph from a registered generator that is re-seeded before every replay, so
each replay draws fresh noise from its seed and the same seed gives the same
image, bit for bit, as an eager decode with that seed.

`GraphBackend` hides torch.cuda.CUDAGraph so the capture/replay plumbing can be
tested on CPU with `EagerBackend`, which records the body and runs it at replay.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

# Caption lengths graphs are captured for when a caption mask lets us pad exactly.
CAPTION_BUCKETS = (32, 64, 128, 256, 300)
WARMUP_RUNS = 2


def caption_bucket(length: int, has_mask: bool) -> int:
    """The padded caption length of a graph. Without a mask, padding would change what
    every query attends to, so the length is kept as is."""
    if not has_mask:
        return length
    return next((bucket for bucket in CAPTION_BUCKETS if bucket >= length), length)


@dataclass(frozen=True)
class GraphKey:
    batch: int
    image_hw: tuple[int, int]
    caption_len: int
    caption_dim: int
    has_mask: bool
    steps: int
    device: str
    dtype: str
    precompute_gate_lq: bool
    fused_ops: tuple[str, ...]
    failed_ops: tuple[str, ...]


class CudaBackend:
    """Captures with torch.cuda.CUDAGraph, warming up on a side stream first."""

    def __init__(self, device: torch.device):
        self.device = device
        self.pool = torch.cuda.graph_pool_handle()

    def new_generator(self) -> torch.Generator:
        return torch.Generator(device=self.device)

    def capture(self, body: Callable[[], torch.Tensor], generator: torch.Generator):
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(generator)
        with torch.cuda.graph(graph, pool=self.pool):
            output = body()
        return graph.replay, output


class EagerBackend:
    """A stand-in for CPU tests: `capture` runs the body once for its output buffer;
    replay runs it again and copies into that buffer, as a graph replay would."""

    def __init__(self, device: torch.device):
        self.device = device
        self.captures = 0

    def new_generator(self) -> torch.Generator:
        return torch.Generator(device=self.device)

    def capture(self, body: Callable[[], torch.Tensor], generator: torch.Generator):
        self.captures += 1
        output = body()
        return (lambda: output.copy_(body())), output


class _CapturedDecode:
    def __init__(self, inputs, key: GraphKey, t_list: torch.Tensor, sample: Callable, backend):
        device = inputs.latent.device
        batch = key.batch
        # float32 buffers: every call's inputs are copied in without rounding.
        self.latent = torch.zeros(inputs.latent.shape, device=device)
        self.sigma = torch.zeros(batch, device=device)
        self.captions = torch.zeros(batch, key.caption_len, key.caption_dim, device=device)
        self.mask = torch.zeros(batch, key.caption_len, device=device) if key.has_mask else None
        self.generator = backend.new_generator()
        t_list = t_list.to(device)  # host-to-device copies cannot happen inside a capture
        static = dataclasses.replace(
            inputs, latent=self.latent, sigma=self.sigma, captions=self.captions, caption_mask=self.mask
        )
        shape = static.noise_shape

        def body():
            draw = lambda _index: torch.randn(shape, generator=self.generator, device=device)  # noqa: E731
            return sample(static, t_list, draw)

        self.replay, self.output = backend.capture(body, self.generator)

    def run(self, inputs, seed: int) -> torch.Tensor:
        self.latent.copy_(inputs.latent)
        self.sigma.copy_(inputs.sigma)
        length = inputs.captions.shape[1]
        self.captions.zero_()[:, :length].copy_(inputs.captions)
        if self.mask is not None:
            self.mask.zero_()[:, :length].copy_(inputs.caption_mask)
        self.generator.manual_seed(seed)
        self.replay()
        return self.output.clone()


class DecodeGraphs:
    """The graphs of one Decoder, one per GraphKey. `fused_ops()` and `failed_ops()` name
    the fused ops in effect and those that failed (pid.compile passes pid_kernels' lists)."""

    def __init__(
        self,
        backend=None,
        fused_ops: Callable[[], list[str]] = lambda: [],
        failed_ops: Callable[[], list[str]] = lambda: [],
    ):
        self.backend = backend
        self.fused_ops = fused_ops
        self.failed_ops = failed_ops
        self.graphs: dict[GraphKey, _CapturedDecode] = {}
        self.failures: dict[GraphKey, str] = {}

    def key(self, net, inputs, steps: int) -> GraphKey:
        """The key of a decode of `inputs` (validated DecodeInputs) by `net` in `steps` steps."""
        has_mask = inputs.caption_mask is not None
        return GraphKey(
            batch=inputs.batch,
            image_hw=tuple(inputs.image_hw),
            caption_len=caption_bucket(inputs.captions.shape[1], has_mask),
            caption_dim=inputs.captions.shape[2],
            has_mask=has_mask,
            steps=steps,
            device=str(net.device),
            dtype=str(net.dtype),
            precompute_gate_lq=bool(net.precompute_gate_lq),
            fused_ops=tuple(sorted(self.fused_ops())),
            failed_ops=tuple(sorted(self.failed_ops())),
        )

    def run(self, net, inputs, t_list: torch.Tensor, seed: int, sample: Callable) -> Optional[torch.Tensor]:
        """The decode replayed from this input's graph, where `sample(inputs, t_list, draw)` is
        the Decoder's sampling loop; None when it cannot be captured (the reason is kept in
        `failures` and the caller decodes eagerly)."""
        key = self.key(net, inputs, len(t_list) - 1)
        if key in self.failures:
            return None
        if key not in self.graphs:
            self.backend = self.backend or CudaBackend(net.device)
            try:
                self.graphs[key] = _CapturedDecode(inputs, key, t_list, sample, self.backend)
            except RuntimeError as error:  # capture is new ground on every GPU/driver/torch combination
                self.failures[key] = f"{type(error).__name__}: {error}"
                warnings.warn(f"CUDA graph capture failed, decoding eagerly: {self.failures[key]}")
                return None
        return self.graphs[key].run(inputs, seed)

    def clear(self) -> None:
        """Drop every graph (after weights change in place, for instance)."""
        self.graphs.clear()
        self.failures.clear()


def graph_reasons(device: torch.device) -> list[str]:
    """Why whole-decode CUDA graphs cannot be used on `device` (empty: they can)."""
    if device.type != "cuda":
        return [f"{device.type} device (CUDA graphs need a CUDA GPU)"]
    return []


__all__ = ["CAPTION_BUCKETS", "DecodeGraphs", "EagerBackend", "GraphKey", "caption_bucket", "graph_reasons"]

