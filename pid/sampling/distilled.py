"""The distilled 4-step sampler of the released PiD students.

x_t = (1 - t) * x0 + t * eps; the net predicts v = eps - x0. For t_i in
t_list = [0.999, 0.866, 0.634, 0.342, 0.0]: x0 = x_t - t_i * v, then
x_{t_{i+1}} = (1 - t_{i+1}) * x0 + t_{i+1} * eps_i with fresh noise; the last
step returns x0, clamped to [-1, 1].

With `seed`, the initial noise and each eps_i are drawn in that order from one
`torch.Generator` on the decode device, as the release does on CUDA, so the same
seed on a CUDA device gives the release's noise. `seed=None` draws a fresh seed from
torch's global generator on every call (so `torch.manual_seed` makes it repeatable) and
records it as `Decoder.last_seed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch

from pid.bench.timing import StageTimer
from pid.configs import TIMESCALE
from pid.sampling.checks import (
    as_per_sample,
    as_tensor,
    check_captions,
    check_finite,
    check_finite_images,
    check_per_sample,
    check_sigma_range,
    truncate_captions,
)
from pid.sampling.geometry import as_hw
from pid.sampling.memory import out_of_memory_error
from pid.sampling import tiled

DISTILLED_T_LIST = (0.999, 0.866, 0.634, 0.342, 0.0)
# The release's one-step path starts from t = 1.0 (its `student_timestep`), not 0.999.
ONE_STEP_T = 1.0


def fresh_seed() -> int:
    """A new seed from torch's global generator, so `torch.manual_seed` makes a run repeatable."""
    return int(torch.randint(2**62, (), dtype=torch.int64))


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


@dataclass
class DecodeInputs:
    """Validated decode inputs, on the decode device."""

    latent: torch.Tensor  # [B, C, zH, zW]
    sigma: torch.Tensor  # [B] float32
    captions: torch.Tensor  # [B, L, D]
    caption_mask: Optional[torch.Tensor]  # [B, L] or None
    image_hw: tuple[int, int]

    @property
    def batch(self) -> int:
        return self.latent.shape[0]

    @property
    def noise_shape(self) -> tuple[int, ...]:
        return (self.batch, 3, *self.image_hw)


class Decoder:
    """Runs a PiDNet as a latent -> image decoder with the distilled sampler.

    `decode(latent, degrade_sigma, caption_embeds, ...)` returns images [B, 3, H, W]
    in [-1, 1] (float32). With `hoist_step_invariant` (the default) the caption
    projection, LQ adapter features, RoPE and position tables and the adaLN vectors
    of all steps run once per decode instead of once per step.
    """

    def __init__(self, net, t_list: Sequence[float] = DISTILLED_T_LIST, hoist_step_invariant: bool = True):
        self.net = net
        self.t_list = tuple(t_list)
        self.hoist_step_invariant = hoist_step_invariant
        # Set by pid.compile: replays whole decodes as CUDA graphs (pid.accel.graphs.DecodeGraphs).
        self.graphs = None
        # The seed of the last decode that drew its own noise (None after explicit noise or a generator).
        self.last_seed: Optional[int] = None

    def prepare_inputs(self, latent, degrade_sigma, caption_embeds, caption_mask=None, image_size=None) -> DecodeInputs:
        """Check shapes and values (this reads tensor values: one GPU sync) and move to the device.

        Tensors may also be numpy arrays (converted); captions longer than the model's
        maximum are cut to it with a warning, as the release uses only that many tokens."""
        net = self.net
        device = net.device
        latent = as_tensor(latent, "latent")
        caption_embeds = as_tensor(caption_embeds, "caption_embeds")
        caption_mask = None if caption_mask is None else as_tensor(caption_mask, "caption_mask", floating=False)
        image_hw = None if image_size is None else as_hw(image_size, "image_size")
        image_hw = net.geometry.check_latent(latent, image_hw)
        batch = latent.shape[0]
        check_captions(net, caption_embeds, batch, caption_mask)
        caption_embeds, caption_mask = truncate_captions(caption_embeds, caption_mask, net.txt_max_length)
        sigma = as_per_sample(degrade_sigma, "degrade_sigma")
        check_per_sample("degrade_sigma", sigma, batch)
        for name, value in (("latent", latent), ("caption_embeds", caption_embeds), ("degrade_sigma", sigma)):
            check_finite(name, value)
        check_sigma_range(sigma)
        return DecodeInputs(
            latent=latent.to(device),
            sigma=sigma.expand(batch).to(device),
            captions=caption_embeds.to(device),
            caption_mask=None if caption_mask is None else caption_mask.to(device),
            image_hw=image_hw,
        )

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
        tiles=None,
    ) -> torch.Tensor:
        """latent [B, C, zH, zW], degrade_sigma float or [B], caption_embeds [B, L, D] -> images
        [B, 3, H, W] float32 in [-1, 1].

        noise: explicit [x_init, eps_0, ..., eps_{steps-2}] (each [B, 3, H, W]); else
        drawn from `generator`, or from a new generator seeded with `seed`. An integer seed
        reproduces a decode exactly; `seed=None` draws a fresh seed from torch's global
        generator on every call, kept in `self.last_seed`.
        clamp=False returns the last x0 before the release's final clamp to [-1, 1].
        tiles: decode as overlapping tiles (a tile size in output pixels, (size, overlap)
        or a `pid.sampling.tiled.TileSpec`); the result is then on the host.

        Raises NonFiniteError when the result holds NaN/Inf (checked once, after whichever
        path ran: eager, or a CUDA-graph replay), and DecodeOutOfMemoryError on CUDA OOM.
        """
        own_noise = noise is None and generator is None
        if seed is None and own_noise:
            seed = fresh_seed()
        if tiles is not None:
            images = tiled.decode_tiled(
                self, latent, degrade_sigma, caption_embeds, tiles, image_size=image_size, seed=seed, noise=noise,
                steps=steps, generator=generator, progress=progress, clamp=clamp, caption_mask=caption_mask, timer=timer,
            )
            self.last_seed = int(seed) if own_noise else None  # each tile's decode reset it
            return images
        inputs = self.prepare_inputs(latent, degrade_sigma, caption_embeds, caption_mask, image_size)
        t_list = distilled_t_list(steps, self.t_list)
        self.last_seed = int(seed) if own_noise else None
        try:
            result = None
            if self.graphs is not None and own_noise and timer is None and not progress:
                result = self.graphs.run(self.net, inputs, t_list, self.last_seed, self.sample)
            if result is None:
                if noise is not None:
                    draw = _explicit_noise(noise, steps, inputs.noise_shape, self.net.device)
                else:
                    generator = generator or torch.Generator(device=self.net.device).manual_seed(self.last_seed)
                    draw = _generator_noise(generator, inputs.noise_shape, self.net.device)
                result = self.sample(inputs, t_list, draw, progress=progress, timer=timer)
        except torch.OutOfMemoryError as error:
            raise out_of_memory_error(error, inputs.noise_shape, self.net.dtype, self.net.device) from error
        check_finite_images(result)
        return result.clamp(-1, 1) if clamp else result

    def sample(
        self,
        inputs: DecodeInputs,
        t_list: torch.Tensor,
        draw: Callable[[int], torch.Tensor],
        progress: bool = False,
        timer: Optional[StageTimer] = None,
    ) -> torch.Tensor:
        """The sampling loop on validated device tensors; `draw(i)` gives noise draw i
        (0: the initial x). Free of host syncs, so a CUDA graph can capture it."""
        net = self.net
        timer = timer or StageTimer(enabled=False)
        batch, steps = inputs.batch, len(t_list) - 1
        t_scaled = (t_list[:-1] * TIMESCALE).to(net.device)
        context = conditioning = None
        if self.hoist_step_invariant:
            with timer.stage("prepare"):
                context = self._context(inputs)
                conditioning = net.timestep_conditioning(t_scaled.repeat_interleave(batch))
        x = draw(0)
        t_list = t_list.to(net.device)
        step_range = range(steps)
        if progress:
            from tqdm.auto import tqdm

            step_range = tqdm(step_range, desc="PiD decode", unit="step")
        for step in step_range:
            with timer.stage("network"):
                if self.hoist_step_invariant:
                    step_conditioning = conditioning.rows(step * batch, (step + 1) * batch)
                    step_context = context
                else:
                    step_context = self._context(inputs)
                    step_conditioning = net.timestep_conditioning(t_scaled[step].repeat(batch))
                pixels = net.pixel_features(x, step_context, step_conditioning)
            with timer.stage("unembed + update"):
                fresh = draw(step + 1) if step + 1 < steps else None
                x = net.unembed_update(pixels, inputs.image_hw, x, t_list[step], t_list[step + 1], fresh)
            del pixels, fresh  # so step k's pixel tokens and noise are gone before step k+1 peaks
        return x

    def _context(self, inputs: DecodeInputs):
        return self.net.prepare(inputs.captions, inputs.latent, inputs.sigma, inputs.image_hw, inputs.caption_mask)


def _explicit_noise(noise, steps, shape, device) -> Callable[[int], torch.Tensor]:
    if isinstance(noise, torch.Tensor) or not isinstance(noise, Sequence):
        raise TypeError(f"noise must be a list of {steps} tensors (initial x, then one eps per re-noising step)")
    noise = [as_tensor(tensor, f"noise[{index}]") for index, tensor in enumerate(noise)]
    if len(noise) != steps:
        raise ValueError(f"noise must list {steps} tensors (initial x, then one eps per re-noising step), got {len(noise)}")
    for index, tensor in enumerate(noise):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"noise[{index}] has shape {tuple(tensor.shape)}, expected {shape}")
    draws = [tensor.to(device=device, dtype=torch.float32) for tensor in noise]
    return draws.__getitem__


def _generator_noise(generator, shape, device) -> Callable[[int], torch.Tensor]:
    """Draws in call order from `generator`, as the release does (initial x, then each eps)."""
    return lambda _index: torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
