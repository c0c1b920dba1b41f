"""Constructor configs of the released PiD checkpoints, keyed by checkpoint name.

Every config uses the official constructor kwarg names (the ones in the release's
`PidNet.__init__` and in the golden JSON's `config`), so a dict taken from either
can be passed to `pid.build_model` unchanged. The seven distinct architectures
are one v1 base plus small overrides; the manifests in `shared/golden/manifests`
are the ground truth the tests compare against.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

# v1 (PiD_res2k_sr4x_official_flux_distill_4step): per-token-per-dim gates,
# zero conv padding, 1024 px NTK RoPE reference, 16-channel 8x VAE latent.
_V1: dict[str, Any] = {
    "in_channels": 3,
    "num_groups": 24,
    "hidden_size": 1536,
    "pixel_hidden_size": 16,
    "pixel_attn_hidden_size": 1152,
    "pixel_num_groups": 16,
    "patch_depth": 14,
    "pixel_depth": 2,
    "num_text_blocks": 4,
    "patch_size": 16,
    "txt_embed_dim": 2304,
    "txt_max_length": 300,
    "use_text_rope": True,
    "text_rope_theta": 10000.0,
    "rope_mode": "ntk_aware",
    "rope_ref_h": 1024,
    "rope_ref_w": 1024,
    "repa_encoder_index": 6,
    "enable_ed": False,
    "ed_compress_ratio": 1,
    "ed_depth_per_stage": 1,
    "ed_window_size": 2,
    "ed_num_heads": None,
    "ed_hidden_size": None,
    "ed_use_token_shuffle": True,
    "lq_inject_mode": "controlnet",
    "lq_in_channels": 0,
    "lq_latent_channels": 16,
    "lq_hidden_dim": 512,
    "lq_num_res_blocks": 4,
    "lq_latent_unpatchify_factor": 1,
    "lq_aux_rgb_head": False,
    "lq_aux_rgb_head_latent_block_idx": -1,
    "lq_conv_padding_mode": "zeros",
    "lq_gate_type": "sigma_aware_per_token_per_dim",
    "lq_interval": 2,
    "zero_init_lq": True,
    "train_lq_proj_only": False,
    "sr_scale": 4,
    "latent_spatial_down_factor": 8,
    "pit_lq_inject": False,
}

# v1.5: per-token gates, replicate padding, 2048 px RoPE reference, wider LQ
# adapter, PiT injection and the (training-only) aux RGB head.
_V15_OVERRIDES: dict[str, Any] = {
    "rope_ref_h": 2048,
    "rope_ref_w": 2048,
    "lq_hidden_dim": 1024,
    "lq_aux_rgb_head": True,
    "lq_conv_padding_mode": "replicate",
    "lq_gate_type": "sigma_aware_per_token",
    "pit_lq_inject": True,
}

_LATENT_FLUX2: dict[str, Any] = {"lq_latent_channels": 128, "latent_spatial_down_factor": 16}

_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "v1_sr4x_lat16_down8": {**_V1},
    "v1_sr4x_lat128_down16": {**_V1, **_LATENT_FLUX2},
    "v1_sr4x_lat768_down16": {**_V1, "lq_latent_channels": 768, "latent_spatial_down_factor": 16},
    "v1_sr8x_lat1152_down16": {
        **_V1,
        "lq_latent_channels": 1152,
        "sr_scale": 8,
        "latent_spatial_down_factor": 16,
    },
    "v1_sr4x_lat4_down8": {**_V1, "lq_latent_channels": 4},
    "v15_sr4x_lat16_down8": {**_V1, **_V15_OVERRIDES},
    # Flux.2 latents arrive 2x2-patchified (128 ch at 16x); v1.5 unpatchifies them
    # to 32 ch at 8x before the adapter, v1 feeds the 128 channels directly.
    "v15_sr4x_lat128_down16_unpatchify2": {
        **_V1,
        **_V15_OVERRIDES,
        **_LATENT_FLUX2,
        "lq_latent_unpatchify_factor": 2,
    },
}

# Released checkpoint name -> architecture name. The undistilled v1.5 teachers
# share the distilled students' architecture; only the sampler differs.
RELEASED_CHECKPOINTS: dict[str, str] = {
    "PiD_res2k_sr4x_official_flux_distill_4step": "v1_sr4x_lat16_down8",
    "PiD_res2k_sr4x_official_sd3_distill_4step": "v1_sr4x_lat16_down8",
    "PiD_res2kto4k_sr4x_official_sd3_distill_4step": "v1_sr4x_lat16_down8",
    "PiD_res2k_sr4x_official_flux2_distill_4step": "v1_sr4x_lat128_down16",
    "PiD_res2k_sr4x_official_dinov2_distill_4step": "v1_sr4x_lat768_down16",
    "PiD_res2k_sr8x_official_siglip_distill_4step": "v1_sr8x_lat1152_down16",
    "PiD_res2kto4k_sr4x_official_sdxl_distill_4step": "v1_sr4x_lat4_down8",
    "PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step": "v15_sr4x_lat16_down8",
    "PiD_v1pt5_res2kto4k_sr4x_official_qwenimage_distill_4step": "v15_sr4x_lat16_down8",
    "PiD_v1pt5_res2kto4k_sr4x_official_flux2_distill_4step": "v15_sr4x_lat128_down16_unpatchify2",
    "PiD_v1pt5_res2kto4k_sr4x_official_flux_undistilled": "v15_sr4x_lat16_down8",
    "PiD_v1pt5_res2kto4k_sr4x_official_qwenimage_undistilled": "v15_sr4x_lat16_down8",
    "PiD_v1pt5_res2kto4k_sr4x_official_flux2_undistilled": "v15_sr4x_lat128_down16_unpatchify2",
}

# Short names of the two network families: the released v1 Flux architecture and v1.5
# (per-token gates, PiT injection) on the same 16-channel latent.
SHORT_NAMES: dict[str, str] = {"v1": "v1_sr4x_lat16_down8", "v1.5": "v15_sr4x_lat16_down8"}

# The architecture `pid demo` and `pid bench` build by default: the released v1 Flux decoder.
DEFAULT_CHECKPOINT = "PiD_res2k_sr4x_official_flux_distill_4step"

# Values for kwargs a config dict omits: the v1 release's (not the official
# constructor's research defaults, which no checkpoint uses).
DEFAULTS: dict[str, Any] = {**_V1}

# Kwargs the release's constructor takes that change nothing at inference, so any value is
# accepted and ignored; this is the one place that says why.
INERT_KEYS: dict[str, str] = {
    "num_text_blocks": "builds no module and no forward step reads it: the released keys hold no text "
    "blocks, and the goldens (4 with 2-4 patch blocks) match the official forward without it",
    "repa_encoder_index": "training only: where the REPA alignment loss taps the network",
    "zero_init_lq": "training only: how the LQ heads and gates are initialised, before weights are loaded",
    "train_lq_proj_only": "training only: which parameters the optimiser updates",
}

# Constants of the release that several modules need.
DEFAULT_CHECKPOINT = "PiD_res2k_sr4x_official_flux_distill_4step"
CAPTION_TOKENS = 300  # the release always sends 300 caption tokens (BOS + tail of the prompt)
TIMESCALE = 1000.0  # the network takes t x 1000 (the release's fm_timescale)


def architecture_names() -> list[str]:
    return sorted(_ARCHITECTURES)


def released_config(name: str) -> dict[str, Any]:
    """Config of a released checkpoint (or of an architecture or short name), as a fresh dict."""
    arch = SHORT_NAMES.get(name) or RELEASED_CHECKPOINTS.get(name, name)
    if arch not in _ARCHITECTURES:
        known = ", ".join(sorted(RELEASED_CHECKPOINTS))
        raise KeyError(f"unknown PiD checkpoint {name!r}; known checkpoints: {known}; architectures: "
                       f"{', '.join(architecture_names())}; short names: {', '.join(SHORT_NAMES)}")
    return copy.deepcopy(_ARCHITECTURES[arch])


def config_from_json(path: str | Path) -> dict[str, Any]:
    """Constructor kwargs from a JSON file: a plain kwargs object, or one with a "config" entry
    (a golden case's or a manifest's JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"config file {path} is not valid JSON ({error})") from None
    if isinstance(data, Mapping) and isinstance(data.get("config"), Mapping):
        data = data["config"]
    if not isinstance(data, Mapping):
        raise ValueError(f"config file {path} must hold a JSON object of constructor kwargs")
    return dict(data)


def resolve_config(config: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint/architecture name, a JSON file or a kwargs dict -> a complete kwargs dict."""
    if isinstance(config, Path) or isinstance(config, str) and config.lower().endswith(".json"):
        config = config_from_json(config)
    if isinstance(config, str):
        return released_config(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a checkpoint name or a dict of constructor kwargs, got {type(config)!r}")
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown PiD config keys {unknown}; valid keys: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **config}

