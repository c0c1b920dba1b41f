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

from pid.configs import DEFAULT_CHECKPOINT, released_config
from pid.io.images import to_pil
from pid.model.network import build_model
from pid.model.random_weights import randomize_
from pid.sampling.distilled import Decoder
from pid.bench.timing import StageTimer

# Output sizes: small enough for about a minute on 2 CPU cores, the paper's 2048² on a GPU.
CPU_IMAGE_SIZE = 256
GPU_IMAGE_SIZE = 2048
CAPTION_TOKENS = 300  # the release always sends 300 caption tokens


@dataclass
class DemoResult:
    image_path: Path
    image_hw: tuple[int, int]
    device: torch.device
    dtype: torch.dtype
    timer: StageTimer


def run_demo(
    out: Path,
    checkpoint: str = DEFAULT_CHECKPOINT,
    image_size: Optional[int] = None,
    device: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    size = image_size or (GPU_IMAGE_SIZE if on_gpu else CPU_IMAGE_SIZE)
    # bf16 on a GPU as the release runs; fp32 on CPU, where bf16 matmuls are slow.
    dtype = torch.bfloat16 if on_gpu else torch.float32
    timer = StageTimer(device=device)

    with timer.stage("build + random init"):
        with torch.device("meta"):
            net = build_model(released_config(checkpoint))
        net = randomize_(net.to_empty(device="cpu"), seed).to(device=device, dtype=dtype).eval()

    generator = torch.Generator(device="cpu").manual_seed(seed + 1)
    channels, latent_h, latent_w = net.expected_latent_shape((size, size))
    latent = torch.randn(1, channels, latent_h, latent_w, generator=generator)
    captions = torch.randn(1, CAPTION_TOKENS, net.config["txt_embed_dim"], generator=generator)

    images = Decoder(net).decode(latent, 0.0, captions, seed=seed, progress=progress, timer=timer)
    with timer.stage("write image"):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        to_pil(images)[0].save(out)
    return DemoResult(out, (size, size), device, dtype, timer)


def describe(result: DemoResult, checkpoint: str, seconds: float) -> str:
    return "\n".join(
        [
            f"PiD demo: architecture of {checkpoint} with SEEDED RANDOM WEIGHTS (no checkpoint loaded;",
            "the image is what random weights produce, not a real decode).",
            f"device {result.device} ({torch.cuda.get_device_name(result.device) if result.device.type == 'cuda' else 'CPU'}),"
            f" {str(result.dtype).replace('torch.', '')}, output {result.image_hw[0]}x{result.image_hw[1]},"
            f" 4 steps, {CAPTION_TOKENS} caption tokens",
            "",
            result.timer.table(),
            "",
            f"wrote {result.image_path} in {seconds:.1f} s",
        ]
    )


def main(out: Path, checkpoint: str, image_size: Optional[int], device: Optional[str], seed: int) -> str:
    start = time.perf_counter()
    result = run_demo(out, checkpoint, image_size, device, seed)
    return describe(result, checkpoint, time.perf_counter() - start)
