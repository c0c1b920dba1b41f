"""pid_kernels/triton/attention.py: fused QK-RMSNorm + RoPE + joint attention vs the seam's reference."""

import pytest
import torch

import pid
import pid_kernels
from kernel_testing import FACTOR, assert_within_eager_error, fused_decode_calls, maybe_compiled, with_dtypes
from pid.model.positions import rope_2d, rope_text
from pid_kernels.runtime import interpreting
from pid_kernels.triton import attention
from tiny import tiny_inputs, tiny_net

# The release's head dims: 64 in the MM-DiT blocks (24 x 64), 72 in PiT (padded to 128 in registers).
with_head_dims = pytest.mark.parametrize("head_dim", [64, 72], ids=lambda d: f"d{d}")


def attention_args(
    batch=2, heads=2, head_dim=64, grid_hw=(7, 9), text_len=7, key_mask=False, text_rope=True, seed=0,
):
    """Seam arguments: qkv_img [B, Hs*Ws, 3HD] and, with text_len > 0, a text stream [B, Lt, 3HD]."""
    gen = torch.Generator().manual_seed(seed)
    width = heads * head_dim

    def weights():
        return tuple(torch.rand(head_dim, generator=gen) + 0.5 for _ in range(2))

    qkv_img = torch.randn(batch, grid_hw[0] * grid_hw[1], 3 * width, generator=gen)
    args = [qkv_img, weights(), rope_2d(head_dim, *grid_hw, 4, 4), heads]
    if text_len:
        mask = None
        if key_mask:
            mask = torch.rand(batch, text_len, generator=gen) > 0.4
            mask[-1] = False  # one sample whose caption is all padding: image keys only
        rope = rope_text(head_dim, text_len) if text_rope else None
        args += [torch.randn(batch, text_len, 3 * width, generator=gen), weights(), rope, mask]
    return args


@pytest.fixture
def blocks(monkeypatch):
    """blocks(m, n, fused_k_tiles, pipelined_block=None): launch config for both head-dim classes and
    square tiles for the pipelined kernel (default: the arch table)."""

    def set_blocks(block_m, block_n, fused_k_max_q_tiles, pipelined_block=None):
        value = f"BLOCK_M={block_m},BLOCK_N={block_n},FUSED_K_MAX_Q_TILES={fused_k_max_q_tiles}"
        monkeypatch.setenv("PID_TUNING_ATTENTION", value)
        monkeypatch.setenv("PID_TUNING_ATTENTION_D128", value)
        if pipelined_block:
            monkeypatch.setenv("PID_TUNING_ATTENTION_PIPELINED", f"BLOCK_M={pipelined_block},BLOCK_N={pipelined_block}")

    return set_blocks


@pytest.fixture
def pipelined_launches(monkeypatch):
    """A list that gets one entry per launch of the pipelined kernel (the path bf16/fp16 take with prepared keys)."""
    launches = []
    kernel = attention._pipelined_attention_kernel

    class Counting:
        def __getitem__(self, grid):
            launches.append(grid)
            return kernel[grid]

    monkeypatch.setattr(attention, "_pipelined_attention_kernel", Counting())
    return launches


def check(args, dtype, what):
    assert attention.supports(*args) == []
    assert_within_eager_error(maybe_compiled(attention.attention), attention.reference, args, dtype, what)


@with_dtypes
@with_head_dims
def test_joint_masked_prepared_keys(blocks, head_dim, dtype):
    """63 image + 7 text tokens over 16-row tiles: ragged tiles, the key pre-pass."""
    blocks(16, 16, 0)
    check(attention_args(head_dim=head_dim, grid_hw=(7, 9), text_len=7, key_mask=True), dtype,
          f"d{head_dim} joint masked")


@with_dtypes
@with_head_dims
def test_joint_fused_keys_single_text_token(blocks, head_dim, dtype):
    """1 text token without RoPE, keys normed in the loop."""
    blocks(16, 16, 100)
    check(attention_args(head_dim=head_dim, grid_hw=(3, 5), text_len=1, text_rope=False), dtype,
          f"d{head_dim} joint")


@with_dtypes
@with_head_dims
@pytest.mark.parametrize("fused_k_max_q_tiles", [0, 100], ids=["prepared-keys", "fused-keys"])
def test_image_only(blocks, fused_k_max_q_tiles, head_dim, dtype):
    """PiT: image-only attention, 3 heads on a 7x9 grid."""
    blocks(32, 16, fused_k_max_q_tiles)
    check(attention_args(heads=3, head_dim=head_dim, grid_hw=(7, 9), text_len=0), dtype, f"d{head_dim} image only")


# Odd shapes (flash-attention's own test habit): sequences 97 and 1025, head dims 64, 72 (64 + 16) and 40
# (32 + 16), batch 3, caption masks, in fp32 (pointer kernel) and fp16/bf16 (pipelined kernel). Sequence
# 16684 (v1 at 2048²: 300 + 16384) takes over 10 minutes per dtype in the interpreter even at one head and
# batch 1, so it runs in test_cuda_release_like_shapes only.
# (seed arguments, pipelined tile): 32-wide tiles put the text/image boundary and the ragged end inside
# tiles at sequence 97; 128 at 1025 keeps the interpreter's time down (1025 = 8 x 128 + 1: still ragged).
ODD_SHAPES = {
    "s97 d64 b3 masked": (dict(batch=3, heads=2, head_dim=64, grid_hw=(1, 90), text_len=7, key_mask=True), 32),
    "s97 d40 b3 masked": (dict(batch=3, heads=1, head_dim=40, grid_hw=(9, 10), text_len=7, key_mask=True), 32),
    "s97 d72 b3 image": (dict(batch=3, heads=1, head_dim=72, grid_hw=(1, 97), text_len=0), 32),
    "s1025 d72 image": (dict(batch=1, heads=1, head_dim=72, grid_hw=(25, 41), text_len=0), 128),
    "s1025 d64 masked": (dict(batch=1, heads=1, head_dim=64, grid_hw=(28, 36), text_len=17, key_mask=True), 128),
}


@with_dtypes
@pytest.mark.parametrize("what", ODD_SHAPES)
def test_odd_shapes(blocks, pipelined_launches, what, dtype):
    shape, pipelined_block = ODD_SHAPES[what]
    blocks(64, 64, 0, pipelined_block)
    check(attention_args(**shape), dtype, what)
    expected = 0 if dtype == torch.float32 else 1
    assert len(pipelined_launches) == expected, "fp16 and bf16 take the pipelined kernel, fp32 the pointer one"


@pytest.mark.parametrize("what", ["s97 d72 b3 image", "s97 d64 b3 masked"])
def test_odd_shapes_without_deferred_pv(blocks, monkeypatch, what):
    """The P.V schedule of sm100/sm120 (DEFER_PV=0: each block's own P.V after its softmax); the tests
    above run sm90's (the interpreter's table), which issues it one key block later."""
    shape, pipelined_block = ODD_SHAPES[what]
    blocks(64, 64, 0)
    monkeypatch.setenv("PID_TUNING_ATTENTION_PIPELINED",
                       f"BLOCK_M={pipelined_block},BLOCK_N={pipelined_block},DEFER_PV=0")
    assert attention.pipelined_launch(shape["head_dim"])[0]["DEFER_PV"] is False
    check(attention_args(**shape), torch.bfloat16, what)


def test_head_split_keeps_useful_mma_work():
    assert attention.head_split(72) == (64, 16) and attention.head_split(40) == (32, 16)
    assert attention.head_split(64) == (64, 0) and attention.head_split(100) == (128, 0)
    assert attention.mma_useful_fraction(72, pipelined=True) == 0.9
    assert attention.mma_useful_fraction(72, pipelined=False) == 72 / 128


def test_dispatch_entry_can_pick_sdpa(monkeypatch):
    args = attention_args(head_dim=64, grid_hw=(3, 5), text_len=7)
    assert attention.dispatch(64, 22) == {"backend": "ours", "entry": "d64_short", "measured": "no"}
    monkeypatch.setenv("PID_TUNING_ATTENTION_DISPATCH", "d64_short=sdpa")
    assert "ATTENTION_DISPATCH['d64_short'] picks sdpa (measured: no)" in attention.supports(*args)


def test_long_caption_default_tuning():
    """300 caption tokens (the release's maximum) with the arch table's own tiles, d64, bf16."""
    args = attention_args(heads=1, head_dim=64, grid_hw=(3, 5), text_len=300, key_mask=True)
    assert_within_eager_error(
        maybe_compiled(attention.attention), attention.reference, args, torch.bfloat16, "lt 300"
    )


def test_returns_no_text_output_without_text():
    out_img, out_txt = attention.attention(*attention_args(grid_hw=(3, 5), text_len=0))
    assert out_img.shape == (2, 15, 128) and out_txt is None


def test_fake_impl_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        args = attention_args(head_dim=64, grid_hw=(3, 5), text_len=7, key_mask=True)
        out_img, out_txt = attention.attention(*args)
    assert out_img.shape == (2, 15, 128) and out_txt.shape == (2, 7, 128)


def test_supports_reasons(monkeypatch):
    args = attention_args(head_dim=64, grid_hw=(3, 5), text_len=7, key_mask=True)
    qkv_img, img_norm, img_rope, heads, qkv_txt, txt_norm, txt_rope, mask = args

    def reasons(**changes):
        named = dict(qkv_img=qkv_img, img_qk_norm=img_norm, img_rope=img_rope, num_heads=heads,
                     qkv_txt=qkv_txt, txt_qk_norm=txt_norm, txt_rope=txt_rope, txt_key_mask=mask)
        return " ".join(attention.supports(**{**named, **changes}))

    assert reasons() == ""
    assert "dtype float64" in reasons(qkv_img=qkv_img.double(), qkv_txt=qkv_txt.double())
    assert "qkv_txt dtype" in reasons(qkv_txt=qkv_txt.half())
    wide = torch.randn(2, 15, 3 * 2 * 130)
    assert "head dim 130" in reasons(qkv_img=wide, img_qk_norm=(torch.ones(130),) * 2, img_rope=None, qkv_txt=None,
                                     txt_key_mask=None)
    assert "not [B, L, 3 * 5 heads" in reasons(num_heads=5)
    assert "does not match qkv_img" in reasons(qkv_txt=qkv_txt[..., :-6])
    assert "rope cos shape" in reasons(img_rope=rope_2d(64, 3, 4, 4, 4))
    assert "k norm weight shape" in reasons(txt_qk_norm=(txt_norm[0], torch.ones(32)))
    assert "without q/k norm weights" in reasons(txt_qk_norm=None)
    assert "txt_key_mask torch.float32" in reasons(txt_key_mask=mask.float())
    assert "without a text stream" in reasons(qkv_txt=None)
    assert "channels are not contiguous" in reasons(qkv_img=qkv_img.transpose(1, 2).contiguous().transpose(1, 2))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "CPU tensor" in reasons()


def test_enabled_in_tiny_decode():
    """The tiny model's MM-DiT (joint, masked caption) and PiT (image-only) attentions, fused, strictly."""
    net = tiny_net()
    latent, sigma, captions = tiny_inputs(net, text_len=7)
    caption_mask = torch.ones(2, 7, dtype=torch.bool)
    caption_mask[0, 4:] = False
    calls = fused_decode_calls(net, (latent, sigma, captions), [attention.NAME], caption_mask=caption_mask)
    assert calls[attention.NAME] > 0


@pytest.mark.parametrize("case", ["v1_tiny", "v15_tiny"])
def test_golden_bf16_through_pipelined_kernel(golden, blocks, pipelined_launches, case):
    """A golden forward in bf16 with every attention on the pipelined kernel (keys prepared everywhere),
    against the float32 golden velocity: ||d||_2 within FACTOR x the eager bf16 forward's (the golden
    README's rule for bf16 paths: PyTorch's own bf16 error on the same case)."""
    g = golden(case)
    blocks(16, 16, 0)
    net = pid.load(g.weights(), config=g.config, dtype=torch.bfloat16)
    inputs = [g[f"inputs.{name}"] for name in ("x_t", "t", "y", "lq_latent", "degrade_sigma")]
    x_t, t, y, lq_latent, degrade_sigma = [x.bfloat16() if x.is_floating_point() else x for x in inputs]
    truth = g["outputs.velocity"].double()

    def error():
        with torch.no_grad():
            velocity = net(x_t, t, y, lq_latent=lq_latent, degrade_sigma=degrade_sigma)
        return ((velocity.double() - truth).norm() / truth.norm()).item()

    eager = error()
    pid_kernels.enable([attention.NAME], strict=True)
    try:
        ours = error()
    finally:
        pid_kernels.disable([attention.NAME])
    assert pipelined_launches, "the pipelined kernel did not run"
    assert ours <= FACTOR * eager, f"{case}: bf16 relative L2 error {ours:.3e} > {FACTOR} x eager {eager:.3e}"


# Compiled for the GPU with the arch table's tiles: v1's 2048² sequence (300 + 16384) at 2 heads, 24x64
# joint with 300 masked text tokens (pipelined), 16x72 PiT on a 32x32 grid, and a short joint case
# (keys normed in the loop).
GPU_CASES = {
    "d64-joint-s16684": dict(batch=1, heads=2, head_dim=64, grid_hw=(128, 128), text_len=300, key_mask=True),
    "d64-joint-lt300": dict(batch=1, heads=24, head_dim=64, grid_hw=(32, 32), text_len=300, key_mask=True),
    "d72-image-only": dict(batch=2, heads=16, head_dim=72, grid_hw=(32, 32), text_len=0),
    "d64-joint-short": dict(batch=2, heads=3, head_dim=64, grid_hw=(7, 9), text_len=7),
}


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", GPU_CASES)
def test_cuda_release_like_shapes(case, dtype):
    assert not interpreting()
    on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else
              (tuple(t.cuda() for t in a) if isinstance(a, tuple) else a) for a in attention_args(**GPU_CASES[case])]
    check(on_gpu, dtype, case)
