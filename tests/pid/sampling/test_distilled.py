"""The distilled sampler: schedule, determinism, explicit noise, step-invariant hoisting."""

import pytest
import torch

import pid
from pid.sampling.distilled import distilled_t_list
from tiny import TINY_V15, tiny_inputs, tiny_net


def test_schedules():
    assert distilled_t_list(4).tolist() == pytest.approx([0.999, 0.866, 0.634, 0.342, 0.0])
    assert distilled_t_list(2).tolist() == pytest.approx([0.999, 0.634, 0.0])
    assert distilled_t_list(1).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="1..4 steps"):
        distilled_t_list(5)


def test_same_seed_same_image_different_seed_different_image():
    net = tiny_net()
    inputs = tiny_inputs(net)
    decoder = pid.Decoder(net)
    first = decoder.decode(*inputs, seed=7)
    assert torch.equal(first, decoder.decode(*inputs, seed=7))
    assert not torch.equal(first, decoder.decode(*inputs, seed=8))
    assert first.shape == (2, 3, 64, 96) and first.abs().max() <= 1


def test_seed_draws_initial_noise_then_eps_in_order():
    net = tiny_net()
    inputs = tiny_inputs(net)
    generator = torch.Generator().manual_seed(11)
    noise = [torch.randn(2, 3, 64, 96, generator=generator) for _ in range(4)]
    assert torch.equal(pid.Decoder(net).decode(*inputs, seed=11), pid.Decoder(net).decode(*inputs, noise=noise))


def test_decode_equals_stepping_forward_by_hand():
    """Hoisting step-invariant work must not change the result of calling forward per step."""
    net = tiny_net(TINY_V15)
    latent, sigma, captions = tiny_inputs(net, batch=1, image_hw=(64, 64))
    noise = [torch.randn(1, 3, 64, 64) for _ in range(4)]
    t_list = pid.DISTILLED_T_LIST
    x = noise[0]
    with torch.no_grad():
        for step in range(4):
            t = torch.tensor([t_list[step]], dtype=torch.float32)
            v = net(x, t * 1000, captions, lq_latent=latent, degrade_sigma=sigma)
            x0 = (x.double() - t.double() * v.double()).float()
            x = x0 if step == 3 else (1 - t_list[step + 1]) * x0 + t_list[step + 1] * noise[step + 1]
    ours = pid.Decoder(net).decode(latent, sigma, captions, noise=noise, clamp=False)
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_progress_bar_and_timer(capsys):
    from pid.bench.timing import StageTimer

    net = tiny_net()
    timer = StageTimer()
    pid.Decoder(net).decode(*tiny_inputs(net), progress=True, timer=timer)
    assert timer.calls["network"] == 4 and timer.calls["prepare"] == 1
    assert "PiD decode" in capsys.readouterr().err
    assert "network" in timer.table()


def test_caption_mask_option():
    net = tiny_net()
    latent, sigma, captions = tiny_inputs(net)
    decoder = pid.Decoder(net)
    full = decoder.decode(latent, sigma, captions, seed=0)
    all_real = decoder.decode(latent, sigma, captions, caption_mask=torch.ones(2, 7), seed=0)
    torch.testing.assert_close(full, all_real)
    mask = torch.ones(2, 7)
    mask[:, 4:] = 0
    masked = decoder.decode(latent, sigma, captions, caption_mask=mask, seed=0)
    trimmed = decoder.decode(latent, sigma, captions[:, :4], seed=0)
    assert not torch.allclose(masked, full)
    # Masking text keys equals dropping them, except that the dropped tokens' own
    # positions no longer exist; the image stream sees the same keys either way.
    torch.testing.assert_close(masked, trimmed, rtol=1e-4, atol=1e-4)


def test_to_uint8_matches_release_truncation_and_nearest_rounding():
    images = torch.tensor([-1.0, -0.99, 0.0, 0.999, 1.0, 2.0]).view(1, 3, 1, 2)
    release = pid.to_uint8(images).permute(0, 3, 1, 2)
    assert release.flatten().tolist() == [0, 1, 127, 254, 255, 255]
    nearest = pid.to_uint8(images, rounding="nearest").permute(0, 3, 1, 2)
    assert nearest.flatten().tolist() == [0, 1, 128, 255, 255, 255]
    assert pid.to_pil(images)[0].size == (2, 1)


@pytest.mark.parametrize("overrides", [{}, TINY_V15])
def test_bf16_model_decodes_close_to_fp32(overrides):
    net = tiny_net(overrides)
    inputs = tiny_inputs(net)
    fp32 = pid.Decoder(net).decode(*inputs, seed=0)
    bf16 = pid.Decoder(net.to(torch.bfloat16)).decode(*inputs, seed=0)
    assert bf16.dtype == torch.float32
    relative = ((bf16 - fp32).norm() / fp32.norm()).item()
    assert relative < 0.05, relative


def test_forward_accepts_the_release_argument_order_and_lq_mask():
    net = tiny_net(TINY_V15)
    latent, sigma, captions = tiny_inputs(net)
    x = torch.randn(2, 3, 64, 96)
    t = torch.tensor([999.0, 500.0])
    with torch.no_grad():
        by_keyword = net(x, t, captions, lq_latent=latent, degrade_sigma=sigma)
        by_position = net(x, t, captions, None, None, None, latent, None, sigma)
        dropped = net(x, t, captions, lq_latent=latent, degrade_sigma=sigma, lq_mask=torch.tensor([1.0, 0.0]))
        zero_latent_features = net(x, t, captions, lq_latent=latent, degrade_sigma=sigma, lq_mask=torch.zeros(2))
    assert torch.equal(by_keyword, by_position)
    assert torch.equal(dropped[0], by_keyword[0]) and torch.equal(dropped[1], zero_latent_features[1])
    assert not torch.allclose(dropped[1], by_keyword[1])
