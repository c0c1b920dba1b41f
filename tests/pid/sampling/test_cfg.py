"""Tests of the CFG sampler for the undistilled PiD v1.5 checkpoints (CPU, stub networks)."""

import math

import pytest
import torch

from pid.sampling.cfg import (
    DEFAULT_CFG_SCALE,
    DEFAULT_STEPS,
    dynamic_shift,
    flow_schedule,
    resolve_shift,
    sample_cfg,
    shift_time,
)


# --------------------------------------------------------------------------------------------
# Stub networks with known flows
# --------------------------------------------------------------------------------------------


class GaussianNet:
    """Exact velocity of x0 ~ N(mu, s^2) per element, with mu, s read from the caption.

    mu = y[b, 0, 0] + 0.1 * mean(latent[b]), s = y[b, 0, 1]. Records every call.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, y, lq_latent=None, degrade_sigma=None):
        assert lq_latent is not None and degrade_sigma is not None
        assert t.dtype == torch.float32 and t.shape == (x.shape[0],)
        assert degrade_sigma.dtype == torch.float32 and degrade_sigma.shape == (x.shape[0],)
        self.calls.append({"t": t.clone(), "y": y.clone(), "batch": x.shape[0], "sigma": degrade_sigma.clone()})
        tt = (t / 1000.0).double().view(-1, 1, 1, 1)
        mu = (y[:, 0, 0].double() + 0.1 * lq_latent.double().mean(dim=(1, 2, 3))).view(-1, 1, 1, 1)
        s = y[:, 0, 1].double().view(-1, 1, 1, 1)
        a = 1.0 - tt
        var = a * a * s * s + tt * tt
        x0_mean = mu + a * s * s / var * (x.double() - a * mu)
        return ((x.double() - x0_mean) / tt).to(x.dtype)


class PointNet:
    """Velocity of a point mass at c = y[b, 0, 0]: v = (x - c) / t. Every solver lands on c."""

    def __call__(self, x, t, y, lq_latent=None, degrade_sigma=None):
        tt = (t / 1000.0).view(-1, 1, 1, 1)
        c = y[:, 0, 0].view(-1, 1, 1, 1)
        return (x - c) / tt


def _inputs(batch=2, length=3, width=4):
    lq = torch.cos(torch.arange(batch * 4 * 2 * 3, dtype=torch.float64) * 0.7).reshape(batch, 4, 2, 3).float()
    yc = torch.zeros(batch, length, width)
    yu = torch.zeros(batch, length, width)
    yc[:, 0, 0] = torch.tensor([0.3, -0.2])[:batch]
    yc[:, 0, 1] = torch.tensor([0.5, 0.8])[:batch]
    yu[:, 0, 0] = torch.tensor([-0.1, 0.4])[:batch]
    yu[:, 0, 1] = torch.tensor([0.9, 0.3])[:batch]
    sigma = torch.tensor([0.0, 0.3])[:batch]
    noise = torch.sin(torch.arange(batch * 12, dtype=torch.float64) * 1.3 + 0.2).reshape(batch, 3, 2, 2).float()
    return lq, sigma, yc, yu, noise


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------


def test_shift_formula():
    assert shift_time(0.5, 1.0) == 0.5
    assert shift_time(0.25, 4.0) == pytest.approx(1.0 / 1.75)
    assert shift_time(0.0, 6.0) == 0.0
    assert shift_time(1.0, 6.0) == pytest.approx(1.0)


@pytest.mark.parametrize("steps", [1, 2, 5, 25, 50])
@pytest.mark.parametrize("shift", [1.0, 6.0, 8.485])
def test_schedule_shape_endpoints_monotone(steps, shift):
    ts = flow_schedule(steps, shift)
    assert ts.dtype == torch.float32 and ts.shape == (steps + 1,)
    assert ts[-1].item() == 0.0
    assert ts[0].item() == pytest.approx(shift * 0.999 / (1 + (shift - 1) * 0.999), abs=1e-6)
    assert ts[0].item() < 1.0
    assert bool((ts[1:] < ts[:-1]).all())


def test_schedule_matches_shifted_uniform_grid():
    steps, shift = 10, 6.0
    ts = flow_schedule(steps, shift).double()
    unshifted = torch.tensor([0.999 * (steps - k) / steps for k in range(steps + 1)], dtype=torch.float64)
    expected = shift * unshifted / (1 + (shift - 1) * unshifted)
    torch.testing.assert_close(ts, expected, atol=1e-6, rtol=0)
    # shift 1 leaves the uniform grid 0.999 ... 0
    torch.testing.assert_close(flow_schedule(steps, 1.0).double(), unshifted, atol=1e-6, rtol=0)
    # exact release values for shift 6, 25 steps (first two and the last nonzero)
    ts25 = flow_schedule(25, 6.0)
    assert ts25[0].item() == pytest.approx(5.994 / 5.995, abs=1e-6)
    s = 0.999 / 25
    assert ts25[-2].item() == pytest.approx(6 * s / (1 + 5 * s), abs=1e-6)


def test_dynamic_shift():
    assert dynamic_shift(2048, 2048) == pytest.approx(6.0)
    assert dynamic_shift(4096, 4096) == pytest.approx(6.0 * math.sqrt(2.0))
    assert dynamic_shift(2160, 3840) == pytest.approx(6.0 * math.sqrt(math.sqrt(2160 * 3840) / 2048))
    assert dynamic_shift(1024, 1024, base_shift=3.0, base_image_size=1024) == pytest.approx(3.0)
    assert resolve_shift(None, 4096, 4096) == pytest.approx(6.0 * math.sqrt(2.0))
    assert resolve_shift(2.5, 4096, 4096) == 2.5
    with pytest.raises(ValueError):
        resolve_shift(0.0, 64, 64)
    with pytest.raises(ValueError):
        dynamic_shift(0, 64)


def test_schedule_argument_errors():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            flow_schedule(bad, 6.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            flow_schedule(4, bad)
    with pytest.raises(ValueError):
        flow_schedule(4, 6.0, t_min=1.0)


def test_defaults_are_the_release_ones():
    assert DEFAULT_STEPS == 25
    assert DEFAULT_CFG_SCALE == 5.0


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 25])
def test_point_mass_is_exact_for_any_step_count(steps):
    lq, sigma, yc, yu, noise = _inputs()
    out = sample_cfg(PointNet(), lq, sigma, yc, None, steps=steps, cfg_scale=1.0, shift=6.0, noise=noise, clamp=False)
    expected = yc[:, 0, 0].view(-1, 1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("scale", [0.0, 2.0, 5.0])
def test_guidance_extrapolates_between_point_masses(scale):
    lq, sigma, yc, yu, noise = _inputs()
    out = sample_cfg(PointNet(), lq, sigma, yc, yu, steps=6, cfg_scale=scale, shift=6.0, noise=noise, clamp=False)
    cu, cc = yu[:, 0, 0], yc[:, 0, 0]
    expected = (cu + scale * (cc - cu)).view(-1, 1, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


# Results of the release's own solver (DPM-Solver++ multistep, order 2, FLOW schedule,
# time_uniform_flow grid, two-call text CFG) on GaussianNet with the _inputs() tensors, run in
# float64. Our float32 sampler must agree to ~1e-6.
_RELEASE_REFERENCE = {
    (5, 3.0, 6.0): [
        0.660183, 0.4202663, 0.6192415, 0.9656094, 0.9519403, 0.5982594, 0.4227101, 0.6824725,
        0.9969941, 0.9055, 0.5420293, 0.4390674, -2.2236996, -3.2315309, -2.610786, -1.2708574,
        -1.1747438, -2.4632518, -3.2487141, -2.3804267, -1.1304326, -1.3299761, -2.6867255, -3.2130398,
    ],
    (3, 1.0, 2.0): [
        0.3397855, 0.5080167, 0.368494, 0.1256184, 0.1352033, 0.3832067, 0.5063031, 0.324156,
        0.1036113, 0.1677676, 0.4226357, 0.4948332, -0.2305045, -0.6238269, -0.3815712, 0.1413574,
        0.1788673, -0.3239936, -0.6305329, -0.2916698, 0.1961605, 0.1182854, -0.4112078, -0.6166104,
    ],
    (8, 5.0, 6.0): [
        0.3066933, 0.1188169, 0.2746324, 0.5458698, 0.5351657, 0.2582016, 0.1207306, 0.324148,
        0.5704468, 0.4987987, 0.2141683, 0.1335398, -10.2087322, -14.201907, -11.7424249, -6.4334326,
        -6.0526167, -11.157873, -14.2699892, -10.8297078, -5.8770491, -6.6676696, -12.0433085, -14.1286423,
    ],
}


@pytest.mark.parametrize("case", sorted(_RELEASE_REFERENCE))
def test_matches_release_solver_reference(case):
    steps, scale, shift = case
    lq, sigma, yc, yu, noise = _inputs()
    out = sample_cfg(GaussianNet(), lq, sigma, yc, yu, steps=steps, cfg_scale=scale, shift=shift, noise=noise, clamp=False)
    ref = torch.tensor(_RELEASE_REFERENCE[case], dtype=torch.float32).reshape(out.shape)
    torch.testing.assert_close(out, ref, atol=2e-5 * max(1.0, ref.abs().max().item()), rtol=0)


def test_second_order_convergence_to_exact_flow():
    # Without guidance the exact ODE keeps w = (x_t - (1-t) mu) / sqrt((1-t)^2 s^2 + t^2) constant
    # and ends at mu + s * w; the solve starts from the noise at the grid's first time t0 < 1.
    lq, sigma, yc, _, _ = _inputs()
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    mu = (yc[:, 0, 0] + 0.1 * lq.mean(dim=(1, 2, 3))).view(-1, 1, 1, 1).double()
    s = yc[:, 0, 1].view(-1, 1, 1, 1).double()
    errs = {}
    for steps in (40, 80, 160):
        t0 = flow_schedule(steps, 1.0)[0].double()
        w = (noise.double() - (1 - t0) * mu) / torch.sqrt((1 - t0) ** 2 * s * s + t0 * t0)
        out = sample_cfg(GaussianNet(), lq, sigma, yc, None, steps=steps, cfg_scale=1.0, shift=1.0, noise=noise, clamp=False)
        errs[steps] = (out.double() - (mu + s * w)).abs().max().item()
    assert errs[160] < 1e-3
    # close to 4x per halving (second order); a first-order method would give 2x
    assert errs[40] / errs[80] > 2.5 and errs[80] / errs[160] > 2.5


def test_cfg_scale_one_equals_conditional_only():
    lq, sigma, yc, yu, noise = _inputs()
    net_a, net_b, net_c = GaussianNet(), GaussianNet(), GaussianNet()
    a = sample_cfg(net_a, lq, sigma, yc, None, steps=6, cfg_scale=1.0, shift=6.0, noise=noise, clamp=False)
    b = sample_cfg(net_b, lq, sigma, yc, yu, steps=6, cfg_scale=1.0, shift=6.0, noise=noise, clamp=False)
    # guidance with identical branches is the conditional run as well
    c = sample_cfg(net_c, lq, sigma, yc, yc, steps=6, cfg_scale=5.0, shift=6.0, noise=noise, clamp=False)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, c, atol=1e-6, rtol=0)
    assert len(net_a.calls) == 6 and len(net_b.calls) == 6 and len(net_c.calls) == 12
    assert all(torch.equal(call["y"], yc) for call in net_b.calls)


def test_network_inputs_per_step():
    lq, sigma, yc, yu, noise = _inputs()
    net = GaussianNet()
    steps = 5
    sample_cfg(net, lq, sigma, yc, yu, steps=steps, cfg_scale=4.0, shift=6.0, noise=noise, clamp=False)
    times = flow_schedule(steps, 6.0)
    assert len(net.calls) == 2 * steps
    for i in range(steps):
        uncond, cond = net.calls[2 * i], net.calls[2 * i + 1]  # release order: unconditional first
        expected_t = (times[i] * 1000.0).expand(2)
        assert torch.equal(uncond["t"], expected_t) and torch.equal(cond["t"], expected_t)
        assert torch.equal(uncond["y"], yu) and torch.equal(cond["y"], yc)
        assert torch.equal(cond["sigma"], sigma)
    assert net.calls[0]["t"][0].item() == pytest.approx(999.83, abs=0.01)


def test_batched_cfg_matches_two_calls():
    lq, sigma, yc, yu, noise = _inputs()
    net = GaussianNet()
    a = sample_cfg(GaussianNet(), lq, sigma, yc, yu, steps=5, cfg_scale=3.0, shift=6.0, noise=noise, clamp=False)
    b = sample_cfg(net, lq, sigma, yc, yu, steps=5, cfg_scale=3.0, shift=6.0, noise=noise, batch_cfg=True, clamp=False)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert len(net.calls) == 5 and all(call["batch"] == 4 for call in net.calls)


def test_determinism_and_noise_sources():
    lq, sigma, yc, yu, noise = _inputs()
    kw = dict(steps=4, cfg_scale=5.0, shift=6.0, clamp=False)
    a = sample_cfg(GaussianNet(), lq, sigma, yc, yu, noise=noise, **kw)
    b = sample_cfg(GaussianNet(), lq, sigma, yc, yu, noise=noise.clone(), **kw)
    assert torch.equal(a, b)
    g1 = sample_cfg(GaussianNet(), lq, sigma, yc, yu, generator=torch.Generator().manual_seed(7), image_size=(2, 2), **kw)
    g2 = sample_cfg(GaussianNet(), lq, sigma, yc, yu, generator=torch.Generator().manual_seed(7), image_size=(2, 2), **kw)
    g3 = sample_cfg(GaussianNet(), lq, sigma, yc, yu, generator=torch.Generator().manual_seed(8), image_size=(2, 2), **kw)
    assert torch.equal(g1, g2) and not torch.equal(g1, g3)
    # the generator draws exactly one randn of the output shape
    drawn = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(g1, sample_cfg(GaussianNet(), lq, sigma, yc, yu, noise=drawn, **kw))
    assert not torch.equal(noise, a)  # the noise tensor is not modified in place
    assert torch.equal(noise, _inputs()[4])


def test_dynamic_shift_is_default_and_broadcasting():
    lq, sigma, yc, yu, noise = _inputs()
    shift = dynamic_shift(2, 2)
    a = sample_cfg(GaussianNet(), lq, sigma, yc, yu, steps=3, cfg_scale=2.0, noise=noise, clamp=False)
    b = sample_cfg(GaussianNet(), lq, sigma, yc, yu, steps=3, cfg_scale=2.0, shift=shift, noise=noise, clamp=False)
    assert torch.equal(a, b)
    # a single negative embedding and a scalar sigma broadcast over the batch
    yu_same = yu[:1]
    c = sample_cfg(GaussianNet(), lq, 0.2, yc, yu_same, steps=3, cfg_scale=2.0, shift=6.0, noise=noise, clamp=False)
    d = sample_cfg(GaussianNet(), lq, torch.tensor([0.2, 0.2]), yc, yu_same.expand(2, -1, -1), steps=3,
                   cfg_scale=2.0, shift=6.0, noise=noise, clamp=False)
    assert torch.equal(c, d)
    raw = sample_cfg(GaussianNet(), lq, sigma, yc, yu, steps=3, cfg_scale=5.0, shift=6.0, noise=noise, clamp=False)
    clamped = sample_cfg(GaussianNet(), lq, sigma, yc, yu, steps=3, cfg_scale=5.0, shift=6.0, noise=noise)
    assert raw.abs().max().item() > 1.0 and torch.equal(clamped, raw.clamp(-1, 1))


def test_argument_errors():
    lq, sigma, yc, yu, noise = _inputs()
    net = GaussianNet()
    kw = dict(steps=2, cfg_scale=2.0, shift=6.0)
    with pytest.raises(TypeError):
        sample_cfg(None, lq, sigma, yc, yu, noise=noise, **kw)
    with pytest.raises(ValueError, match="latent"):
        sample_cfg(net, lq[0], sigma, yc, yu, noise=noise, **kw)
    with pytest.raises(ValueError, match="uncond_embeds"):
        sample_cfg(net, lq, sigma, yc, None, noise=noise, **kw)
    with pytest.raises(ValueError, match="steps"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise, steps=0, cfg_scale=2.0)
    with pytest.raises(ValueError, match="cfg_scale"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise, steps=2, cfg_scale=float("nan"))
    with pytest.raises(ValueError, match="shift"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise, steps=2, cfg_scale=2.0, shift=-1.0)
    with pytest.raises(ValueError, match="noise"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise[:1], **kw)
    with pytest.raises(ValueError, match="noise"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise[:, :1], **kw)
    with pytest.raises(ValueError, match="image_size"):
        sample_cfg(net, lq, sigma, yc, yu, **kw)
    with pytest.raises(ValueError, match="disagrees"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise, image_size=(4, 4), **kw)
    with pytest.raises(ValueError, match="either noise or generator"):
        sample_cfg(net, lq, sigma, yc, yu, noise=noise, generator=torch.Generator(), **kw)
    with pytest.raises(ValueError, match="caption_embeds"):
        sample_cfg(net, lq, sigma, torch.zeros(3, 3, 4), yu, noise=noise, **kw)
    with pytest.raises(ValueError, match="caption_embeds"):
        sample_cfg(net, lq, sigma, yc[0], yu, noise=noise, **kw)
    with pytest.raises(ValueError, match="width"):
        sample_cfg(net, lq, sigma, yc, torch.zeros(2, 3, 5), noise=noise, **kw)
    with pytest.raises(ValueError, match="degrade_sigma"):
        sample_cfg(net, lq, torch.zeros(3), yc, yu, noise=noise, **kw)
    with pytest.raises(ValueError, match="image_size"):
        sample_cfg(net, lq, sigma, yc, yu, image_size=(0, 4), **kw)

    def wrong_shape(x, t, y, **_):
        return x[:, :1]

    with pytest.raises(ValueError, match="net returned shape"):
        sample_cfg(wrong_shape, lq, sigma, yc, yu, noise=noise, **kw)
