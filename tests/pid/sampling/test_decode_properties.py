"""Property test: any latent / caption / sigma / size combination either decodes to a finite image of
the right shape or is refused with a ValueError/TypeError that names the argument."""

import warnings

import torch

import hypothesis
from hypothesis import HealthCheck, given, settings, strategies as st

import pid
from tiny import tiny_net

NET = tiny_net()
CELL = NET.geometry.cell  # 32 output pixels per latent cell
ARGUMENT_NAMES = ("latent", "caption_embeds", "caption embeddings", "caption_mask", "degrade_sigma", "image_size")


def _sometimes(draw, good, bad):
    """`good` about 9 times in 10, else `bad`, so that about half of the calls are valid
    (one_of would favour the bad branch; sampled_from draws evenly)."""
    return draw(bad if draw(st.sampled_from(range(10))) == 7 else good)


@st.composite
def decode_calls(draw):
    batch = draw(st.integers(1, 2))
    latent = torch.randn(
        _sometimes(draw, st.just(batch), st.just(3)),
        _sometimes(draw, st.just(16), st.sampled_from([1, 4, 17])),
        _sometimes(draw, st.integers(1, 3), st.just(0)),
        draw(st.integers(1, 3)),
    )
    captions = torch.randn(
        _sometimes(draw, st.just(batch), st.just(3)),
        _sometimes(draw, st.integers(1, 15), st.just(0)),  # the tiny model reads 12 tokens: more are cut
        _sometimes(draw, st.just(40), st.sampled_from([1, 39])),
    )
    sigma = _sometimes(draw, st.floats(0, 1), st.one_of(
        st.floats(-0.25, 1.25, allow_nan=False), st.just(float("nan")), st.lists(st.floats(0, 1), max_size=3),
        st.just("0.5"),
    ))
    size = _sometimes(draw, st.none(), st.one_of(
        st.integers(-32, 128), st.tuples(st.integers(0, 128), st.integers(0, 128)), st.just(2.5),
    ))
    if draw(st.booleans()):
        latent, captions = latent.numpy(), captions.numpy()
    return latent, sigma, captions, size


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(decode_calls())
def test_decode_gives_a_finite_image_or_names_the_bad_argument(call):
    latent, sigma, captions, size = call
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            images = pid.Decoder(NET).decode(latent, sigma, captions, image_size=size, seed=0)
    except (ValueError, TypeError) as error:
        assert any(name in str(error) for name in ARGUMENT_NAMES), str(error)
        hypothesis.event("refused")
        return
    hypothesis.event("decoded")
    height, width = (latent.shape[2] * CELL, latent.shape[3] * CELL) if size is None else pid.sampling.geometry.as_hw(size)
    assert images.shape == (latent.shape[0], 3, height, width)
    assert torch.isfinite(images).all()
