"""Bad input through the Python API: the exception type and a message naming the argument."""

import warnings

import numpy as np
import pytest
import torch

import pid
from pid.sampling.cfg import sample_cfg
from pid.sampling.checks import as_dtype
from tiny import tiny_inputs, tiny_net


@pytest.fixture(scope="module")
def net():
    return tiny_net()


@pytest.fixture(scope="module")
def good(net):
    return tiny_inputs(net)


def _decode(net, good, **changes):
    latent, sigma, captions = good
    kwargs = {"latent": latent, "degrade_sigma": sigma, "caption_embeds": captions, "seed": 0, **changes}
    return pid.Decoder(net).decode(**kwargs)


def _with_nan(tensor):
    tensor = tensor.clone()
    tensor.view(-1)[0] = float("nan")
    return tensor


# (case id, changes to a good decode call, exception type, message fragment)
DECODE_CASES = [
    ("latent-float", {"latent": 1.0}, TypeError, "latent must be a torch.Tensor"),
    ("latent-list", {"latent": [[1.0]]}, TypeError, "latent must be a torch.Tensor"),
    ("latent-int-tensor", {"latent": torch.zeros(2, 16, 2, 3, dtype=torch.int64)}, TypeError, "latent must hold floating"),
    ("latent-3d", {"latent": torch.zeros(16, 2, 3)}, ValueError, "latent must be [B, C, zH, zW]"),
    ("latent-channels", {"latent": torch.zeros(2, 4, 2, 3)}, ValueError, "expected [B, 16, 2, 3]"),
    ("latent-empty-grid", {"latent": torch.zeros(2, 16, 0, 3)}, ValueError, "latent has an empty grid"),
    ("latent-nan", {"latent": torch.full((2, 16, 2, 3), float("nan"))}, ValueError, "latent contains 192 NaN/Inf"),
    ("captions-none", {"caption_embeds": None}, TypeError, "caption_embeds must be a torch.Tensor"),
    ("captions-float", {"caption_embeds": 0.5}, TypeError, "caption_embeds must be a torch.Tensor"),
    ("captions-width", {"caption_embeds": torch.zeros(2, 7, 39)}, ValueError, "caption embeddings must be [B, L, 40]"),
    ("captions-batch", {"caption_embeds": torch.zeros(1, 7, 40)}, ValueError, "caption embeddings have batch 1"),
    ("captions-empty", {"caption_embeds": torch.zeros(2, 0, 40)}, ValueError, "with L >= 1"),
    ("mask-shape", {"caption_mask": torch.ones(2, 3)}, ValueError, "caption_mask must be [B, L]"),
    ("mask-float", {"caption_mask": 1.0}, TypeError, "caption_mask must be a torch.Tensor"),
    ("sigma-text", {"degrade_sigma": "0.3"}, TypeError, "degrade_sigma must be a number"),
    ("sigma-range", {"degrade_sigma": 2.0}, ValueError, "degrade_sigma must lie in [0, 1]"),
    ("sigma-nan", {"degrade_sigma": float("nan")}, ValueError, "degrade_sigma contains 1 NaN/Inf"),
    ("sigma-count", {"degrade_sigma": [0.1, 0.2, 0.3]}, ValueError, "degrade_sigma must hold 1 or B=2"),
    ("size-float", {"image_size": 64.0}, ValueError, "image_size must be an int or a (height, width) pair"),
    ("size-triple", {"image_size": (64, 96, 3)}, ValueError, "image_size must be an int or a (height, width) pair"),
    ("size-patch", {"image_size": (64, 100)}, ValueError, "nearest valid: W 100 -> 96 or 128"),
    ("size-negative", {"image_size": -64}, ValueError, "must be positive multiples of 32"),
    ("size-vs-latent", {"image_size": 128}, ValueError, "expected [B, 16, 4, 4]"),
    ("steps", {"steps": 7}, ValueError, "runs 1..4 steps"),
    ("noise-tensor", {"noise": torch.zeros(2, 3, 64, 96), "seed": None}, TypeError, "noise must be a list of 4"),
    ("noise-count", {"noise": [torch.zeros(2, 3, 64, 96)], "seed": None}, ValueError, "noise must list 4 tensors"),
    ("noise-float", {"noise": [0.0] * 4, "seed": None}, TypeError, "noise[0] must be a torch.Tensor"),
]


@pytest.mark.parametrize("case, changes, error, fragment", DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
def test_decode_refuses_bad_input(net, good, case, changes, error, fragment):
    with pytest.raises(error) as info:
        _decode(net, good, **changes)
    assert fragment in str(info.value)


# (case id, call, exception type, message fragment)
OTHER_CASES = [
    ("forward-numpy-x", lambda n, g: n(np.zeros((2, 3, 64, 96)), torch.ones(2), g[2], lq_latent=g[0],
                                       degrade_sigma=g[1]), TypeError, "x must be a torch.Tensor"),
    ("forward-float-sigma", lambda n, g: n(torch.zeros(2, 3, 64, 96), torch.ones(2), g[2], lq_latent=g[0],
                                           degrade_sigma=0.3), TypeError, "degrade_sigma must be a torch.Tensor"),
    ("load-dtype-name", lambda n, g: pid.load(n.state_dict(), config=n.config, dtype="fp8"), TypeError,
     "dtype must be a torch.dtype or one of"),
    ("load-dtype-int", lambda n, g: pid.load(n.state_dict(), config=n.config, dtype=torch.int8), TypeError,
     "dtype must be a torch.dtype or one of"),
    ("load-source-type", lambda n, g: pid.load(3), TypeError, "source must be a path"),
    ("load-device", lambda n, g: pid.load(n.state_dict(), config=n.config, device="toaster"), ValueError,
     "device 'toaster' is not a device"),
    ("load-config-type", lambda n, g: pid.load(n.state_dict(), config=3), TypeError, "config must be"),
    ("load-config-unknown-key", lambda n, g: pid.load(n.state_dict(), config={"hidden": 3}), ValueError,
     "unknown PiD config keys ['hidden']"),
    ("load-nan-weights", lambda n, g: pid.load({**n.state_dict(), "final_layer.norm.weight": torch.full((8,), torch.nan)},
                                               config=n.config), pid.NonFiniteError,
     "holds NaN/Inf in 'final_layer.norm.weight'"),
    ("load-fp16-overflow", lambda n, g: pid.load({**n.state_dict(), "final_layer.norm.weight": torch.full((8,), 1e6)},
                                                 config=n.config, dtype="fp16"), pid.NonFiniteError,
     "overflows float16"),
    ("save-dtype", lambda n, g: pid.save_safetensors(n, "/nonexistent/x.safetensors", dtype="int4"), TypeError,
     "dtype must be a torch.dtype"),
    ("cfg-latent-float", lambda n, g: sample_cfg(n, 1.0, 0.0, g[2], None, cfg_scale=1.0, image_size=64), TypeError,
     "latent must be a torch.Tensor"),
    ("example-size", lambda n, g: pid.example_inputs(n, 100), ValueError, "nearest valid"),
    ("example-batch", lambda n, g: pid.example_inputs(n, 64, batch=0), ValueError, "batch must be a positive int"),
]
if not torch.cuda.is_available():
    OTHER_CASES.append(("load-cuda-absent", lambda n, g: pid.load(n.state_dict(), config=n.config, device="cuda"),
                        ValueError, "no CUDA device is visible"))


@pytest.mark.parametrize("case, call, error, fragment", OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_api_refuses_bad_input(net, good, case, call, error, fragment):
    with pytest.raises(error) as info:
        call(net, good)
    assert fragment in str(info.value)


@pytest.mark.parametrize("name, expected", [("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16),
                                            ("fp16", torch.float16), ("float32", torch.float32),
                                            ("torch.float16", torch.float16), (torch.bfloat16, torch.bfloat16)])
def test_dtype_names(name, expected):
    assert as_dtype(name) == expected


def test_load_takes_dtype_names(net):
    assert pid.load(net.state_dict(), config=net.config, dtype="bf16").dtype == torch.bfloat16


def test_numpy_inputs_are_converted(net, good):
    latent, sigma, captions = good
    expected = _decode(net, good)
    got = _decode(net, good, latent=latent.numpy(), caption_embeds=captions.numpy(), degrade_sigma=sigma.numpy())
    assert torch.equal(expected, got)


def test_seed_none_draws_fresh_noise_and_records_it(net, good):
    decoder = pid.Decoder(net)
    latent, sigma, captions = good
    first = decoder.decode(latent, sigma, captions)
    first_seed = decoder.last_seed
    second = decoder.decode(latent, sigma, captions)
    assert isinstance(first_seed, int) and decoder.last_seed != first_seed
    assert not torch.equal(first, second)
    assert torch.equal(first, decoder.decode(latent, sigma, captions, seed=first_seed))
    decoder.decode(latent, sigma, captions, noise=[torch.zeros(2, 3, 64, 96)] * 4)
    assert decoder.last_seed is None


def test_long_captions_are_truncated_with_a_warning(net, good):
    latent, sigma, captions = good
    long = torch.cat([captions, captions], dim=1)  # 14 tokens, the model reads 12
    with pytest.warns(UserWarning, match="caption_embeds has 14 tokens but this model reads at most 12"):
        truncated = pid.Decoder(net).decode(latent, sigma, long, seed=0)
    assert torch.equal(truncated, pid.Decoder(net).decode(latent, sigma, long[:, :12], seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pid.Decoder(net).decode(latent, sigma, captions, seed=0)  # no warning at or below the maximum


def test_non_finite_images_are_an_error(net, good, monkeypatch):
    """A decode whose result is NaN (e.g. NaN weights loaded with check_finite=False) raises, after
    whichever path ran (the eager sampler here, a CUDA-graph replay on a GPU)."""
    decoder = pid.Decoder(net)
    monkeypatch.setattr(decoder, "sample", lambda *args, **kwargs: torch.full((2, 3, 64, 96), float("nan")))
    with pytest.raises(pid.NonFiniteError, match="decoded images contain 36864 NaN/Inf"):
        decoder.decode(*good, seed=0)

    class NanGraphs:
        def run(self, *args):
            return torch.full((2, 3, 64, 96), float("inf"))

    decoder.graphs = NanGraphs()
    with pytest.raises(pid.NonFiniteError, match="float16 overflow"):
        decoder.decode(*good, seed=0)


def test_cuda_out_of_memory_names_size_batch_and_what_to_do(net, good, monkeypatch):
    decoder = pid.Decoder(net)

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 26.00 GiB. GPU 0 has ...")

    monkeypatch.setattr(decoder, "sample", oom)
    with pytest.raises(torch.OutOfMemoryError) as info:
        decoder.decode(*good, seed=0)
    message = str(info.value)
    assert isinstance(info.value, pid.DecodeOutOfMemoryError)
    assert "batch 2 at 64x96 in float32" in message and "asked for 26.00 GiB" in message
    assert "smaller batch" in message and "tiled" in message


def test_readme_snippet_inputs(net):
    latent, sigma, captions = pid.example_inputs(net, (64, 96), batch=2)
    assert latent.shape == (2, 16, 2, 3) and captions.shape == (2, 12, 40) and sigma.tolist() == [0.0, 0.0]
    images = pid.Decoder(net).decode(latent, sigma, captions, seed=0)
    assert images.shape == (2, 3, 64, 96)
