"""`pid demo`: the whole decode pipeline of a released architecture on seeded random weights.

No checkpoint is needed, so the demo runs on a fresh machine; the image it writes
is what random weights produce (structured noise), not a real decode. It shows
that every stage runs on this device at a realistic size and how long each takes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from pid.bench.timing import StageTimer
from pid.configs import DEFAULT_CHECKPOINT, released_config
from pid.io.images import to_pil
from pid.model.network import PiDNet, build_model
from pid.model.random_weights import randomize_
from pid.sampling.checks import as_device, default_dtype
from pid.sampling.distilled import Decoder
from pid.sampling.examples import example_inputs
from pid.sampling.geometry import geometry_from_config

# Output sizes: small enough for about a minute on 2 CPU cores, the paper's 2048² on a GPU.
CPU_IMAGE_SIZE = 256
GPU_IMAGE_SIZE = 2048


@dataclass
class DemoResult:
    image_path: Path
    image_hw: tuple[int, int]
    device: torch.device
    dtype: torch.dtype
    timer: StageTimer
    caption_tokens: int


def run_demo(
    out: Path,
    checkpoint: str = DEFAULT_CHECKPOINT,
    image_size: Optional[int] = None,
    device: Optional[str | torch.device] = None,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    """Build `checkpoint`'s architecture with random weights and decode seeded example inputs.

    image_size must be a multiple of the model's size step (ValueError names the nearest
    valid sizes; nothing is rounded). Default 2048 on a GPU, 256 on the CPU.
    """
    device = as_device(device)
    size = image_size or (GPU_IMAGE_SIZE if device.type == "cuda" else CPU_IMAGE_SIZE)
    config = released_config(checkpoint)
    geometry_from_config(config, label=checkpoint).check_image_hw(size, "size")  # before the expensive build
    dtype = default_dtype(device)
    timer = StageTimer(device=device)

    with timer.stage("build + random init"):
        with torch.device("meta"):
            net = build_model(config)
        net = randomize_(net.to_empty(device="cpu"), seed).to(device=device, dtype=dtype).eval()

    inputs = example_inputs(net, size, seed=seed + 1)
    images = Decoder(net).decode(*inputs, seed=seed, progress=progress, timer=timer)
    with timer.stage("write image"):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        to_pil(images)[0].save(out)
    return DemoResult(out, (size, size), device, dtype, timer, inputs.caption_embeds.shape[1])


def describe(result: DemoResult, checkpoint: str, seconds: float) -> str:
    return "\n".join(
        [
            f"PiD demo: architecture of {checkpoint} with SEEDED RANDOM WEIGHTS (no checkpoint loaded;",
            "the image is what random weights produce, not a real decode).",
            f"device {result.device} ({torch.cuda.get_device_name(result.device) if result.device.type == 'cuda' else 'CPU'}),"
            f" {str(result.dtype).replace('torch.', '')}, output {result.image_hw[0]}x{result.image_hw[1]},"
            f" 4 steps, {result.caption_tokens} caption tokens",
            "",
            result.timer.table(),
            "",
            f"wrote {result.image_path} in {seconds:.1f} s",
        ]
    )


def main(out: Path, checkpoint: str, image_size: Optional[int], device: Optional[str | torch.device], seed: int) -> str:
    start = time.perf_counter()
    result = run_demo(out, checkpoint, image_size, device, seed)
    return describe(result, checkpoint, time.perf_counter() - start)
