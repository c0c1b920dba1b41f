"""The latent space each released PiD decoder expects, per generator backbone.

PiD turns a low-resolution latent ``lq_latent`` of shape [B, C, zH, zW] into an
image [B, 3, H, W] with ``H = zH * sr_scale * latent_spatial_down_factor``. Each
released decoder was trained on exactly what its frozen tokenizer's ``encode``
returned for a low-resolution image, so a latent that comes from a generator
has to be put into that same space first: the backbone VAE's own normalization,
plus, for Flux.2, a 2x2 patchify to 128 channels. This module records those
conventions, maps (backbone, ckpt_type) to the released checkpoint, checks
latent shapes, and does the conversions and the degradation noising as pure
torch functions. It never builds or calls the network.

Conventions below were read from nv-tlabs/PiD (tokenizers, inference registry,
latent noising) and from the diffusers pipelines that the release drives. See
docs/latents.md for tables and worked examples.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F

# Every release uses 16x16 pixel patches, so output sizes must be multiples of 16.
PATCH_SIZE = 16

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

Hw = Union[int, Sequence[int]]


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

    @property
    def native_image_hw(self) -> tuple[int, int] | None:
        """The only output size the release can produce, for fixed-grid encoders."""
        if self.fixed_latent_hw is None:
            return None
        cell = self.sr_scale * self.latent_spatial_down_factor
        return (self.fixed_latent_hw[0] * cell, self.fixed_latent_hw[1] * cell)

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
# Geometry
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    channels: int
    sr_scale: int
    down_factor: int
    fixed_latent_hw: tuple[int, int] | None = None
    label: str = "config"

    @property
    def cell(self) -> int:
        """Output pixels per latent cell, per axis."""
        return self.sr_scale * self.down_factor


_CONFIG_KEYS = ("lq_latent_channels", "sr_scale", "latent_spatial_down_factor")


def _geometry(backbone_or_config: Any) -> _Geometry:
    """Accept a backbone name/spec, a config mapping (a manifest's 'config' too) or a config object."""
    if isinstance(backbone_or_config, (str, BackboneSpec)):
        spec = get_backbone(backbone_or_config)
        return _Geometry(
            spec.lq_latent_channels, spec.sr_scale, spec.latent_spatial_down_factor, spec.fixed_latent_hw, spec.name
        )
    cfg = backbone_or_config
    if isinstance(cfg, Mapping) and isinstance(cfg.get("config"), Mapping):
        cfg = cfg["config"]
    get = cfg.get if isinstance(cfg, Mapping) else lambda key: getattr(cfg, key, None)
    values = {key: get(key) for key in _CONFIG_KEYS}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise ValueError(f"config lacks {', '.join(missing)}; need {', '.join(_CONFIG_KEYS)} or a backbone name")
    return _Geometry(*(int(values[key]) for key in _CONFIG_KEYS))


def _as_hw(value: Hw, what: str) -> tuple[int, int]:
    try:
        pair = (value, value) if isinstance(value, int) else tuple(value)
        h, w = (operator.index(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an int or a (height, width) pair of ints, got {value!r}") from None
    return h, w


def _check_image_hw(image_hw: Hw, g: _Geometry) -> tuple[int, int]:
    h, w = _as_hw(image_hw, "image_hw")
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if h % PATCH_SIZE or w % PATCH_SIZE:
        raise ValueError(f"image size {h}x{w} is not a multiple of the {PATCH_SIZE}-pixel patch size")
    if h % g.cell or w % g.cell:
        raise ValueError(
            f"image size {h}x{w} is not a multiple of {g.cell} (sr_scale {g.sr_scale} x latent down factor "
            f"{g.down_factor}), so no latent grid maps onto it exactly"
        )
    if g.fixed_latent_hw is not None and (h // g.cell, w // g.cell) != g.fixed_latent_hw:
        native = (g.fixed_latent_hw[0] * g.cell, g.fixed_latent_hw[1] * g.cell)
        raise ValueError(
            f"{g.label} always yields a {g.fixed_latent_hw[0]}x{g.fixed_latent_hw[1]} latent grid (its encoder "
            f"resizes every input), so the output must be {native[0]}x{native[1]}, got {h}x{w}"
        )
    return h, w


def expected_latent_shape(backbone_or_config: Any, image_hw: Hw) -> tuple[int, int, int]:
    """(C, zH, zW) of the lq_latent PiD needs for an H x W output image.

    zH = H / (sr_scale * latent_spatial_down_factor). ValueError when H or W is not
    a multiple of 16, not a multiple of that product, or (DINOv2 / SigLIP) not the
    one size their fixed encoder grid allows.
    """
    g = _geometry(backbone_or_config)
    h, w = _check_image_hw(image_hw, g)
    return (g.channels, h // g.cell, w // g.cell)


def image_size_for_latent(backbone_or_config: Any, latent_hw: Hw | torch.Size) -> tuple[int, int]:
    """Output (H, W) that a latent grid (zH, zW) decodes to.

    ``latent_hw`` may also be a full [B, C, zH, zW] or [C, zH, zW] shape; the
    last two entries are used.
    """
    g = _geometry(backbone_or_config)
    if not isinstance(latent_hw, int) and len(latent_hw) in (3, 4):
        latent_hw = tuple(latent_hw)[-2:]
    zh, zw = _as_hw(latent_hw, "latent_hw")
    if zh <= 0 or zw <= 0:
        raise ValueError(f"latent grid must be positive, got {zh}x{zw}")
    return _check_image_hw((zh * g.cell, zw * g.cell), g)


def _check(latent: Any, g: _Geometry, image_hw: Hw | None) -> tuple[int, int]:
    shape = tuple(int(s) for s in (latent.shape if hasattr(latent, "shape") else latent))
    if len(shape) != 4:
        raise ValueError(f"lq_latent must be [B, C, zH, zW], got shape {shape}")
    batch, channels, zh, zw = shape
    if image_hw is not None:
        h, w = _check_image_hw(image_hw, g)
        expected = (batch, g.channels, h // g.cell, w // g.cell)
        if shape != expected:
            raise ValueError(
                f"lq_latent shape {shape} does not fit a {h}x{w} output: expected {expected} "
                f"(C {g.channels}, zH = H / (sr_scale {g.sr_scale} * down factor {g.down_factor}))"
            )
        return h, w
    if channels != g.channels:
        raise ValueError(
            f"lq_latent has {channels} channels, expected {g.channels}: "
            f"expected shape {(batch, g.channels, zh, zw)}, got {shape}"
        )
    if zh <= 0 or zw <= 0:
        raise ValueError(f"lq_latent has an empty grid: shape {shape}")
    return _check_image_hw((zh * g.cell, zw * g.cell), g)


def check_latent(
    latent: Any, channels: int, sr_scale: int, down_factor: int, image_hw: Hw | None = None
) -> tuple[int, int]:
    """Validate an lq_latent [B, C, zH, zW] and return the (H, W) it decodes to.

    Without ``image_hw`` only the channel count is checked and the output size
    follows from the grid. With it, the image size must be a multiple of 16 and of
    sr_scale * down_factor, and the latent must be exactly
    [B, channels, H / (sr_scale * down_factor), W / (sr_scale * down_factor)].
    Errors name the expected shape. ``latent`` may be a tensor or a shape.
    """
    return _check(latent, _Geometry(int(channels), int(sr_scale), int(down_factor)), image_hw)


def check_latent_for(backbone_or_config: Any, latent: Any, image_hw: Hw | None = None) -> tuple[int, int]:
    """check_latent with the geometry of a backbone or network config."""
    return _check(latent, _geometry(backbone_or_config), image_hw)


# ---------------------------------------------------------------------------
# Layout conversions
# ---------------------------------------------------------------------------


def pack_2x2(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, 2h, 2w] -> [B, 4C, h, w]; pixel offset (i, j) of each 2x2 block goes to channel c*4 + 2i + j.

    This is Flux.2's patchify (and the layout of Flux/Qwen packed tokens).
    """
    b, c, hh, ww = latent.shape
    if hh % 2 or ww % 2:
        raise ValueError(f"pack_2x2 needs an even latent grid, got {hh}x{ww}")
    blocks = latent.reshape(b, c, hh // 2, 2, ww // 2, 2)  # b, c, y, i, x, j
    return blocks.permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, hh // 2, ww // 2)


def unpack_2x2(latent: torch.Tensor) -> torch.Tensor:
    """[B, 4C, h, w] -> [B, C, 2h, 2w]; inverse of pack_2x2 (channel c*4 + 2i + j -> offset (i, j))."""
    b, c4, h, w = latent.shape
    if c4 % 4:
        raise ValueError(f"unpack_2x2 needs a channel count divisible by 4, got {c4}")
    blocks = latent.reshape(b, c4 // 4, 2, 2, h, w)  # b, c, i, j, y, x
    return blocks.permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, h * 2, w * 2)


def tokens_to_grid(tokens: torch.Tensor, grid_hw: Hw | None = None) -> torch.Tensor:
    """Raster-order tokens [B, h*w, C] -> [B, C, h, w]. ``grid_hw`` defaults to a square grid."""
    b, n, c = tokens.shape
    if grid_hw is None:
        side = math.isqrt(n)
        grid_hw = (side, side)
    h, w = _as_hw(grid_hw, "grid_hw")
    if h * w != n:
        raise ValueError(f"{n} tokens do not fill a {h}x{w} grid")
    return tokens.reshape(b, h, w, c).permute(0, 3, 1, 2)


def grid_to_tokens(latent: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> raster-order tokens [B, h*w, C]; inverse of tokens_to_grid."""
    b, c, h, w = latent.shape
    return latent.permute(0, 2, 3, 1).reshape(b, h * w, c)


def unpack_packed_tokens(tokens: torch.Tensor, generated_hw: Hw, vae_down_factor: int = 8) -> torch.Tensor:
    """Flux / Qwen-Image pipeline tokens [B, (h/2)*(w/2), 4C] -> latent [B, C, h, w].

    ``generated_hw`` is the image size the generator was asked for; like
    diffusers, h = 2 * (H // (2 * vae_down_factor)). Each token holds a 2x2
    block of the latent, channel c*4 + 2i + j at offset (i, j).
    """
    H, W = _as_hw(generated_hw, "generated_hw")
    step = 2 * vae_down_factor
    return unpack_2x2(tokens_to_grid(tokens, (H // step, W // step)))


# ---------------------------------------------------------------------------
# Normalization: raw encoder output -> PiD latent
# ---------------------------------------------------------------------------


def _wide(x: torch.Tensor) -> torch.Tensor:
    # Normalize in at least float32 (bf16 statistics would add visible error).
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _stat(values: Any, like: torch.Tensor, count: int, what: str) -> torch.Tensor:
    stat = torch.as_tensor(values, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)
    if stat.numel() != count:
        raise ValueError(f"{what} needs {count} values, got {stat.numel()}")
    return stat


def normalize_affine(raw: torch.Tensor, scaling_factor: float, shift_factor: float) -> torch.Tensor:
    """Flux / SD3 / SDXL / Z-Image: scaling_factor * (raw - shift_factor)."""
    return (scaling_factor * (_wide(raw) - shift_factor)).to(raw.dtype)


def denormalize_affine(latent: torch.Tensor, scaling_factor: float, shift_factor: float) -> torch.Tensor:
    """Inverse of normalize_affine: latent / scaling_factor + shift_factor."""
    return (_wide(latent) / scaling_factor + shift_factor).to(latent.dtype)


def normalize_per_channel(raw: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Qwen-Image: (raw - mean[c]) / std[c] for raw [B, C, h, w]."""
    c = raw.shape[1]
    m = _stat(mean, raw, c, "mean").view(1, c, 1, 1)
    s = _stat(std, raw, c, "std").view(1, c, 1, 1)
    return ((_wide(raw) - m) / s).to(raw.dtype)


def denormalize_per_channel(latent: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    """Inverse of normalize_per_channel: latent * std[c] + mean[c]."""
    c = latent.shape[1]
    m = _stat(mean, latent, c, "mean").view(1, c, 1, 1)
    s = _stat(std, latent, c, "std").view(1, c, 1, 1)
    return (_wide(latent) * s + m).to(latent.dtype)


def normalize_flux2(
    raw: torch.Tensor, bn_running_mean: Any, bn_running_var: Any, eps: float = 1e-4
) -> torch.Tensor:
    """Flux.2: raw VAE mean [B, 32, 2h, 2w] -> PiD latent [B, 128, h, w].

    Patchify 2x2, then eval-mode BatchNorm without affine:
    (x - running_mean) / sqrt(running_var + eps). The 128 running statistics exist
    only inside the Flux.2 VAE checkpoint (diffusers ``vae.bn.running_mean`` /
    ``vae.bn.running_var``; BFL ``ae.safetensors`` keys ``bn.running_mean`` /
    ``bn.running_var``), so they are arguments here. eps is the VAE's
    batch_norm_eps, 1e-4.
    """
    packed = _wide(pack_2x2(raw))
    c = packed.shape[1]
    m = _stat(bn_running_mean, packed, c, "bn_running_mean").view(1, c, 1, 1)
    v = _stat(bn_running_var, packed, c, "bn_running_var").view(1, c, 1, 1)
    return ((packed - m) / torch.sqrt(v + eps)).to(raw.dtype)


def denormalize_flux2(
    latent: torch.Tensor, bn_running_mean: Any, bn_running_var: Any, eps: float = 1e-4
) -> torch.Tensor:
    """Inverse of normalize_flux2: PiD latent [B, 128, h, w] -> raw [B, 32, 2h, 2w] for the VAE decoder."""
    c = latent.shape[1]
    m = _stat(bn_running_mean, latent, c, "bn_running_mean").view(1, c, 1, 1)
    v = _stat(bn_running_var, latent, c, "bn_running_var").view(1, c, 1, 1)
    return unpack_2x2(_wide(latent) * torch.sqrt(v + eps) + m).to(latent.dtype)


def normalize_per_position(features: torch.Tensor, mean: Any, var: Any, eps: float = 1e-5) -> torch.Tensor:
    """DINOv2 (RAE): (features - mean[c, y, x]) / sqrt(var[c, y, x] + eps).

    ``mean`` / ``var`` are the RAE stat file's tensors, [C, h, w] (or [1, C, h, w]),
    matching the feature grid [B, C, h, w].
    """
    shape = features.shape[1:]
    m = _stat(mean, features, shape.numel(), "mean").view(1, *shape)
    v = _stat(var, features, shape.numel(), "var").view(1, *shape)
    return ((_wide(features) - m) / torch.sqrt(v + eps)).to(features.dtype)


def normalize_token_layernorm(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """SigLIP (Scale-RAE): LayerNorm over channels, no affine, for a grid [B, C, h, w]."""
    tokens = _wide(features).permute(0, 2, 3, 1)
    normed = F.layer_norm(tokens, (tokens.shape[-1],), eps=eps)
    return normed.permute(0, 3, 1, 2).to(features.dtype)


def raw_to_pid_latent(
    backbone: str | BackboneSpec,
    raw: torch.Tensor,
    *,
    stat_mean: Any = None,
    stat_var: Any = None,
) -> torch.Tensor:
    """Encoder output -> the latent PiD was trained on (what the release's tokenizer encode returns).

    ``raw`` is the backbone encoder's own output for an LQ image:

    * flux / zimage / sd3 / sdxl / qwenimage: VAE posterior mean [B, C, h, w]
      (``vae.encode(x).latent_dist.mean``; a 5-D [B, C, 1, h, w] Qwen latent is accepted).
    * flux2: VAE posterior mean [B, 32, 2h, 2w]; pass the VAE's BatchNorm
      running statistics as ``stat_mean`` / ``stat_var`` (128 values each).
    * dinov2: feature grid [B, 768, 32, 32] (or tokens [B, 1024, 768]); pass the
      RAE stat file's ``mean`` / ``var`` ([768, 32, 32]).
    * siglip: pre-final-LayerNorm features [B, 1152, 16, 16] (or tokens [B, 256, 1152]).

    Returns [B, lq_latent_channels, zH, zW] in ``raw``'s dtype.
    """
    spec = get_backbone(backbone)
    if raw.ndim == 5:
        if raw.shape[2] != 1:
            raise ValueError(f"expected a single frame, got 5-D latent {tuple(raw.shape)}")
        raw = raw[:, :, 0]
    if raw.ndim == 3 and spec.normalization in (NORM_PER_POSITION, NORM_TOKEN_LAYERNORM):
        raw = tokens_to_grid(raw)
    if raw.ndim != 4 or raw.shape[1] != spec.raw_latent_channels:
        raise ValueError(
            f"{spec.name} raw latent must be [B, {spec.raw_latent_channels}, h, w], got {tuple(raw.shape)}"
        )
    needs_stats = spec.normalization in (NORM_PATCHIFY_BATCHNORM, NORM_PER_POSITION)
    if needs_stats and (stat_mean is None or stat_var is None):
        raise ValueError(f"{spec.name} normalization needs stat_mean and stat_var: {spec.stats_source}")

    if spec.normalization == NORM_AFFINE:
        return normalize_affine(raw, spec.scaling_factor, spec.shift_factor)
    if spec.normalization == NORM_PER_CHANNEL:
        return normalize_per_channel(raw, spec.channel_mean, spec.channel_std)
    if spec.normalization == NORM_PATCHIFY_BATCHNORM:
        return normalize_flux2(raw, stat_mean, stat_var, spec.norm_eps)
    if spec.normalization == NORM_PER_POSITION:
        return normalize_per_position(raw, stat_mean, stat_var, spec.norm_eps)
    return normalize_token_layernorm(raw, spec.norm_eps)


def pipeline_latent_to_pid(
    backbone: str | BackboneSpec,
    output: torch.Tensor,
    generated_hw: Hw,
    *,
    bn_running_mean: Any = None,
    bn_running_var: Any = None,
) -> torch.Tensor:
    """A diffusers pipeline's ``output_type="latent"`` result (or a step-callback latent) -> PiD latent.

    Diffusers already returns latents in the normalized space PiD uses, except
    FLUX.2-klein (raw 32-channel latent), so this mostly unpacks tokens:

    * flux, qwenimage: packed tokens [B, (h/2)*(w/2), 64] -> [B, 16, h, w].
    * flux2: packed tokens [B, h*w, 128] -> [B, 128, h, w]. A 4-D 32-channel latent
      (Flux2KleinPipeline's final output) is patchified and BN-normalized, which
      needs ``bn_running_mean`` / ``bn_running_var`` from ``pipeline.vae.bn``.
    * sd3, sdxl, zimage: already [B, C, h, w]; returned unchanged.

    ``generated_hw`` is the (H, W) the pipeline was run at (the LQ image size).
    SDXL intermediates also need euler_to_vp. The RAE backbones are not diffusers
    pipelines: their samples are already PiD latents (siglip tokens: tokens_to_grid).
    """
    spec = get_backbone(backbone)
    if spec.normalization in (NORM_PER_POSITION, NORM_TOKEN_LAYERNORM):
        raise ValueError(
            f"{spec.name} is not a diffusers pipeline; its generator's samples are already PiD latents "
            f"(use tokens_to_grid for [B, N, C] tokens)"
        )
    if output.ndim == 5 and output.shape[2] == 1:
        output = output[:, :, 0]
    if output.ndim == 3:
        if spec.normalization == NORM_PATCHIFY_BATCHNORM:
            h, w = _as_hw(generated_hw, "generated_hw")
            cell = spec.latent_spatial_down_factor
            output = tokens_to_grid(output, (h // cell, w // cell))
        else:
            output = unpack_packed_tokens(output, generated_hw, spec.raw_down_factor)
    elif spec.normalization == NORM_PATCHIFY_BATCHNORM and output.ndim == 4 and output.shape[1] == 32:
        if bn_running_mean is None or bn_running_var is None:
            raise ValueError("a raw 32-channel Flux.2 latent needs bn_running_mean / bn_running_var (pipeline.vae.bn)")
        output = normalize_flux2(output, bn_running_mean, bn_running_var, spec.norm_eps)
    check_latent_for(spec, output)
    return output


# ---------------------------------------------------------------------------
# Noise level: scheduler frame -> PiD frame, and degradation noising
# ---------------------------------------------------------------------------


def euler_to_vp(latent: torch.Tensor, sigma_euler: float | torch.Tensor) -> tuple[torch.Tensor, Any]:
    """SDXL: Euler-frame state x0 + s_eu * eps -> PiD's VP frame.

    Both the latent and sigma are divided by sqrt(s_eu^2 + 1), which gives
    sqrt(1 - s_vp^2) * x0 + s_vp * eps with s_vp = s_eu / sqrt(s_eu^2 + 1) in [0, 1)
    (the same factor diffusers' EulerDiscreteScheduler.scale_model_input applies).
    ``sigma_euler`` is a float or a per-sample tensor [B].
    """
    if isinstance(sigma_euler, torch.Tensor):
        denom = torch.sqrt(sigma_euler.double() ** 2 + 1.0)
        scale = denom.reshape(-1, *([1] * (latent.ndim - 1))).to(latent.dtype)
        return latent / scale, (sigma_euler.double() / denom).to(sigma_euler.dtype)
    denom = math.sqrt(float(sigma_euler) ** 2 + 1.0)
    return latent / denom, float(sigma_euler) / denom


def scheduler_state_to_pid(
    backbone: str | BackboneSpec, latent: torch.Tensor, sigma: float | torch.Tensor
) -> tuple[torch.Tensor, Any]:
    """Map a generator's (latent, scheduler sigma) to PiD's (lq_latent, degrade_sigma).

    Flow-matching backbones already hold (1 - s) * x0 + s * eps with s in [0, 1],
    so degrade_sigma is the scheduler sigma as is. SDXL goes through euler_to_vp.
    """
    if get_backbone(backbone).noising == VARIANCE_PRESERVING:
        return euler_to_vp(latent, sigma)
    return latent, sigma


def _noising_form(backbone_or_form: str | BackboneSpec) -> str:
    if backbone_or_form in (FLOW_MATCHING, VARIANCE_PRESERVING):
        return backbone_or_form
    return get_backbone(backbone_or_form).noising


def noising_coefficients(backbone_or_form: str | BackboneSpec, sigma: float) -> tuple[float, float]:
    """(a, b) with noised = a * x0 + b * eps: (1 - s, s) for flow matching, (sqrt(1 - s^2), s) for SDXL."""
    s = float(sigma)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"degrade sigma must lie in [0, 1], got {s}")
    if _noising_form(backbone_or_form) == VARIANCE_PRESERVING:
        return math.sqrt(max(0.0, 1.0 - s * s)), s
    return 1.0 - s, s


def add_degradation_noise(
    backbone_or_form: str | BackboneSpec,
    clean_latent: torch.Tensor,
    sigma: float | torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noise a clean PiD latent [B, C, zH, zW] at degrade_sigma the way the backbone's decoder was trained.

    Flow matching: (1 - s) * x0 + s * eps. SDXL (variance preserving):
    sqrt(1 - s^2) * x0 + s * eps. ``sigma`` is a float or a per-sample tensor [B]
    in [0, 1]. ``noise`` defaults to a standard normal draw of the latent's shape,
    dtype and device from ``generator``; with a float sigma of 0 the latent is
    returned untouched and no noise is drawn, as in the release. Feed the same
    sigma to PiD as degrade_sigma.
    """
    form = _noising_form(backbone_or_form)
    if isinstance(sigma, torch.Tensor):
        s = sigma.to(device=clean_latent.device, dtype=torch.float32)
        if bool(((s < 0) | (s > 1)).any()):
            raise ValueError(f"degrade sigma must lie in [0, 1], got {sigma.tolist()}")
        view = (-1, *([1] * (clean_latent.ndim - 1)))
        a = torch.sqrt(torch.clamp(1.0 - s * s, min=0.0)) if form == VARIANCE_PRESERVING else 1.0 - s
        a, b = a.reshape(view).to(clean_latent.dtype), s.reshape(view).to(clean_latent.dtype)
    else:
        a, b = noising_coefficients(form, sigma)
        if b == 0.0 and noise is None:
            return clean_latent  # the release draws no noise at sigma 0
    if noise is None:
        noise = torch.randn(
            clean_latent.shape, generator=generator, device=clean_latent.device, dtype=clean_latent.dtype
        )
    elif noise.shape != clean_latent.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from latent shape {tuple(clean_latent.shape)}")
    return a * clean_latent + b * noise
