"""Tests for pid.latents.backbones: backbone registry, latent geometry, conversions and noising."""

import json
import math

import pytest
import torch

from pid.latents.backbones import (
    BACKBONES,
    CKPT_TYPES,
    FLOW_MATCHING,
    VARIANCE_PRESERVING,
    backbone_names,
    check_latent_for,
    expected_latent_shape,
    get_backbone,
    get_checkpoint,
    image_size_for_latent,
)
from pid.latents.transforms import (
    add_degradation_noise,
    denormalize_affine,
    denormalize_flux2,
    denormalize_per_channel,
    euler_to_vp,
    grid_to_tokens,
    noising_coefficients,
    normalize_flux2,
    pack_2x2,
    pipeline_latent_to_pid,
    raw_to_pid_latent,
    scheduler_state_to_pid,
    tokens_to_grid,
    unpack_2x2,
    unpack_packed_tokens,
)
from conftest import GOLDEN_DIR

MANIFEST_DIR = GOLDEN_DIR / "manifests"

ALL_NAMES = [
    "flux", "flux2", "flux2-klein-4b", "flux2-klein-9b", "sd3", "sdxl",
    "qwenimage", "qwenimage-2512", "zimage", "zimage-turbo", "dinov2", "siglip",
]  # fmt: skip


# --- registry -----------------------------------------------------------------


def test_every_backbone_resolves():
    assert set(backbone_names()) == set(ALL_NAMES)
    assert set(backbone_names(include_aliases=False)) == set(ALL_NAMES) - {
        "flux2-klein-4b",
        "flux2-klein-9b",
        "qwenimage-2512",
    }
    for name in ALL_NAMES:
        assert get_backbone(name).lq_latent_channels > 0


@pytest.mark.parametrize(
    "alias, canonical",
    [("flux2-klein-4b", "flux2"), ("flux2-klein-9b", "flux2"), ("qwenimage-2512", "qwenimage"),
     ("FLUX2_KLEIN_4B", "flux2"), (" Qwenimage-2512 ", "qwenimage")],
)  # fmt: skip
def test_aliases_resolve(alias, canonical):
    assert get_backbone(alias) is BACKBONES[canonical]


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_backbone("flux3")
    message = str(err.value)
    assert "flux3" in message
    for name in ALL_NAMES:
        assert name in message


@pytest.mark.parametrize(
    "name, ckpt_type, checkpoint, sr_scale",
    [
        ("flux", "2k", "PiD_res2k_sr4x_official_flux_distill_4step", 4),
        ("flux", "2kto4k_v1pt5", "PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step", 4),
        ("zimage", "2k", "PiD_res2k_sr4x_official_flux_distill_4step", 4),
        ("zimage-turbo", "2kto4k_v1pt5", "PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step", 4),
        ("flux2", "2k", "PiD_res2k_sr4x_official_flux2_distill_4step", 4),
        ("flux2-klein-9b", "2kto4k_v1pt5", "PiD_v1pt5_res2kto4k_sr4x_official_flux2_distill_4step", 4),
        ("sd3", "2k", "PiD_res2k_sr4x_official_sd3_distill_4step", 4),
        ("sd3", "2kto4k", "PiD_res2kto4k_sr4x_official_sd3_distill_4step", 4),
        ("sdxl", "2kto4k", "PiD_res2kto4k_sr4x_official_sdxl_distill_4step", 4),
        ("qwenimage-2512", "2kto4k_v1pt5", "PiD_v1pt5_res2kto4k_sr4x_official_qwenimage_distill_4step", 4),
        ("dinov2", "2k", "PiD_res2k_sr4x_official_dinov2_distill_4step", 4),
        ("siglip", "2k", "PiD_res2k_sr8x_official_siglip_distill_4step", 8),
    ],
)
def test_released_checkpoints(name, ckpt_type, checkpoint, sr_scale):
    ckpt = get_checkpoint(name, ckpt_type)
    assert ckpt.name == checkpoint
    assert ckpt.ckpt_type == ckpt_type
    assert ckpt.sr_scale == sr_scale == get_backbone(name).sr_scale
    assert ckpt.weights_path == f"checkpoints/{checkpoint}/model_ema_bf16.pth"
    assert ckpt.arch == ("v1.5" if ckpt_type == "2kto4k_v1pt5" else "v1")


def test_missing_checkpoint_lists_released_types():
    with pytest.raises(ValueError, match="released: 2kto4k$"):
        get_checkpoint("sdxl", "2k")
    with pytest.raises(ValueError, match="released: 2k$"):
        get_checkpoint("siglip", "2kto4k_v1pt5")
    with pytest.raises(ValueError, match="valid: 2k, 2kto4k, 2kto4k_v1pt5"):
        get_checkpoint("flux", "4k")


def test_specs_agree_with_golden_manifests():
    if not MANIFEST_DIR.is_dir():
        pytest.skip("golden manifests not available")
    seen = set()
    for path in sorted(MANIFEST_DIR.glob("*.json")):
        manifest = json.loads(path.read_text())
        config, derived = manifest["config"], manifest["derived"]
        for key in manifest["registry_keys"]:
            name, ckpt_type = key.split("/")
            spec, ckpt = get_backbone(name), get_checkpoint(name, ckpt_type)
            seen.add((name, ckpt_type))
            assert ckpt.name in manifest["checkpoint_names"]
            assert ckpt.manifest == path.stem
            assert spec.lq_latent_channels == config["lq_latent_channels"]
            assert spec.latent_spatial_down_factor == config["latent_spatial_down_factor"]
            assert ckpt.sr_scale == config["sr_scale"]
            assert list(expected_latent_shape(spec, derived["at_image_hw"])) == derived["latent_shape_chw"]
            assert expected_latent_shape(manifest, derived["at_image_hw"]) == tuple(derived["latent_shape_chw"])
    registered = {(alias, c.ckpt_type) for s in BACKBONES.values() for alias in (s.name, *s.aliases)
                  for c in s.checkpoints}  # fmt: skip
    assert seen == registered


# --- geometry -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, shape",
    [
        ("flux", (16, 64, 64)),
        ("zimage", (16, 64, 64)),
        ("zimage-turbo", (16, 64, 64)),
        ("sd3", (16, 64, 64)),
        ("qwenimage", (16, 64, 64)),
        ("sdxl", (4, 64, 64)),
        ("flux2", (128, 32, 32)),
        ("flux2-klein-4b", (128, 32, 32)),
        ("dinov2", (768, 32, 32)),
        ("siglip", (1152, 16, 16)),
    ],
)
def test_expected_shape_at_2048(name, shape):
    assert expected_latent_shape(name, (2048, 2048)) == shape
    assert expected_latent_shape(name, 2048) == shape
    assert image_size_for_latent(name, shape[1:]) == (2048, 2048)


def test_non_square_and_4k():
    assert expected_latent_shape("flux", (2048, 3072)) == (16, 64, 96)
    assert expected_latent_shape("flux2", (3840, 2176)) == (128, 60, 34)
    assert expected_latent_shape("sdxl", (4096, 4096)) == (4, 128, 128)
    assert image_size_for_latent("flux2", (1, 128, 60, 34)) == (3840, 2176)


def test_config_geometry_matches_golden_tiny_cases():
    v1_tiny = {"lq_latent_channels": 16, "sr_scale": 4, "latent_spatial_down_factor": 8}
    assert expected_latent_shape(v1_tiny, (64, 96)) == (16, 2, 3)
    sr8_tiny = {"lq_latent_channels": 96, "sr_scale": 8, "latent_spatial_down_factor": 16}
    assert check_latent_for(sr8_tiny, torch.zeros(1, 96, 1, 2), (128, 256)) == (128, 256)
    assert image_size_for_latent(sr8_tiny, (1, 2)) == (128, 256)
    with pytest.raises(ValueError, match="lacks sr_scale"):
        expected_latent_shape({"lq_latent_channels": 16, "latent_spatial_down_factor": 8}, 64)


def test_channel_mismatch_names_expected_shape():
    with pytest.raises(ValueError, match=r"expected \[B, 128, 32, 32\]"):
        check_latent_for("flux2", torch.zeros(2, 32, 32, 32))
    v1 = {"lq_latent_channels": 16, "sr_scale": 4, "latent_spatial_down_factor": 8}
    with pytest.raises(ValueError, match=r"expected \[B, 16, 64, 64\]"):
        check_latent_for(v1, torch.zeros(1, 4, 64, 64), image_hw=(2048, 2048))


def test_spatial_mismatch_names_expected_shape():
    with pytest.raises(ValueError, match=r"expected \[B, 16, 64, 96\]"):
        check_latent_for("flux", torch.zeros(1, 16, 96, 64), image_hw=(2048, 3072))
    assert check_latent_for("flux", torch.zeros(1, 16, 64, 96), image_hw=(2048, 3072)) == (2048, 3072)
    assert check_latent_for("sdxl", (3, 4, 32, 48)) == (1024, 1536)


def test_bad_image_sizes():
    with pytest.raises(ValueError, match="multiple of the 16-pixel patch"):
        expected_latent_shape("flux", (2040, 2048))
    with pytest.raises(ValueError, match="not a multiple of 64"):
        expected_latent_shape("flux2", (2080, 2048))  # 16-aligned, but not 64-aligned
    with pytest.raises(ValueError, match="must be 2048x2048"):
        expected_latent_shape("dinov2", (1024, 1024))
    with pytest.raises(ValueError, match="must be 2048x2048"):
        check_latent_for("siglip", torch.zeros(1, 1152, 8, 8))
    with pytest.raises(ValueError, match=r"\[B, C, zH, zW\]"):
        check_latent_for("flux", torch.zeros(16, 64, 64))
    with pytest.raises(ValueError, match="pair of ints"):
        expected_latent_shape("flux", (2048.0, 2048))


# --- layouts ------------------------------------------------------------------


def test_unpack_2x2_index_rule():
    # Channel c*4 + 2i + j of cell (y, x) goes to pixel (2y + i, 2x + j) of channel c.
    packed = torch.randn(2, 12, 3, 5)
    unpacked = unpack_2x2(packed)
    assert unpacked.shape == (2, 3, 6, 10)
    for c in range(3):
        for i in range(2):
            for j in range(2):
                assert torch.equal(unpacked[:, c, i::2, j::2], packed[:, c * 4 + 2 * i + j])


def test_pack_unpack_round_trip():
    raw = torch.randn(2, 32, 8, 12)
    assert pack_2x2(raw).shape == (2, 128, 4, 6)
    assert torch.equal(unpack_2x2(pack_2x2(raw)), raw)
    packed = torch.randn(1, 128, 4, 6)
    assert torch.equal(pack_2x2(unpack_2x2(packed)), packed)
    with pytest.raises(ValueError, match="even"):
        pack_2x2(torch.zeros(1, 4, 3, 4))


def test_tokens_grid_round_trip():
    grid = torch.randn(2, 7, 3, 5)
    tokens = grid_to_tokens(grid)
    assert torch.equal(tokens[:, 1 * 5 + 4], grid[:, :, 1, 4])  # raster order
    assert torch.equal(tokens_to_grid(tokens, (3, 5)), grid)
    assert tokens_to_grid(torch.zeros(1, 256, 1152)).shape == (1, 1152, 16, 16)


def test_unpack_packed_tokens_layout():
    # Flux / Qwen tokens: one token per 2x2 latent block, channel c*4 + 2i + j.
    tokens = torch.randn(1, 4 * 6, 64)  # 64x96 image -> 8x12 latent -> 4x6 tokens
    latent = unpack_packed_tokens(tokens, (64, 96))
    assert latent.shape == (1, 16, 8, 12)
    y, x, c, i, j = 2, 5, 7, 1, 0
    assert latent[0, c, 2 * y + i, 2 * x + j] == tokens[0, y * 6 + x, c * 4 + 2 * i + j]


# --- normalization ------------------------------------------------------------


def test_affine_backbones():
    raw = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    for name, scale, shift in [("flux", 0.3611, 0.1159), ("zimage", 0.3611, 0.1159), ("sd3", 1.5305, 0.0609)]:
        latent = raw_to_pid_latent(name, raw)
        assert torch.allclose(latent, scale * (raw - shift))
        assert torch.allclose(denormalize_affine(latent, scale, shift), raw)
    sdxl_raw = torch.randn(1, 4, 8, 8)
    assert torch.allclose(raw_to_pid_latent("sdxl", sdxl_raw), 0.13025 * sdxl_raw)
    with pytest.raises(ValueError, match=r"\[B, 4, h, w\]"):
        raw_to_pid_latent("sdxl", raw)


def test_qwen_per_channel_accepts_5d():
    spec = get_backbone("qwenimage-2512")
    raw = torch.randn(1, 16, 1, 4, 6, dtype=torch.float64)
    latent = raw_to_pid_latent(spec, raw)
    mean = torch.tensor(spec.channel_mean, dtype=torch.float64).view(1, 16, 1, 1)
    std = torch.tensor(spec.channel_std, dtype=torch.float64).view(1, 16, 1, 1)
    assert torch.allclose(latent, (raw[:, :, 0] - mean) / std)
    assert torch.allclose(denormalize_per_channel(latent, spec.channel_mean, spec.channel_std), raw[:, :, 0])


def test_flux2_matches_eval_batchnorm():
    torch.manual_seed(0)
    raw = torch.randn(2, 32, 8, 6) * 3 + 1
    mean, var = torch.randn(128), torch.rand(128) * 4 + 0.1
    bn = torch.nn.BatchNorm2d(128, eps=1e-4, affine=False).eval()
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    latent = raw_to_pid_latent("flux2-klein-4b", raw, stat_mean=mean, stat_var=var)
    assert latent.shape == (2, 128, 4, 3)
    torch.testing.assert_close(latent, bn(pack_2x2(raw)))
    torch.testing.assert_close(denormalize_flux2(latent, mean, var), raw)
    with pytest.raises(ValueError, match="stat_mean and stat_var"):
        raw_to_pid_latent("flux2", raw)
    with pytest.raises(ValueError, match="128 values"):
        normalize_flux2(raw, mean[:32], var[:32])


def test_rae_backbones():
    features = torch.randn(1, 768, 32, 32, dtype=torch.float64)
    mean, var = torch.randn(768, 32, 32, dtype=torch.float64), torch.rand(768, 32, 32, dtype=torch.float64)
    latent = raw_to_pid_latent("dinov2", features, stat_mean=mean, stat_var=var)
    assert torch.allclose(latent, (features - mean) / torch.sqrt(var + 1e-5))
    assert torch.equal(raw_to_pid_latent("dinov2", grid_to_tokens(features), stat_mean=mean, stat_var=var), latent)

    tokens = torch.randn(2, 256, 1152) * 5 + 2
    latent = raw_to_pid_latent("siglip", tokens)
    assert latent.shape == (2, 1152, 16, 16)
    expected = torch.nn.functional.layer_norm(tokens, (1152,), eps=1e-6)
    torch.testing.assert_close(grid_to_tokens(latent), expected)


def test_pipeline_latents():
    # FluxPipeline / QwenImagePipeline return packed tokens at the LQ image size.
    tokens = torch.randn(1, 32 * 32, 64)  # 512 px -> 64x64 latent -> 32x32 tokens
    assert pipeline_latent_to_pid("flux", tokens, (512, 512)).shape == (1, 16, 64, 64)
    assert torch.equal(pipeline_latent_to_pid("qwenimage", tokens, 512), unpack_packed_tokens(tokens, 512))
    # Flux2Pipeline: raster tokens of the 128-channel latent.
    latent = torch.randn(1, 128, 32, 24)
    assert torch.equal(pipeline_latent_to_pid("flux2", grid_to_tokens(latent), (512, 384)), latent)
    # Flux2KleinPipeline: raw 32-channel latent, needs the VAE's BN statistics.
    raw = torch.randn(1, 32, 64, 48)
    mean, var = torch.randn(128), torch.rand(128) + 0.5
    klein = pipeline_latent_to_pid("flux2-klein-4b", raw, (512, 384), bn_running_mean=mean, bn_running_var=var)
    assert torch.equal(klein, normalize_flux2(raw, mean, var))
    with pytest.raises(ValueError, match="bn_running_mean"):
        pipeline_latent_to_pid("flux2-klein-9b", raw, (512, 384))
    # SD3 / SDXL / Z-Image: already [B, C, h, w].
    sdxl = torch.randn(1, 4, 128, 128)
    assert pipeline_latent_to_pid("sdxl", sdxl, 1024) is sdxl
    with pytest.raises(ValueError, match="expected 16"):
        pipeline_latent_to_pid("zimage-turbo", sdxl, 1024)
    with pytest.raises(ValueError, match="not a diffusers pipeline"):
        pipeline_latent_to_pid("dinov2", torch.zeros(1, 768, 32, 32), 512)


# --- noising ------------------------------------------------------------------


def test_noising_forms():
    assert get_backbone("sdxl").noising == VARIANCE_PRESERVING
    for name in set(ALL_NAMES) - {"sdxl"}:
        assert get_backbone(name).noising == FLOW_MATCHING
    x0, eps = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4)
    torch.testing.assert_close(add_degradation_noise("flux", x0, 0.3, noise=eps), 0.7 * x0 + 0.3 * eps)
    torch.testing.assert_close(add_degradation_noise("sdxl", x0, 0.6, noise=eps), 0.8 * x0 + 0.6 * eps)
    a, b = noising_coefficients(VARIANCE_PRESERVING, 0.37)
    assert math.isclose(a * a + b * b, 1.0)
    assert noising_coefficients("qwenimage-2512", 0.25) == (0.75, 0.25)
    assert noising_coefficients("sdxl", 1.0) == (0.0, 1.0)


def test_noising_per_sample_sigma():
    x0, eps = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    sigma = torch.tensor([0.0, 0.5, 0.8])
    out = add_degradation_noise("sdxl", x0, sigma, noise=eps)
    for k, s in enumerate(sigma.tolist()):
        torch.testing.assert_close(out[k], math.sqrt(1 - s * s) * x0[k] + s * eps[k])
    out = add_degradation_noise("flux2", x0, sigma, noise=eps)
    torch.testing.assert_close(out[2], 0.2 * x0[2] + 0.8 * eps[2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_degradation_noise("flux", x0, torch.tensor([0.1, 1.5, 0.2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_degradation_noise("flux", x0, -0.1)


def test_noising_generator_and_sigma_zero():
    x0 = torch.randn(1, 16, 4, 4)
    gen = torch.Generator().manual_seed(7)
    assert add_degradation_noise("flux", x0, 0.0, generator=gen) is x0  # no draw at sigma 0
    first = add_degradation_noise("flux", x0, 0.4, generator=gen)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, 0.6 * x0 + 0.4 * eps)


def test_sdxl_euler_frame_to_vp():
    x0, eps = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, 8, dtype=torch.float64)
    sigma_eu = 3.0
    latent_vp, sigma_vp = scheduler_state_to_pid("sdxl", x0 + sigma_eu * eps, sigma_eu)
    assert math.isclose(sigma_vp, 3.0 / math.sqrt(10.0))
    torch.testing.assert_close(latent_vp, add_degradation_noise("sdxl", x0, sigma_vp, noise=eps))
    sigmas = torch.tensor([0.0, 3.0], dtype=torch.float64)
    latents, sigmas_vp = euler_to_vp(x0 + sigmas.view(2, 1, 1, 1) * eps, sigmas)
    torch.testing.assert_close(sigmas_vp, torch.tensor([0.0, 3.0 / math.sqrt(10.0)], dtype=torch.float64))
    torch.testing.assert_close(latents[0], x0[0])
    # Flow-matching backbones keep the scheduler's (latent, sigma) as they are.
    flux_latent = torch.randn(1, 16, 4, 4)
    same_latent, same_sigma = scheduler_state_to_pid("flux", flux_latent, 0.42)
    assert same_latent is flux_latent and same_sigma == 0.42


def test_ckpt_types_constant():
    assert CKPT_TYPES == ("2k", "2kto4k", "2kto4k_v1pt5")
