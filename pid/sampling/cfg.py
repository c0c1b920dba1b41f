"""Multi-step sampler with classifier-free guidance for the undistilled PiD v1.5 decoders.

The three undistilled checkpoints (``PiD_v1pt5_res2kto4k_sr4x_official_{flux,flux2,qwenimage}
_undistilled``) are the teachers the released 4-step students were distilled from. They are
plain flow-matching velocity models and need a full ODE solve with text CFG. This module
re-implements, in our own code, what the release does with them.

What the release does (read from ``pid/_src/models/pid_model.py`` (``PidModel.
generate_samples_from_batch``), ``pid/_src/models/pixeldit_model.py`` (config defaults, the
null caption), ``pid/_src/modules/dpmsolver/flow_dpm.py`` and ``dpm_solver.py`` (the solver),
``pid/_src/configs/pid_training/experiment_pid_v1pt5_*/teacher.py`` (teacher settings),
``pid/_src/inference_internal/pid_inference.py`` and ``docs/inference.md`` (how teachers are
run)):

* Solver: multistep DPM-Solver++ of order 2 ("2M", data prediction, ``solver_type
  "dpmsolver"``) on the flow schedule ``alpha_t = 1 - t``, ``sigma_t = t``, with
  ``lower_order_final``: the first and the last step are first order. For this schedule a
  first-order step is exactly an Euler step on the velocity, ``x <- x + (t_next - t) * v``. The
  network is evaluated once per step (``steps`` evaluations, or twice that with CFG); the last
  step lands on t = 0 and returns the last clean-image prediction.
* Time grid ("time_uniform_flow"): ``u = linspace(1, 0.001, steps + 1)`` in float32,
  ``sigma = 1 - u`` (0 ... 0.999), shifted by ``shift * sigma / (1 + (shift - 1) * sigma)`` and
  reversed, so it starts just below 1 (0.99983 for shift 6) and ends at exactly 0.
* Shift: an explicit ``shift`` wins; otherwise, since every v1.5 teacher config sets
  ``dynamic_shift = {base_shift: 6.0, base_image_size_for_shift_calc: 2048}``, the shift is
  ``6.0 * sqrt(sqrt(H * W) / 2048)`` for the output size H x W (6.0 at 2048^2, 8.49 at 4096^2).
  The static fallback ``shift = 6.0`` is never reached for these checkpoints.
* Guidance: text-only CFG. The unconditional branch keeps the same LQ latent and degrade sigma
  and swaps the caption for the embedding of the model's negative prompt (the long
  "low quality, worst quality, ..." string, encoded with the same complex-human-instruction
  prefix as every caption; see :mod:`pid.io.captions`). Guidance is
  ``uncond + cfg_scale * (cond - uncond)``; the release combines the derived noise predictions,
  which is the same affine combination of the velocities. The two branches are separate network
  calls (unconditional first). ``cfg_scale == 1`` runs the conditional branch only. The
  guidance interval ``(0, 1)`` covers every evaluated time, so guidance is on at every step.
* Defaults: the release documents ``cfg_scale 5, 25 steps`` for the teachers (``docs/
  inference.md``, and the training callbacks sample with 25 steps at guidance 2.75 and 5). The
  model config's own fallbacks are ``cfg_scale = 5`` and ``num_sample_steps = 50``; the
  ``pid_inference`` CLI defaults to ``--cfg_scale 1`` unless told otherwise. We default to 25
  steps and guidance 5.
* Network call: ``net(x_t, t * 1000, y, lq_latent=..., degrade_sigma=...)`` with t a float32
  value per sample, the x/t/y inputs in float32 (captions upcast from the bf16 text encoder),
  degrade sigma float32, no caption mask. The initial noise is one ``randn`` draw of shape
  ``[B, 3, H, W]`` from a CUDA generator seeded with the user's seed; the ODE draws nothing
  else. The caller clamps the result to [-1, 1].

Numerics: the release derives x0 through the noise prediction, ``x0 = (x - t * eps) / (1 - t)``
with ``eps = x + (1 - t) * v``. We use the algebraically identical ``x0 = x - t * v`` (computed
in float64 and rounded to float32), which avoids dividing by ``1 - t`` ~ 2e-4 at the first step.
Step coefficients are computed in float64 from the float32 grid values.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from pid.configs import TIMESCALE
from pid.sampling.checks import as_tensor, check_finite_images, truncate_captions
from pid.sampling.geometry import as_hw

__all__ = [
    "DEFAULT_STEPS",
    "DEFAULT_CFG_SCALE",
    "BASE_SHIFT",
    "BASE_IMAGE_SIZE",
    "T_MIN",
    "shift_time",
    "dynamic_shift",
    "resolve_shift",
    "flow_schedule",
    "sample_cfg",
]

DEFAULT_STEPS = 25
DEFAULT_CFG_SCALE = 5.0
BASE_SHIFT = 6.0
BASE_IMAGE_SIZE = 2048
# Smallest gap the un-shifted grid keeps from t = 1 (the release solves from 1 to 1/1000).
T_MIN = 1e-3

ImageSize = Union[int, Sequence[int]]


# --------------------------------------------------------------------------------------------
# Time grid
# --------------------------------------------------------------------------------------------


def shift_time(t, shift: float):
    """The SD3-style time shift ``shift * t / (1 + (shift - 1) * t)`` (float or tensor)."""
    return shift * t / (1 + (shift - 1) * t)


def dynamic_shift(
    height: int, width: int, base_shift: float = BASE_SHIFT, base_image_size: int = BASE_IMAGE_SIZE
) -> float:
    """Resolution-dependent shift: ``base_shift * sqrt(sqrt(height * width) / base_image_size)``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    if base_shift <= 0 or base_image_size <= 0:
        raise ValueError(f"base_shift and base_image_size must be positive, got {(base_shift, base_image_size)}")
    return float(base_shift) * math.sqrt(math.sqrt(float(height) * float(width)) / float(base_image_size))


def resolve_shift(shift: Optional[float], height: int, width: int) -> float:
    """An explicit shift wins; ``None`` means the release's dynamic shift for this output size."""
    if shift is None:
        return dynamic_shift(height, width)
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) or not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive finite number or None, got {shift!r}")
    return float(shift)


def flow_schedule(steps: int, shift: float, *, t_min: float = T_MIN) -> Tensor:
    """The ``steps + 1`` decreasing times (float32) at which the sampler sits.

    An un-shifted grid ``1 - linspace(1, t_min, steps + 1)`` (0 ... 1 - t_min, built in float32
    exactly like the release) is passed through :func:`shift_time` and reversed: the first time is
    ``shift_time(1 - t_min)`` and the last is exactly 0.
    """
    _check_steps(steps)
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) or not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive finite number, got {shift!r}")
    if not (0.0 < t_min < 1.0):
        raise ValueError(f"t_min must lie in (0, 1), got {t_min!r}")
    unshifted = 1.0 - torch.linspace(1.0, t_min, steps + 1, dtype=torch.float32)
    return torch.flip(shift_time(unshifted, float(shift)), dims=[0])


def _check_steps(steps) -> None:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def _half_log_snr(t: float) -> float:
    """lambda(t) = log(alpha_t / sigma_t) = log((1 - t) / t) for the flow schedule (t in (0, 1))."""
    return math.log1p(-t) - math.log(t)


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------


def _as_hw(image_size: ImageSize) -> Tuple[int, int]:
    h, w = as_hw(image_size, "image_size")
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {(h, w)}")
    return h, w


def _batched_embeds(embeds, batch: int, name: str) -> Tensor:
    if not isinstance(embeds, Tensor):
        raise TypeError(f"{name} must be a tensor [B, L, D], got {type(embeds).__name__}")
    if embeds.ndim != 3:
        raise ValueError(f"{name} must be 3-D [B, L, D], got shape {tuple(embeds.shape)}")
    if not embeds.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {embeds.dtype}")
    if embeds.shape[0] == batch:
        return embeds
    if embeds.shape[0] == 1:
        return embeds.expand(batch, -1, -1)
    raise ValueError(f"{name} has batch {embeds.shape[0]}, expected {batch} (or 1 to broadcast)")


def _sigma_vector(degrade_sigma, batch: int, device) -> Tensor:
    if isinstance(degrade_sigma, Tensor):
        sigma = degrade_sigma.detach().to(device=device, dtype=torch.float32).reshape(-1)
    elif isinstance(degrade_sigma, numbers.Real) and not isinstance(degrade_sigma, bool):
        sigma = torch.tensor([float(degrade_sigma)], dtype=torch.float32, device=device)
    elif isinstance(degrade_sigma, (list, tuple)):
        sigma = torch.tensor([float(s) for s in degrade_sigma], dtype=torch.float32, device=device)
    else:
        raise TypeError(f"degrade_sigma must be a number, a sequence or a tensor, got {type(degrade_sigma).__name__}")
    if sigma.numel() == 1:
        sigma = sigma.expand(batch).contiguous()
    if sigma.shape != (batch,):
        raise ValueError(f"degrade_sigma must hold 1 or {batch} values, got {sigma.numel()}")
    if not torch.isfinite(sigma).all():
        raise ValueError("degrade_sigma must be finite")
    return sigma


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_cfg(
    net: Callable[..., Tensor],
    latent: Tensor,
    degrade_sigma,
    caption_embeds: Tensor,
    uncond_embeds: Optional[Tensor],
    *,
    steps: int = DEFAULT_STEPS,
    cfg_scale: float = DEFAULT_CFG_SCALE,
    shift: Optional[float] = None,
    noise: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    image_size: Optional[ImageSize] = None,
    batch_cfg: bool = False,
    clamp: bool = True,
) -> Tensor:
    """Decode ``latent`` with an undistilled PiD network: DPM-Solver++(2M) with text CFG.

    Args:
        net: velocity model, called as ``net(x_t, t * 1000, y, lq_latent=latent,
            degrade_sigma=sigma)`` and returning ``v = eps - x0`` shaped like ``x_t``.
        latent: LQ latent ``[B, C, h, w]``; passed to every call (both CFG branches), in float32.
        degrade_sigma: a number, or 1 or B values (tensor or sequence); float32 ``[B]`` for the net.
        caption_embeds: conditional caption embeddings ``[B or 1, L, D]``.
        uncond_embeds: unconditional (negative-prompt) embeddings ``[B or 1, L', D]``. May be
            ``None`` only when ``cfg_scale == 1``.
        steps: number of solver steps (network evaluations per branch). Release docs: 25.
        cfg_scale: guidance weight; 1 disables guidance (one call per step).
        shift: time shift; ``None`` uses the release's dynamic shift for the output size.
        noise: initial noise ``[B, 3, H, W]``. If omitted, drawn with ``torch.randn`` (using
            ``generator`` if given) on the latent's device.
        generator: RNG for the noise draw; only when ``noise`` is not given.
        image_size: output ``H`` (square) or ``(H, W)``. Optional when ``noise`` is given.
        batch_cfg: run both CFG branches in one call of batch 2B (same maths, more memory)
            instead of the release's two calls.
        clamp: clamp the result to [-1, 1], as the release does (``False`` returns the raw
            final x0, e.g. for comparisons).

    Returns:
        The decoded image ``x0``, float32 ``[B, 3, H, W]``; ``NonFiniteError`` if it holds NaN/Inf
        (checked once, at the end).

    To reproduce the release's noise exactly, pass ``generator=torch.Generator("cuda")
    .manual_seed(seed)`` with the latent on CUDA (one ``randn`` of the output shape).
    """
    if not callable(net):
        raise TypeError("net must be callable")
    latent = as_tensor(latent, "latent")
    caption_embeds = as_tensor(caption_embeds, "caption_embeds")
    uncond_embeds = None if uncond_embeds is None else as_tensor(uncond_embeds, "uncond_embeds")
    if latent.ndim != 4:
        raise ValueError(f"latent must be a 4-D tensor [B, C, h, w], got {tuple(latent.shape)}")
    _check_steps(steps)
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, numbers.Real) or not math.isfinite(cfg_scale):
        raise ValueError(f"cfg_scale must be a finite number, got {cfg_scale!r}")
    cfg_scale = float(cfg_scale)
    guided = cfg_scale != 1.0
    if guided and uncond_embeds is None:
        raise ValueError("uncond_embeds is required when cfg_scale != 1 (use the negative-prompt embedding)")

    batch = latent.shape[0]
    device = latent.device

    # Output geometry and initial noise.
    if noise is not None:
        if generator is not None:
            raise ValueError("pass either noise or generator, not both")
        if not isinstance(noise, Tensor) or noise.ndim != 4 or noise.shape[0] != batch or noise.shape[1] != 3:
            shape = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise must be [B={batch}, 3, H, W], got {shape}")
        if not noise.is_floating_point():
            raise ValueError(f"noise must be floating point, got {noise.dtype}")
        height, width = int(noise.shape[2]), int(noise.shape[3])
        if image_size is not None and _as_hw(image_size) != (height, width):
            raise ValueError(f"image_size {_as_hw(image_size)} disagrees with the noise size {(height, width)}")
        x = noise.detach().to(device=device, dtype=torch.float32).clone()
    else:
        if image_size is None:
            raise ValueError("image_size is required when noise is not given")
        height, width = _as_hw(image_size)
        x = torch.randn((batch, 3, height, width), generator=generator, device=device, dtype=torch.float32)

    max_tokens = getattr(net, "txt_max_length", None)
    if max_tokens is not None:
        caption_embeds = truncate_captions(caption_embeds, None, max_tokens, "caption_embeds")[0]
        uncond_embeds = None if uncond_embeds is None else truncate_captions(uncond_embeds, None, max_tokens,
                                                                             "uncond_embeds")[0]
    y_cond = _batched_embeds(caption_embeds, batch, "caption_embeds").to(device=device, dtype=torch.float32)
    y_uncond = None
    if guided:
        y_uncond = _batched_embeds(uncond_embeds, batch, "uncond_embeds").to(device=device, dtype=torch.float32)
        if y_uncond.shape[-1] != y_cond.shape[-1]:
            raise ValueError(
                f"caption_embeds and uncond_embeds differ in width: {y_cond.shape[-1]} vs {y_uncond.shape[-1]}"
            )
        if batch_cfg and y_uncond.shape[1] != y_cond.shape[1]:
            raise ValueError("batch_cfg needs caption_embeds and uncond_embeds of the same length")
    lq = latent.detach().to(dtype=torch.float32)
    sigma = _sigma_vector(degrade_sigma, batch, device)

    times = flow_schedule(steps, resolve_shift(shift, height, width))

    if guided and batch_cfg:
        y_pair = torch.cat([y_uncond, y_cond], dim=0)
        lq_pair = torch.cat([lq, lq], dim=0)
        sigma_pair = torch.cat([sigma, sigma], dim=0)

    def velocity(x_t: Tensor, t32: Tensor) -> Tensor:
        t_in = t32.to(device).expand(batch) * TIMESCALE  # float32, one value per sample
        if not guided:
            v = net(x_t, t_in, y_cond, lq_latent=lq, degrade_sigma=sigma)
            return _check_velocity(v, x_t)
        if batch_cfg:
            out = net(torch.cat([x_t, x_t]), torch.cat([t_in, t_in]), y_pair, lq_latent=lq_pair, degrade_sigma=sigma_pair)
            out = _check_velocity(out, torch.cat([x_t, x_t]))
            v_u, v_c = out[:batch], out[batch:]
        else:
            v_u = _check_velocity(net(x_t, t_in, y_uncond, lq_latent=lq, degrade_sigma=sigma), x_t)
            v_c = _check_velocity(net(x_t, t_in, y_cond, lq_latent=lq, degrade_sigma=sigma), x_t)
        return v_u + cfg_scale * (v_c - v_u)

    prev_x0: Optional[Tensor] = None
    prev_lam = 0.0
    for i in range(steps):
        t_cur = float(times[i])
        t_next = float(times[i + 1])
        v = velocity(x, times[i])
        x0 = (x.double() - t_cur * v.double()).to(torch.float32)
        lam_cur = _half_log_snr(t_cur)
        if t_next <= 0.0:
            # Last step: the data-prediction update onto t = 0 returns x0 itself.
            x = x0
        else:
            ratio = t_next / t_cur  # sigma_next / sigma_cur
            gain = 1.0 - ratio  # = -alpha_next * expm1(-h) for this schedule
            first_order = i == 0 or i == steps - 1 or prev_x0 is None
            if first_order:
                x = ratio * x + gain * x0
            else:
                h = _half_log_snr(t_next) - lam_cur
                r = (lam_cur - prev_lam) / h
                x = ratio * x + gain * x0 + (0.5 * gain / r) * (x0 - prev_x0)
        prev_x0 = x0
        prev_lam = lam_cur

    check_finite_images(x)
    return x.clamp(-1.0, 1.0) if clamp else x


def _check_velocity(v, x: Tensor) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"net must return a tensor, got {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"net returned shape {tuple(v.shape)}, expected {tuple(x.shape)}")
    return v.to(torch.float32)
