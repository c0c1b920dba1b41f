"""Example decoder inputs for a network: something to decode without a generator or a text encoder.

`example_inputs(net, image_size)` returns a latent of the right shape for that output size,
a degradation sigma and caption embeddings of the model's caption length, all seeded
random values (so the image is structured noise, not a picture). Real latents come from a
generator's VAE (docs/latents.md); real captions from `pid.io.captions.CaptionEncoder`.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from pid.sampling.geometry import Hw


class ExampleInputs(NamedTuple):
    latent: torch.Tensor  # [B, C, zH, zW] float32, CPU
    degrade_sigma: torch.Tensor  # [B] float32, 0 = a clean latent
    caption_embeds: torch.Tensor  # [B, L, txt_embed_dim] float32, L = the model's caption length


def example_inputs(
    net, image_size: Optional[Hw] = None, batch: int = 1, seed: int = 0, caption_tokens: Optional[int] = None
) -> ExampleInputs:
    """Seeded random inputs for `net` decoding to `image_size` (int or (H, W); default 256).

    Use as `pid.Decoder(net).decode(*example_inputs(net, 256))`. Raises ValueError (with
    the nearest valid sizes) when the size does not fit the model.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    latent_shape = net.geometry.latent_shape(256 if image_size is None else image_size)
    tokens = caption_tokens or net.txt_max_length
    generator = torch.Generator().manual_seed(seed)
    latent = torch.randn(batch, *latent_shape, generator=generator)
    captions = torch.randn(batch, tokens, net.config["txt_embed_dim"], generator=generator)
    return ExampleInputs(latent, torch.zeros(batch), captions)
