"""The distilled 4-step sampler of the released PiD students.

x_t = (1 - t) * x0 + t * eps; the net predicts v = eps - x0. For t_i in
t_list = [0.999, 0.866, 0.634, 0.342, 0.0]: x0 = x_t - t_i * v, then
x_{t_{i+1}} = (1 - t_{i+1}) * x0 + t_{i+1} * eps_i with fresh noise; the last
step returns x0, clamped to [-1, 1].

With `seed`, the initial noise and each eps_i are drawn in that order from one
`torch.Generator` on the decode device, as the release does on CUDA, so the same
seed on a CUDA device gives the release's noise.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from pid import ops
from pid.timing import StageTimer
from pid.validation import (
    check_captions,
    check_finite,
    check_image_size,
    check_latent,
    check_per_sample,
    check_sigma_range,
)

DISTILLED_T_LIST = (0.999, 0.866, 0.634, 0.342, 0.0)
# The release's one-step path starts from t = 1.0 (its `student_timestep`), not 0.999.
ONE_STEP_T = 1.0
TIMESCALE = 1000.0


def distilled_t_list(steps: int, full: Sequence[float] = DISTILLED_T_LIST) -> torch.Tensor:
    """The float32 t schedule for `steps` steps: the full list, or an evenly indexed subset."""
    max_steps = len(full) - 1
    if not 1 <= steps <= max_steps:
        raise ValueError(f"the distilled sampler runs 1..{max_steps} steps, got steps={steps}")
    if steps == 1:
        return torch.tensor([ONE_STEP_T, 0.0])
    schedule = torch.tensor(full, dtype=torch.float32)
    if steps == max_steps:
        return schedule
    return schedule[torch.linspace(0, max_steps, steps + 1).round().long()]


def _image_hw(net, latent: torch.Tensor, image_size) -> tuple[int, int]:
    if image_size is None:
        return net.image_size_for_latent(tuple(latent.shape[-2:]))
    if isinstance(image_size, int):
        return (image_size, image_size)
    if len(image_size) != 2:
        raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")
    return (int(image_size[0]), int(image_size[1]))


class Decoder:
    """Runs a PiDNet as a latent -> image decoder with the distilled sampler.

    `decode(latent, degrade_sigma, caption_embeds, ...)` returns images [B, 3, H, W]
    in [-1, 1] (float32). The step-invariant work (caption projection, LQ adapter
    features, RoPE and position tables, the adaLN vectors of all steps) runs once
    per decode.
    """

    def __init__(self, net, t_list: Sequence[float] = DISTILLED_T_LIST):
        self.net = net
        self.t_list = tuple(t_list)

    def _noise(self, noise, generator, shape, steps, device):
        if noise is not None:
            if len(noise) != steps:
                raise ValueError(
                    f"noise must list {steps} tensors (initial x, then one eps per re-noising step), got {len(noise)}"
                )
            for index, tensor in enumerate(noise):
                if tuple(tensor.shape) != shape:
                    raise ValueError(f"noise[{index}] has shape {tuple(tensor.shape)}, expected {shape}")
            return [tensor.to(device=device, dtype=torch.float32) for tensor in noise]
        return [torch.randn(shape, generator=generator, device=device, dtype=torch.float32) for _ in range(steps)]

    @torch.no_grad()
    def decode(
        self,
        latent: torch.Tensor,
        degrade_sigma: Union[float, torch.Tensor],
        caption_embeds: torch.Tensor,
        caption_mask: Optional[torch.Tensor] = None,
        image_size=None,
        seed: Optional[int] = None,
        noise: Optional[Sequence[torch.Tensor]] = None,
        steps: int = 4,
        generator: Optional[torch.Generator] = None,
        progress: bool = False,
        timer: Optional[StageTimer] = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """latent [B, C, zH, zW], degrade_sigma float or [B], caption_embeds [B, L, D].

        noise: explicit [x_init, eps_0, ..., eps_{steps-2}] (each [B, 3, H, W]); else
        drawn from `generator`, or from a new generator seeded with `seed` (default 0).
        clamp=False returns the last x0 before the release's final clamp to [-1, 1].
        """
        net = self.net
        timer = timer or StageTimer(enabled=False)
        device = net.device
        batch = latent.shape[0]
        image_hw = _image_hw(net, latent, image_size)
        check_image_size(net, image_hw)
        check_latent(net, latent, image_hw)
        check_captions(net, caption_embeds, batch, caption_mask)
        sigma = torch.as_tensor(degrade_sigma, dtype=torch.float32).reshape(-1)
        check_per_sample("degrade_sigma", sigma, batch)
        for name, value in (("latent", latent), ("caption_embeds", caption_embeds), ("degrade_sigma", sigma)):
            check_finite(name, value)
        check_sigma_range(sigma)
        sigma = sigma.expand(batch).to(device)
        t_list = distilled_t_list(steps, self.t_list)
        if generator is None and noise is None:
            generator = torch.Generator(device=device).manual_seed(0 if seed is None else int(seed))
        draws = self._noise(noise, generator, (batch, 3, *image_hw), steps, device)

        with timer.stage("prepare"):
            context = net.prepare(
                caption_embeds.to(device),
                latent.to(device),
                sigma,
                image_hw,
                None if caption_mask is None else caption_mask.to(device),
            )
            t_scaled = (t_list[:-1] * TIMESCALE).to(device)
            all_steps = net.timestep_conditioning(t_scaled.repeat_interleave(batch))

        x = draws[0]
        t_list = t_list.to(device)
        step_range = range(steps)
        if progress:
            from tqdm.auto import tqdm

            step_range = tqdm(step_range, desc="PiD decode", unit="step")
        for step in step_range:
            with timer.stage("network"):
                pixels = net.pixel_features(x, context, all_steps.rows(step * batch, (step + 1) * batch))
            with timer.stage("unembed + update"):
                fresh = draws[step + 1] if step + 1 < steps else None
                final = net.final_layer
                x = ops.unembed_sampler_update(
                    pixels,
                    final.norm.weight,
                    final.linear.weight,
                    final.linear.bias,
                    image_hw,
                    net.patch_size,
                    x,
                    t_list[step],
                    t_list[step + 1],
                    fresh,
                )
        return x.clamp(-1, 1) if clamp else x
