"""PiD as the decoder of a diffusers pipeline: its latent output, or an early exit from its loop.

`decode_pipeline_latents(pipe, latents, decoder, caption_embeds)` decodes what a Flux, Flux.2,
FLUX.2-klein, SD3, SDXL, Qwen-Image or Z-Image pipeline returns with `output_type="latent"`
(packed tokens or not), through the latent conventions of `pid.latents`.

`early_exit(pipe, decoder, exit_step=k, caption_embeds=..., **pipe_kwargs)` runs the pipeline
and stops its denoising loop after step k through `callback_on_step_end` (setting the
pipeline's `_interrupt` flag, which every pipeline above checks at the top of each step, so
the remaining steps call no network). The partially denoised latent is decoded with
degrade_sigma = the scheduler's sigma after step k (SDXL's Euler frame mapped to PiD's
variance-preserving one): the paper's early termination. Nothing here imports diffusers;
`pipe` is any pipeline object with those conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from pid.latents.backbones import get_backbone
from pid.latents.transforms import pipeline_latent_to_pid, scheduler_state_to_pid

# Pipeline class -> backbone (pid.latents.backbones); subclasses are matched through the MRO.
PIPELINE_BACKBONES = {
    "FluxPipeline": "flux",
    "Flux2Pipeline": "flux2",
    "Flux2KleinPipeline": "flux2-klein-4b",
    "StableDiffusion3Pipeline": "sd3",
    "StableDiffusionXLPipeline": "sdxl",
    "QwenImagePipeline": "qwenimage",
    "ZImagePipeline": "zimage",
}


def backbone_of(pipe, backbone: Optional[str] = None) -> str:
    """The backbone name for `pipe` (or `backbone` when given)."""
    if backbone is not None:
        return get_backbone(backbone).name
    for cls in type(pipe).__mro__:
        if cls.__name__ in PIPELINE_BACKBONES:
            return PIPELINE_BACKBONES[cls.__name__]
    raise ValueError(
        f"cannot tell the latent space of a {type(pipe).__name__}: pass backbone= (one of "
        f"{', '.join(sorted(set(PIPELINE_BACKBONES.values())))}, ...)"
    )


def generated_size(pipe, height: Optional[int], width: Optional[int]) -> tuple[int, int]:
    """The (H, W) the pipeline generates at: the caller's, else the pipeline's default."""
    if height is not None and width is not None:
        return int(height), int(width)
    default = getattr(pipe, "default_sample_size", None)
    if default is None:
        raise ValueError(f"{type(pipe).__name__} has no default size: pass height= and width=")
    side = int(default) * int(pipe.vae_scale_factor)
    return int(height or side), int(width or side)


def to_pid_latent(pipe, latents: torch.Tensor, backbone: str, generated_hw: tuple[int, int]) -> torch.Tensor:
    """A pipeline (or step-callback) latent -> PiD's [B, C, zH, zW]; FLUX.2-klein's raw final
    latent is BN-normalized with the pipeline VAE's statistics."""
    bn = getattr(getattr(pipe, "vae", None), "bn", None)
    stats = {"bn_running_mean": bn.running_mean, "bn_running_var": bn.running_var} if bn is not None else {}
    return pipeline_latent_to_pid(backbone, latents, generated_hw, **stats)


def decode_pipeline_latents(
    pipe,
    latents: torch.Tensor,
    decoder,
    caption_embeds: torch.Tensor,
    *,
    height: Optional[int] = None,
    width: Optional[int] = None,
    backbone: Optional[str] = None,
    degrade_sigma: Any = 0.0,
    **decode_kwargs,
) -> torch.Tensor:
    """Decode `pipe(..., output_type="latent").images` with a `pid.Decoder`.

    height/width: what the pipeline ran at (default: its default size); needed to unpack
    packed tokens. caption_embeds [B, L, D] (PiD's Gemma captions, `pid.io.captions`).
    degrade_sigma: 0 for a finished latent. Other keywords go to `decoder.decode`.
    Returns images [B, 3, H, W] in [-1, 1], H = sr_scale x the generated height.
    """
    name = backbone_of(pipe, backbone)
    lq = to_pid_latent(pipe, latents, name, generated_size(pipe, height, width))
    return decoder.decode(lq, degrade_sigma, caption_embeds, **decode_kwargs)


@dataclass
class EarlyExit:
    """What `early_exit` returns."""

    images: torch.Tensor  # [B, 3, H, W] from decoder.decode
    pipeline_latent: torch.Tensor  # the pipeline's own latent after `steps_run` steps, its layout
    latent: torch.Tensor  # the same in PiD's space [B, C, zH, zW], as decoded
    degrade_sigma: Any  # float (or [B]) handed to the decoder
    steps_run: int
    steps_total: int

    @property
    def steps_saved(self) -> int:
        """LDM steps not run."""
        return self.steps_total - self.steps_run


def early_exit(
    pipe,
    decoder,
    exit_step: int,
    caption_embeds: torch.Tensor,
    *,
    backbone: Optional[str] = None,
    decode_kwargs: Optional[dict] = None,
    **pipe_kwargs,
) -> EarlyExit:
    """Run `pipe(**pipe_kwargs)` for `exit_step` denoising steps, then decode with PiD.

    The latent after step `exit_step` (1 = after the first step) is decoded with
    degrade_sigma = the scheduler's sigma at that point. `exit_step` equal to the number
    of steps decodes the finished latent at sigma 0.
    """
    for key in ("callback_on_step_end", "callback_on_step_end_tensor_inputs", "output_type"):
        if key in pipe_kwargs:
            raise ValueError(f"early_exit sets {key} itself; do not pass it")
    if exit_step < 1:
        raise ValueError(f"exit_step must be >= 1 (the number of LDM steps to run), got {exit_step}")
    name = backbone_of(pipe, backbone)
    captured: dict[str, Any] = {}

    def stop_after_exit_step(pipeline, step_index, _timestep, callback_kwargs):
        if step_index == 0:
            captured["total"] = int(getattr(pipeline, "num_timesteps", None) or len(pipeline.scheduler.timesteps))
            if exit_step > captured["total"]:
                raise ValueError(f"exit_step {exit_step} exceeds the pipeline's {captured['total']} steps")
        if step_index == exit_step - 1:
            scheduler = pipeline.scheduler  # its step() has advanced step_index past this step
            captured["latents"] = callback_kwargs["latents"].clone()
            captured["sigma"] = float(scheduler.sigmas[scheduler.step_index])
            pipeline._interrupt = True
        return {}

    pipe(
        **pipe_kwargs,
        output_type="latent",
        callback_on_step_end=stop_after_exit_step,
        callback_on_step_end_tensor_inputs=["latents"],
    )
    generated_hw = generated_size(pipe, pipe_kwargs.get("height"), pipe_kwargs.get("width"))
    lq = to_pid_latent(pipe, captured["latents"], name, generated_hw)
    lq, sigma = scheduler_state_to_pid(name, lq, captured["sigma"])
    images = decoder.decode(lq, sigma, caption_embeds, **(decode_kwargs or {}))
    return EarlyExit(images, captured["latents"], lq, sigma, exit_step, captured["total"])
