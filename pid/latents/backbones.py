"""The latent space each released PiD decoder expects, per generator backbone.

PiD turns a low-resolution latent ``lq_latent`` of shape [B, C, zH, zW] into an
image [B, 3, H, W] with ``H = zH * sr_scale * latent_spatial_down_factor``. Each
released decoder was trained on exactly what its frozen tokenizer's ``encode``
returned for a low-resolution image, so a latent that comes from a generator
has to be put into that same space first: the backbone VAE's own normalization,
plus, for Flux.2, a 2x2 patchify to 128 channels. This module records those
conventions, maps (backbone, ckpt_type) to the released checkpoint and checks
latent shapes; `pid.latents.transforms` does the conversions and the degradation
noising. Neither builds or calls the network.

Conventions below were read from nv-tlabs/PiD (tokenizers, inference registry,
latent noising) and from the diffusers pipelines that the release drives. See
docs/latents.md for tables and worked examples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from pid.sampling.geometry import Hw, LatentGeometry, geometry_from_config

CKPT_TYPES = ("2k", "2kto4k", "2kto4k_v1pt5")

# Noising forms: how a clean latent x0 is degraded at sigma during training.
FLOW_MATCHING = "flow_matching"  # x = (1 - s) * x0 + s * eps
VARIANCE_PRESERVING = "variance_preserving"  # x = sqrt(1 - s^2) * x0 + s * eps (SDXL)

# Normalization kinds: how PiD's latent is made from the encoder's own output.
NORM_AFFINE = "affine"  # pid = scaling_factor * (raw - shift_factor)
NORM_PER_CHANNEL = "per_channel"  # pid = (raw - mean[c]) / std[c]
NORM_PATCHIFY_BATCHNORM = "patchify2x2_batchnorm"  # pid = BN_eval(pack_2x2(raw))
NORM_PER_POSITION = "per_position"  # pid = (raw - mean[c, y, x]) / sqrt(var[c, y, x] + eps)
NORM_TOKEN_LAYERNORM = "token_layernorm"  # pid = LayerNorm over channels, no affine

# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """One released 4-step distilled decoder."""

    name: str  # experiment name, also the directory under checkpoints/
    ckpt_type: str  # "2k", "2kto4k" or "2kto4k_v1pt5"
    sr_scale: int  # output size / LQ image size, baked into the network
    arch: str  # network family: "v1" or "v1.5"
    manifest: str  # architecture name: golden manifest stem, pid.configs key
    # Upper end of the degrade_sigma range seen in training; None where the
    # release does not publish the training config (all v1 checkpoints).
    trained_sigma_max: float | None = None

    @property
    def weights_path(self) -> str:
        return f"checkpoints/{self.name}/model_ema_bf16.pth"


@dataclass(frozen=True)
class BackboneSpec:
    """What PiD's network receives for one generator backbone.

    Shapes are per sample: PiD gets [B, lq_latent_channels, zH, zW] with
    zH = H / (sr_scale * latent_spatial_down_factor) for an H x W output.
    The "raw" latent is the encoder's own output before PiD's normalization:
    the VAE posterior mean (Flux/SD3/SDXL/Qwen/Flux.2) or the vision encoder's
    patch features (DINOv2/SigLIP).
    """

    name: str
    aliases: tuple[str, ...]
    source: str  # generator and latent encoder, for humans
    lq_latent_channels: int
    latent_spatial_down_factor: int  # LQ-image pixels per latent cell, per axis
    raw_latent_channels: int
    raw_down_factor: int  # LQ-image pixels per raw latent cell
    normalization: str  # one of the NORM_* kinds
    scaling_factor: float | None = None  # NORM_AFFINE
    shift_factor: float | None = None  # NORM_AFFINE
    channel_mean: tuple[float, ...] | None = None  # NORM_PER_CHANNEL
    channel_std: tuple[float, ...] | None = None  # NORM_PER_CHANNEL
    norm_eps: float | None = None  # in sqrt(var + eps), or the LayerNorm eps
    stats_source: str = ""  # where the normalization numbers come from
    noising: str = FLOW_MATCHING
    # DINOv2 / SigLIP resize every input to a fixed square, so their latent
    # grid (and therefore the output size) never changes.
    fixed_latent_hw: tuple[int, int] | None = None
    pipeline_latent: str = ""  # what the generator hands back as its latent
    checkpoints: tuple[ReleasedCheckpoint, ...] = ()

    @property
    def sr_scale(self) -> int:
        # All checkpoints of one backbone share it (siglip 8, others 4).
        (scale,) = {c.sr_scale for c in self.checkpoints}
        return scale

    @property
    def ckpt_types(self) -> tuple[str, ...]:
        return tuple(c.ckpt_type for c in self.checkpoints)

    def checkpoint(self, ckpt_type: str) -> ReleasedCheckpoint:
        if ckpt_type not in CKPT_TYPES:
            raise ValueError(f"unknown ckpt_type {ckpt_type!r}; valid: {', '.join(CKPT_TYPES)}")
        for ckpt in self.checkpoints:
            if ckpt.ckpt_type == ckpt_type:
                return ckpt
        raise ValueError(
            f"backbone {self.name!r} has no {ckpt_type!r} checkpoint; released: {', '.join(self.ckpt_types)}"
        )


def _v1(name: str, ckpt_type: str, manifest: str, sr_scale: int = 4) -> ReleasedCheckpoint:
    return ReleasedCheckpoint(name, ckpt_type, sr_scale, "v1", manifest)


def _v15(name: str, manifest: str) -> ReleasedCheckpoint:
    # The v1.5 training configs noise the LQ latent with sigma ~ U[0, 0.8].
    return ReleasedCheckpoint(name, "2kto4k_v1pt5", 4, "v1.5", manifest, trained_sigma_max=0.8)


_FLUX_CHECKPOINTS = (
    _v1("PiD_res2k_sr4x_official_flux_distill_4step", "2k", "v1_sr4x_lat16_down8"),
    _v15("PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step", "v15_sr4x_lat16_down8"),
)

# Flux VAE constants: BFL's autoencoder params and the diffusers VAE config
# (scaling_factor / shift_factor); the release hard-codes the same numbers.
_FLUX = BackboneSpec(
    name="flux",
    aliases=(),
    source="FLUX.1-dev; Flux VAE (16 ch, 8x)",
    lq_latent_channels=16,
    latent_spatial_down_factor=8,
    raw_latent_channels=16,
    raw_down_factor=8,
    normalization=NORM_AFFINE,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    stats_source="Flux VAE config: scaling_factor 0.3611, shift_factor 0.1159",
    pipeline_latent="FluxPipeline: packed tokens [B, (h/2)*(w/2), 64], already normalized",
    checkpoints=_FLUX_CHECKPOINTS,
)

_ZIMAGE_NOTE = "ZImagePipeline: [B, 16, h, w], already normalized"

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        _FLUX,
        BackboneSpec(
            name="flux2",
            aliases=("flux2-klein-4b", "flux2-klein-9b"),
            source="FLUX.2-dev / FLUX.2-klein-4B / -9B; Flux.2 VAE (32 ch, 8x) + 2x2 patchify",
            lq_latent_channels=128,
            latent_spatial_down_factor=16,
            raw_latent_channels=32,
            raw_down_factor=8,
            normalization=NORM_PATCHIFY_BATCHNORM,
            norm_eps=1e-4,
            stats_source=(
                "BatchNorm2d(128) running_mean / running_var stored in the Flux.2 VAE checkpoint "
                "(diffusers: vae.bn; BFL ae.safetensors: bn.running_mean / bn.running_var); "
                "eps 1e-4 (batch_norm_eps)"
            ),
            pipeline_latent=(
                "Flux2Pipeline: packed tokens [B, h*w, 128], already normalized; "
                "Flux2KleinPipeline: raw unpatchified [B, 32, 2h, 2w]"
            ),
            checkpoints=(
                _v1("PiD_res2k_sr4x_official_flux2_distill_4step", "2k", "v1_sr4x_lat128_down16"),
                _v15(
                    "PiD_v1pt5_res2kto4k_sr4x_official_flux2_distill_4step",
                    "v15_sr4x_lat128_down16_unpatchify2",
                ),
            ),
        ),
        BackboneSpec(
            name="sd3",
            aliases=(),
            source="Stable Diffusion 3 medium; SD3 VAE (16 ch, 8x)",
            lq_latent_channels=16,
            latent_spatial_down_factor=8,
            raw_latent_channels=16,
            raw_down_factor=8,
            normalization=NORM_AFFINE,
            scaling_factor=1.5305,
            shift_factor=0.0609,
            stats_source="SD3 VAE config: scaling_factor 1.5305, shift_factor 0.0609",
            pipeline_latent="StableDiffusion3Pipeline: [B, 16, h, w], already normalized",
            checkpoints=(
                _v1("PiD_res2k_sr4x_official_sd3_distill_4step", "2k", "v1_sr4x_lat16_down8"),
                _v1("PiD_res2kto4k_sr4x_official_sd3_distill_4step", "2kto4k", "v1_sr4x_lat16_down8"),
            ),
        ),
        BackboneSpec(
            name="sdxl",
            aliases=(),
            source="SDXL base 1.0; SDXL VAE (4 ch, 8x)",
            lq_latent_channels=4,
            latent_spatial_down_factor=8,
            raw_latent_channels=4,
            raw_down_factor=8,
            normalization=NORM_AFFINE,
            scaling_factor=0.13025,
            shift_factor=0.0,
            stats_source="SDXL VAE config: scaling_factor 0.13025, no shift",
            noising=VARIANCE_PRESERVING,
            pipeline_latent=(
                "StableDiffusionXLPipeline: [B, 4, h, w], already scaled; intermediate latents are in "
                "the Euler (variance-exploding) frame, see euler_to_vp"
            ),
            checkpoints=(
                _v1("PiD_res2kto4k_sr4x_official_sdxl_distill_4step", "2kto4k", "v1_sr4x_lat4_down8"),
            ),
        ),
        BackboneSpec(
            name="qwenimage",
            aliases=("qwenimage-2512",),
            source="Qwen-Image / Qwen-Image-2512; Qwen-Image VAE (Wan2.1 family, 16 ch, 8x)",
            lq_latent_channels=16,
            latent_spatial_down_factor=8,
            raw_latent_channels=16,
            raw_down_factor=8,
            normalization=NORM_PER_CHANNEL,
            # AutoencoderKLQwenImage config latents_mean / latents_std (equal to Wan2.1's).
            channel_mean=(
                -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
            ),  # fmt: skip
            channel_std=(
                2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
            ),  # fmt: skip
            stats_source="AutoencoderKLQwenImage config latents_mean / latents_std",
            pipeline_latent="QwenImagePipeline: packed tokens [B, (h/2)*(w/2), 64], already normalized",
            checkpoints=(
                _v15("PiD_v1pt5_res2kto4k_sr4x_official_qwenimage_distill_4step", "v15_sr4x_lat16_down8"),
            ),
        ),
        # Z-Image ships the Flux VAE, and the release reuses the Flux decoders.
        dataclasses.replace(
            _FLUX, name="zimage", source="Z-Image; Flux VAE (16 ch, 8x)", pipeline_latent=_ZIMAGE_NOTE
        ),
        dataclasses.replace(
            _FLUX, name="zimage-turbo", source="Z-Image-Turbo; Flux VAE (16 ch, 8x)", pipeline_latent=_ZIMAGE_NOTE
        ),
        BackboneSpec(
            name="dinov2",
            aliases=(),
            source="RAE: DINOv2-B with registers (patch 14, input resized to 448) + ViT-XL decoder",
            lq_latent_channels=768,
            latent_spatial_down_factor=16,  # virtual: 512 px LQ image -> 32x32 tokens
            raw_latent_channels=768,
            raw_down_factor=16,
            normalization=NORM_PER_POSITION,
            norm_eps=1e-5,
            stats_source=(
                "RAE stat file checkpoints/rae/stats/dinov2/wReg_base/imagenet1k_512/stat.pt "
                "('mean' and 'var', each [768, 32, 32]); raw = last hidden state with the final "
                "LayerNorm's affine removed, CLS + 4 register tokens dropped"
            ),
            fixed_latent_hw=(32, 32),
            pipeline_latent="RAE DiT samples: [B, 768, 32, 32], already normalized",
            checkpoints=(
                _v1("PiD_res2k_sr4x_official_dinov2_distill_4step", "2k", "v1_sr4x_lat768_down16"),
            ),
        ),
        BackboneSpec(
            name="siglip",
            aliases=(),
            source="Scale-RAE: SigLIP-2 So400M patch14 (input resized to 224) + ViT-XL decoder",
            lq_latent_channels=1152,
            latent_spatial_down_factor=16,  # virtual: 256 px LQ image -> 16x16 tokens
            raw_latent_channels=1152,
            raw_down_factor=16,
            normalization=NORM_TOKEN_LAYERNORM,
            norm_eps=1e-6,
            stats_source=(
                "no stored statistics: raw = SigLIP-2 vision tower output with post_layernorm "
                "bypassed, then LayerNorm over channels without affine, eps 1e-6"
            ),
            fixed_latent_hw=(16, 16),
            pipeline_latent="Scale-RAE image embeddings: tokens [B, 256, 1152] in raster order",
            checkpoints=(
                _v1("PiD_res2k_sr8x_official_siglip_distill_4step", "2k", "v1_sr8x_lat1152_down16", sr_scale=8),
            ),
        ),
    )
}

_BY_NAME: dict[str, BackboneSpec] = {
    alias: spec for spec in BACKBONES.values() for alias in (spec.name, *spec.aliases)
}


def backbone_names(include_aliases: bool = True) -> tuple[str, ...]:
    """Backbone names, canonical ones first in release order."""
    return tuple(_BY_NAME) if include_aliases else tuple(BACKBONES)


def get_backbone(name: str | BackboneSpec) -> BackboneSpec:
    """Spec for a backbone name or alias (case-insensitive, '_' accepted for '-')."""
    if isinstance(name, BackboneSpec):
        return name
    key = str(name).strip().lower().replace("_", "-")
    if key not in _BY_NAME:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(_BY_NAME)}")
    return _BY_NAME[key]


def get_checkpoint(backbone: str | BackboneSpec, ckpt_type: str) -> ReleasedCheckpoint:
    """Released decoder for (backbone, ckpt_type); ValueError lists what exists."""
    return get_backbone(backbone).checkpoint(ckpt_type)


# ---------------------------------------------------------------------------
# Geometry (the rules live in pid.sampling.geometry)
# ---------------------------------------------------------------------------


def _geometry(backbone_or_config: Any) -> LatentGeometry:
    """Accept a backbone name/spec, a config mapping (a manifest's 'config' too) or a config object."""
    if isinstance(backbone_or_config, (str, BackboneSpec)):
        spec = get_backbone(backbone_or_config)
        return LatentGeometry(
            spec.lq_latent_channels,
            spec.sr_scale,
            spec.latent_spatial_down_factor,
            fixed_latent_hw=spec.fixed_latent_hw,
            label=spec.name,
        )
    return geometry_from_config(backbone_or_config, label="config")


def expected_latent_shape(backbone_or_config: Any, image_hw: Hw) -> tuple[int, int, int]:
    """(C, zH, zW) of the lq_latent PiD needs for an H x W output image.

    zH = H / (sr_scale * latent_spatial_down_factor). ValueError when H or W is not
    a multiple of 16, not a multiple of that product, or (DINOv2 / SigLIP) not the
    one size their fixed encoder grid allows.
    """
    return _geometry(backbone_or_config).latent_shape(image_hw)


def image_size_for_latent(backbone_or_config: Any, latent_hw: Hw | torch.Size) -> tuple[int, int]:
    """Output (H, W) that a latent grid (zH, zW) decodes to.

    ``latent_hw`` may also be a full [B, C, zH, zW] or [C, zH, zW] shape; the
    last two entries are used.
    """
    return _geometry(backbone_or_config).image_hw_for_latent(latent_hw)


def check_latent_for(backbone_or_config: Any, latent: Any, image_hw: Hw | None = None) -> tuple[int, int]:
    """Validate an lq_latent [B, C, zH, zW] (tensor or shape) for a backbone or network config and
    return the (H, W) it decodes to.

    Without ``image_hw`` the output size follows from the grid. With it, the image size must be a
    multiple of 16 and of sr_scale * down_factor, and the latent must be exactly
    [B, channels, H / (sr_scale * down_factor), W / (sr_scale * down_factor)]. Errors name the
    expected shape.
    """
    return _geometry(backbone_or_config).check_latent(latent, image_hw, what="lq_latent")
