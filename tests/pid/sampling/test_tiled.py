"""Tiled decode: geometry, the blend window, and a tiled decode against the untiled one.

The seam test runs a tiny PiDNet made local on purpose (attention outputs, LQ GroupNorm
gains and the pixel position table zeroed), so that away from tile edges a tile sees exactly
what the whole image sees: there the tiled decode must equal the untiled one, and any
difference must sit near seams. The plain random network mixes every patch through
attention, so there the error is reported, not bounded.
"""

import torch
import pytest

import pid
from pid.sampling.tiled import TileSpec, plan_tiles, tile_starts
from tiny import tiny_inputs, tiny_net

CELL = 32  # tiny net: sr_scale 4 x latent down factor 8
# Border reach of the LQ convs in the local net: 2 convs + 1 per res block, in patches of 16 px.
REACH = 3 * 16


def test_tiles_cover_the_image_and_weights_sum_to_one():
    assert tile_starts(12, 8, 4) == [0, 4]
    assert tile_starts(20, 8, 2) == [0, 6, 12]
    assert tile_starts(20, 8, 4) == [0, 4, 8, 12]
    assert tile_starts(5, 8, 2) == [0]
    plan = plan_tiles((20, 13), CELL, TileSpec(256, 64))
    total = torch.zeros(20 * CELL, 13 * CELL)
    for tile in plan:
        assert tile.weight.min() > 0
        total[slice(*tile.rows), slice(*tile.cols)] += tile.weight
    torch.testing.assert_close(total, torch.ones_like(total))


def test_bad_tiles_are_refused():
    net = tiny_net()
    latent, sigma, captions = tiny_inputs(net, batch=1, image_hw=(128, 128))
    decoder = pid.Decoder(net)
    with pytest.raises(ValueError, match="multiple of the latent cell"):
        decoder.decode(latent, sigma[:1], captions, tiles=100)
    with pytest.raises(ValueError, match="smaller than the tile"):
        decoder.decode(latent, sigma[:1], captions, tiles=(64, 64))
    with pytest.raises(ValueError, match="image_size must be"):
        decoder.decode(latent, sigma[:1], captions, tiles=64, image_size=(64, 64))


def test_one_tile_is_the_untiled_decode():
    net = tiny_net()
    latent, sigma, captions = tiny_inputs(net, batch=2, image_hw=(64, 96))
    decoder = pid.Decoder(net)
    assert torch.equal(decoder.decode(latent, sigma, captions, seed=3, tiles=256), decoder.decode(latent, sigma, captions, seed=3))


def _local(net):
    """Make every output pixel depend only on nearby latent cells (see the module docstring)."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            is_attn_out = ".attn.proj" in name
            is_lq_groupnorm = name.startswith("lq_proj.latent_proj.") and ".block." in name and param.dim() == 1 and name.endswith("weight")
            if is_attn_out or is_lq_groupnorm:
                param.zero_()
    net._pixel_positions = lambda hw, device, dtype: torch.zeros(hw[0] * hw[1], net.pixel_dim, device=device, dtype=dtype)
    return net


def _far_from_seams(plan, image_hw, reach):
    """Pixels that every covering tile holds at least `reach` px away from its inner edges."""
    far = torch.ones(image_hw, dtype=torch.bool)
    for tile in plan:
        inside = torch.zeros(image_hw, dtype=torch.bool)
        (r0, r1), (c0, c1) = tile.rows, tile.cols
        inside[r0:r1, c0:c1] = True
        ok = inside.clone()
        rows, cols = torch.arange(image_hw[0])[:, None], torch.arange(image_hw[1])[None, :]
        if r0 > 0:
            ok &= rows >= r0 + reach
        if r1 < image_hw[0]:
            ok &= rows < r1 - reach
        if c0 > 0:
            ok &= cols >= c0 + reach
        if c1 < image_hw[1]:
            ok &= cols < c1 - reach
        far &= ~inside | ok
    return far


def test_tiled_decode_differs_only_near_seams(capsys):
    image_hw, spec = (384, 384), TileSpec(256, 128)
    plan = plan_tiles((12, 12), CELL, spec)
    far = _far_from_seams(plan, image_hw, REACH)
    assert 0.2 < far.float().mean() < 0.9  # both regions are populated
    report = []
    for label, net in (("local net", _local(tiny_net())), ("random net", tiny_net())):
        latent, sigma, captions = tiny_inputs(net, batch=1, image_hw=image_hw)
        decoder = pid.Decoder(net)
        whole = decoder.decode(latent, sigma[:1], captions, seed=7)
        tiled = decoder.decode(latent, sigma[:1], captions, seed=7, tiles=spec)
        error = (tiled - whole).abs().amax(dim=(0, 1))
        far_max, near_max = error[far].max().item(), error[~far].max().item()
        report.append(f"{label}: max |tiled - untiled| {far_max:.2e} far from seams, {near_max:.2e} near seams")
        if label == "local net":
            assert far_max < 1e-5, report[-1]
            assert near_max > 1e-3, "the seam band should show the tiles' edge effects"
    # Dominant activations per tile, from shapes (no memory tracker in this tree yet): pixel
    # stream + 6 adaLN chunks + 4x MLP hidden, float32, per output pixel of the largest tile.
    tile_pixels = max((t.rows[1] - t.rows[0]) * (t.cols[1] - t.cols[0]) for t in plan)
    per_pixel = 11 * tiny_net().pixel_dim * 4
    report.append(f"dominant activations: {tile_pixels * per_pixel / 2**20:.1f} MiB per tile vs "
                  f"{image_hw[0] * image_hw[1] * per_pixel / 2**20:.1f} MiB untiled (shape estimate)")
    with capsys.disabled():
        print("\n" + "\n".join(report))


def test_cli_decode_tile(tmp_path):
    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    from pid.cli import commands as cli
    from pid.io.captions import save_caption_embeds

    net = tiny_net()
    pid.save_safetensors(net, tmp_path / "tiny.safetensors")
    latent, _, captions = tiny_inputs(net, batch=1)
    save_file({"latent": latent}, str(tmp_path / "latent.safetensors"))
    save_caption_embeds(tmp_path / "captions.safetensors", captions, embed_dim=captions.shape[-1])
    out = tmp_path / "tiled.png"
    assert cli.main([
        "decode", "--checkpoint", str(tmp_path / "tiny.safetensors"), "--latent", str(tmp_path / "latent.safetensors"),
        "--caption-embeds", str(tmp_path / "captions.safetensors"), "--seed", "3", "--dtype", "fp32",
        "--tile", "64:32", "--out", str(out),
    ]) == 0
    expected = pid.to_uint8(pid.Decoder(net).decode(latent, 0.0, captions, seed=3, tiles=(64, 32)))[0]
    assert torch.equal(torch.from_numpy(np.array(Image.open(out))), expected)
