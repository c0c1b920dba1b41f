"""fp8 attention: the vectorized reference against a one-pass kernel loop written out, and
its error against float32 attention."""

import pytest
import torch
import torch.nn.functional as F

from pid import seams
from pid.quant.attention import BLOCK, INT8_MAX, RECIPES, attention_core, attention_op
from pid.quant.fp8 import E4M3, E4M3_MAX


def _quantized_blocks(x, fmt, per_channel=False):
    """Per 128-token block (or per channel over all tokens) -> (quantized values, their scales
    broadcastable to x), both float32."""
    limit = INT8_MAX if fmt == "int8" else E4M3_MAX
    if per_channel:
        scale = (x.abs().amax(dim=2, keepdim=True) / limit).clamp_min(1e-12)
        return (x / scale).clamp(-limit, limit).to(E4M3).float(), scale
    values, scales = torch.empty_like(x), torch.empty_like(x[..., :1])
    for start in range(0, x.shape[2], BLOCK):
        block = x[:, :, start : start + BLOCK]
        scale = (block.abs().amax(dim=(-2, -1), keepdim=True) / limit).clamp_min(1e-12)
        scaled = (block / scale).clamp(-limit, limit)
        values[:, :, start : start + BLOCK] = scaled.round() if fmt == "int8" else scaled.to(E4M3).float()
        scales[:, :, start : start + BLOCK] = scale
    return values, scales


def kernel_loop(q, k, v, key_mask, recipe):
    """The one-pass kernel, block by block: integer / e4m3 QK^T scaled afterwards, running max,
    rescaled accumulator, float32 statistics."""
    q, k, v = q.float(), k.float(), v.float()
    if recipe.smooth_k:
        k = k - k.mean(dim=2, keepdim=True)
    (q, q_scale), (k, k_scale) = _quantized_blocks(q, recipe.qk_format), _quantized_blocks(k, recipe.qk_format)
    v, v_scale = _quantized_blocks(v, "e4m3", per_channel=recipe.v_scaling == "channel")
    scores = (q @ k.transpose(-1, -2)) * (q_scale * k_scale.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask, float("-inf"))
    shape = scores.shape[:-1]
    running_max = torch.full(shape, float("-inf"))
    row_sum, acc = torch.zeros(shape), torch.zeros(*shape, v.shape[-1])
    for start in range(0, k.shape[2], BLOCK):
        block = scores[..., start : start + BLOCK]
        new_max = torch.maximum(running_max, block.amax(-1))
        safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
        probs = torch.exp(block - safe[..., None])
        alpha = torch.exp(running_max - safe)  # 0 while the running max is still -inf
        row_sum = row_sum * alpha + probs.sum(-1)
        probs_q = (probs * recipe.p_scale).to(E4M3).float()
        v_block = v[:, :, start : start + BLOCK]
        if recipe.v_scaling == "channel":  # per channel: the scale factors out of the token sum
            partial = (probs_q @ v_block) * v_scale
        else:
            partial = (probs_q @ v_block) * v_scale[:, :, start : start + 1]
        acc = acc * alpha[..., None] + partial / recipe.p_scale
        running_max = new_max
    return acc / row_sum[..., None]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
@pytest.mark.parametrize("length,head_dim,masked", [(300, 64, True), (97, 72, False), (256, 72, False)])
def test_reference_matches_the_kernel_loop(recipe, length, head_dim, masked):
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(2, 3, length, head_dim, generator=gen) for _ in range(3))
    k = k + 0.7  # a shared key offset: what K smoothing removes
    key_mask = None
    if masked:
        key_mask = torch.ones(2, length, dtype=torch.bool)
        key_mask[1, :150] = False  # the whole first block of sample 1 hidden
        key_mask = key_mask[:, None, None, :]
    ours = attention_core(q, k, v, key_mask, RECIPES[recipe])
    torch.testing.assert_close(ours, kernel_loop(q, k, v, key_mask, RECIPES[recipe]), rtol=1e-4, atol=1e-5)
    exact = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    assert (ours - exact).norm() / exact.norm() < 0.12


def test_sage_is_the_more_accurate_recipe_on_normalized_queries_and_keys():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 300, 64, generator=gen) for _ in range(3))
    exact = F.scaled_dot_product_attention(q, k, v)
    errors = {name: ((attention_core(q, k, v, None, recipe) - exact).norm() / exact.norm()).item()
              for name, recipe in RECIPES.items()}
    assert errors["sage"] < errors["fa3"], errors


def test_attention_op_has_the_seam_signature():
    gen = torch.Generator().manual_seed(1)
    qkv_img, qkv_txt = torch.randn(2, 20, 3 * 128, generator=gen), torch.randn(2, 7, 3 * 128, generator=gen)
    norms = (torch.ones(64), torch.ones(64))
    rope = (torch.ones(20, 32), torch.zeros(20, 32))
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    args = (qkv_img, norms, rope, 2)
    kwargs = dict(qkv_txt=qkv_txt, txt_qk_norm=norms, txt_rope=(torch.ones(7, 32), torch.zeros(7, 32)),
                  txt_key_mask=mask)
    out_img, out_txt = attention_op("sage")(*args, **kwargs)
    ref_img, ref_txt = seams.attention.reference(*args, **kwargs)
    assert out_img.shape == ref_img.shape and out_txt.shape == ref_txt.shape
    assert (out_img - ref_img).norm() / ref_img.norm() < 0.06
    assert attention_op("fa3")(*args)[1] is None
    with pytest.raises(ValueError, match="unknown fp8 attention recipe"):
        attention_op("int4")
