"""Bad inputs fail with errors that say what was expected."""

import pytest
import torch

import pid
from tiny import tiny_inputs, tiny_net


@pytest.fixture(scope="module")
def net():
    return tiny_net()


def test_wrong_latent_channels(net):
    latent, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match=r"expected \[B, 16, 2, 3\]"):
        pid.Decoder(net).decode(latent[:, :4], sigma, captions)


def test_latent_does_not_fit_image_size(net):
    latent, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match=r"expected \[B, 16, 4, 4\].*decodes to 64x96"):
        pid.Decoder(net).decode(latent, sigma, captions, image_size=128)


def test_image_size_not_multiple_of_16(net):
    latent, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match="multiples of 16"):
        pid.Decoder(net).decode(latent, sigma, captions, image_size=(60, 96))
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.zeros(2, 3, 40, 96), torch.ones(2), captions, lq_latent=latent, degrade_sigma=sigma)


def test_image_size_not_whole_latent_cells(net):
    latent, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match="multiples of 32"):
        pid.Decoder(net).decode(latent, sigma, captions, image_size=(48, 96))


@pytest.mark.parametrize("where", ["latent", "caption_embeds"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(net, where, bad):
    latent, sigma, captions = tiny_inputs(net)
    (latent if where == "latent" else captions).view(-1)[5] = bad
    with pytest.raises(ValueError, match=f"{where} contains 1 NaN/Inf"):
        pid.Decoder(net).decode(latent, sigma, captions)


@pytest.mark.parametrize("sigma", [-0.1, 1.5])
def test_sigma_out_of_range(net, sigma):
    latent, _, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match=r"degrade_sigma must lie in \[0, 1\]"):
        pid.Decoder(net).decode(latent, sigma, captions)


def test_batch_mismatches(net):
    latent, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match="caption embeddings have batch 1, expected 2"):
        pid.Decoder(net).decode(latent, sigma, captions[:1])
    with pytest.raises(ValueError, match="degrade_sigma must hold 1 or B=2 values"):
        pid.Decoder(net).decode(latent, torch.tensor([0.1, 0.2, 0.3]), captions)
    with pytest.raises(ValueError, match="latent has batch 1, expected 2"):
        net(torch.zeros(2, 3, 64, 96), torch.ones(2), captions, lq_latent=latent[:1], degrade_sigma=sigma)
    with pytest.raises(ValueError, match="noise\\[1\\] has shape"):
        pid.Decoder(net).decode(latent, sigma, captions, noise=[torch.zeros(2, 3, 64, 96), torch.zeros(1), *[torch.zeros(2, 3, 64, 96)] * 2])


def test_caption_shape(net):
    latent, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match=r"must be \[B, L, 40\]"):
        pid.Decoder(net).decode(latent, sigma, captions[..., :10])


def test_missing_latent(net):
    _, sigma, captions = tiny_inputs(net)
    with pytest.raises(ValueError, match="PiD decodes a latent"):
        net(torch.zeros(2, 3, 64, 96), torch.ones(2), captions, lq_latent=None, degrade_sigma=sigma)


def test_unsupported_constructor_options():
    with pytest.raises(NotImplementedError, match="lq_in_channels=3 is not supported"):
        pid.build_model({"lq_in_channels": 3})
