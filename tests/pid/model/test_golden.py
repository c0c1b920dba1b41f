"""The fp32 path against the official implementation's golden vectors, through the public API."""

import pytest
import torch

import pid
from conftest import FORWARD_CASES, SAMPLER_CASES, assert_golden_close


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_forward_velocity(golden, case):
    g = golden(case)
    net = pid.build_model(g.config)
    net.load_state_dict({k[len("net."):]: v for k, v in g.weights().items()}, strict=True)
    net.eval()
    with torch.no_grad():
        velocity = net(
            g["inputs.x_t"], g["inputs.t"], g["inputs.y"],
            lq_latent=g["inputs.lq_latent"], degrade_sigma=g["inputs.degrade_sigma"],
        )
    assert_golden_close(velocity, g["outputs.velocity"], case)


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_loaded_forward_and_intermediates(golden, case):
    g = golden(case)
    net = pid.load(g.weights(), config=g.config)
    x = g["inputs.x_t"]
    with torch.no_grad():
        context = net.prepare(g["inputs.y"], g["inputs.lq_latent"], g["inputs.degrade_sigma"], tuple(x.shape[-2:]))
        conditioning = net.timestep_conditioning(g["inputs.t"])
        assert_golden_close(conditioning.t_emb.squeeze(1), g["intermediates.t_emb"], "t_emb")
        for index, feature in enumerate(context.lq_features):
            assert_golden_close(feature, g[f"intermediates.lq_proj.{index}"], f"lq_proj.{index}")
        if context.pit_lq_feature is not None:
            pit_index = len(context.lq_features)
            assert_golden_close(context.pit_lq_feature, g[f"intermediates.lq_proj.{pit_index}"], "pit feature")
        velocity = net.velocity(x, context, conditioning)
    assert_golden_close(velocity, g["outputs.velocity"], case)


def test_aux_rgb_head(golden):
    g = golden("v15_tiny")
    net = pid.load(g.weights(), config=g.config)
    x = g["inputs.x_t"]
    grid = (x.shape[-2] // 16, x.shape[-1] // 16)
    with torch.no_grad():
        rgb = net.lq_proj.predict_lq_rgb(g["inputs.lq_latent"], grid)
    assert_golden_close(rgb, g["outputs.aux_pred_lq_rgb"], "aux rgb")


@pytest.mark.parametrize("case", SAMPLER_CASES)
def test_sampler_explicit_noise(golden, case):
    g = golden(case)
    net = pid.load(g.weights(), config=g.config)
    noise = [g["sampler.noise"]] + [g[f"sampler.eps.{i}"] for i in range(3)]
    inputs = (g["sampler.inputs.lq_latent"], g["sampler.inputs.degrade_sigma"], g["sampler.inputs.y"])
    decoder = pid.Decoder(net)
    x0 = decoder.decode(*inputs, noise=noise, clamp=False)
    assert_golden_close(x0, g["sampler.x0"], f"{case} sampler x0")
    images = decoder.decode(*inputs, noise=noise)
    assert torch.equal(images, x0.clamp(-1, 1))
    torch.testing.assert_close(torch.tensor(pid.DISTILLED_T_LIST), g["sampler.t_list"], rtol=0, atol=0)


def test_sampler_per_step_velocities(golden):
    g = golden("v1_tiny")
    net = pid.load(g.weights(), config=g.config)
    seen = []
    original = net.pixel_features

    def record(x_t, context, conditioning):
        pixels = original(x_t, context, conditioning)
        final = net.final_layer
        seen.append(pid.seams.pixels_to_image(
            pixels, final.norm.weight, final.linear.weight, final.linear.bias, context.image_hw, 16
        ))
        return pixels

    net.pixel_features = record
    noise = [g["sampler.noise"]] + [g[f"sampler.eps.{i}"] for i in range(3)]
    pid.Decoder(net).decode(
        g["sampler.inputs.lq_latent"], g["sampler.inputs.degrade_sigma"], g["sampler.inputs.y"], noise=noise
    )
    assert len(seen) == 4
    for step, velocity in enumerate(seen):
        assert_golden_close(velocity, g[f"sampler.v.{step}"], f"v.{step}")
