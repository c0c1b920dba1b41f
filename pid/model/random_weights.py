"""Seeded random weights for a PiD network: what `pid demo` and `pid bench` run without a checkpoint."""

from __future__ import annotations

import math

import torch

from pid.model.network import PiDNet


@torch.no_grad()
def randomize_(net: PiDNet, seed: int) -> PiDNet:
    """Seeded random float32 CPU weights that keep activations O(1): linear/conv weights
    of std 1/sqrt(fan_in), norms 1 +- 0.1, biases of std 0.02; gate biases and
    log_alpha as the release initialises them."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for name, param in net.named_parameters():
        if name.endswith("log_alpha"):
            mean, std = math.log(5.0), 0.0
        elif "norm" in name or name.endswith(("block.0.weight", "block.3.weight")):
            mean, std = 1.0, 0.1
        elif name.endswith("content_proj.bias"):
            mean, std = 2.0, 0.1
        elif name.endswith("bias") or param.dim() < 2:
            mean, std = 0.0, 0.02
        else:
            mean, std = 0.0, 1.0 / math.sqrt(param[0].numel())
        # Uniform draws with the wanted mean and std: 2.4x faster than normal_ on CPU.
        half_width = std * math.sqrt(3.0)
        param.uniform_(mean - half_width, mean + half_width, generator=generator)
    return net
