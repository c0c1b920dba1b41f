"""The chunked per-pixel work (PiT blocks, final layer, position table, joint q/k) gives today's
unchunked arithmetic bit for bit in float32 on CPU."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import pid
from pid import seams
from pid.bench.decode import CPU_OVERRIDES
from pid.configs import DEFAULT_CHECKPOINT, released_config
from pid.model.blocks import MODULATION_CHUNKS
from pid.model.network import build_model
from pid.model.positions import _sincos_1d, pixel_position_table
from pid.model.random_weights import randomize_
from pid.sampling.distilled import Decoder

TINY = {**released_config(DEFAULT_CHECKPOINT), **CPU_OVERRIDES}
# 64 patches per chunk: 8 chunks of the test images. Chunks of 16 patches also match on this
# CPU; chunks of 1 or 5 do not (1e-5: tiny GEMMs take another BLAS path, another summation order).
CHUNK_PIXELS = 64 * 256


def _tiny_net(config=TINY):
    with torch.device("meta"):
        net = build_model(config)
    return randomize_(net.to_empty(device="cpu"), 0).eval()


def _unchunked_pit_block(block, pixels, patch_condition, batch, rope):
    """The PiT block as it was computed before chunking: the whole image's modulation at once."""
    tokens, pixels_per_patch, _ = pixels.shape
    modulation = block.adaLN_modulation(patch_condition).view(tokens, pixels_per_patch, -1)
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = modulation.chunk(MODULATION_CHUNKS, dim=-1)
    attn_in = seams.rmsnorm_modulate(pixels, block.norm1.weight, shift_a, scale_a)
    compressed = block.compress_to_attn(attn_in.reshape(batch, tokens // batch, -1))
    expanded = block.expand_from_attn(block.attn(compressed, rope))
    pixels = seams.gated_residual(pixels, gate_a, expanded.view_as(pixels))
    hidden = seams.rmsnorm_modulate(pixels, block.norm2.weight, shift_m, scale_m)
    hidden = F.linear(F.gelu(F.linear(hidden, block.mlp.fc1.weight, block.mlp.fc1.bias)), block.mlp.fc2.weight,
                      block.mlp.fc2.bias)
    return pixels + gate_m * hidden


@torch.no_grad()
def test_pit_block_chunks_match_the_unchunked_block(monkeypatch):
    net = _tiny_net()
    block = net.pixel_blocks[0]
    batch, tokens = 2, 256  # 256 patches per image: 8 chunks
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch * tokens, 256, net.pixel_dim, generator=generator)
    condition = torch.randn(batch * tokens, net.hidden_size, generator=generator)
    rope = net._rope_tables((16, 16), 16, torch.device("cpu"))[2]
    expected = _unchunked_pit_block(block, pixels, condition, batch, rope)
    monkeypatch.setattr(seams, "PIXEL_CHUNK", CHUNK_PIXELS)
    assert torch.equal(block(pixels.clone(), condition, batch, rope), expected)

    class Opaque(torch.nn.Module):  # a module without plain weights (as pid.quant's): run whole, sliced
        def __init__(self, linear):
            super().__init__()
            self.linear = linear

        def forward(self, x):
            return self.linear(x)

    block.adaLN_modulation[0] = Opaque(block.adaLN_modulation[0])
    assert torch.equal(block(pixels.clone(), condition, batch, rope), expected)


@torch.no_grad()
def test_chunked_decode_is_bit_identical_in_float32(monkeypatch):
    net = _tiny_net()
    latent, sigma, captions = pid.example_inputs(net, 256, batch=2, caption_tokens=16)
    sigma = torch.tensor([0.0, 0.3])
    whole = Decoder(net).decode(latent, sigma, captions, seed=1)  # 256 patches: one chunk
    monkeypatch.setattr(seams, "PIXEL_CHUNK", CHUNK_PIXELS)
    net._table_cache.clear()
    assert torch.equal(Decoder(net).decode(latent, sigma, captions, seed=1), whole)


def test_banded_position_table_matches_the_whole_table():
    height, width, dim = 48, 32, 16
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    whole = torch.cat([_sincos_1d(dim // 2, cols.reshape(-1)), _sincos_1d(dim // 2, rows.reshape(-1))], dim=1)
    for band_pixels in (1, 5 * width, height * width):
        banded = pixel_position_table(dim, height, width, band_pixels=band_pixels)
        assert torch.equal(banded, whole)
        assert torch.equal(pixel_position_table(dim, height, width, dtype=torch.float32, band_pixels=band_pixels),
                           whole.float())
