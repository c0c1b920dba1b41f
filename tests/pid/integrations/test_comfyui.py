"""The ComfyUI node pack (integrations/comfyui), called the way ComfyUI's executor calls nodes
(INPUT_TYPES validated, the FUNCTION method called with keyword inputs, a tuple of RETURN_TYPES
back), on a golden architecture, without ComfyUI installed."""

import importlib.util
import json
import sys
import types

import pytest
import torch

import pid
from pid.io import comfy_keys
from pid.latents.transforms import denormalize_affine
from conftest import REPO

PACK = REPO / "integrations" / "comfyui"


@pytest.fixture(scope="module")
def nodes():
    """Import the pack as ComfyUI does: its folder as a module from its __init__.py."""
    spec = importlib.util.spec_from_file_location("pid_kernels_comfyui", PACK / "__init__.py",
                                                  submodule_search_locations=[str(PACK)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    for name in [n for n in sys.modules if n.startswith(spec.name)]:
        del sys.modules[name]


def _execute(node_class, **inputs):
    """Validate inputs against INPUT_TYPES and call FUNCTION, as ComfyUI's executor does."""
    declared = node_class.INPUT_TYPES()
    required, optional = declared["required"], declared.get("optional", {})
    assert set(required) <= set(inputs) and set(inputs) <= set(required) | set(optional)
    for name, value in inputs.items():
        kind = (required.get(name) or optional.get(name))[0]
        if isinstance(kind, list):
            assert value in kind, f"{name}={value!r} not among {kind}"
    outputs = getattr(node_class(), node_class.FUNCTION)(**inputs)
    assert isinstance(outputs, tuple) and len(outputs) == len(node_class.RETURN_TYPES)
    return outputs


@pytest.fixture(scope="module")
def comfy_checkpoint(golden, tmp_path_factory):
    """v1_tiny's weights as a Comfy-Org-style bf16 file (split adaLN, ComfyUI prefix)."""
    from safetensors.torch import save_file

    case = golden("v1_tiny")
    state = {k[len("net."):]: v.to(torch.bfloat16) for k, v in case.weights().items()}
    path = tmp_path_factory.mktemp("comfy") / "pid_tiny_bf16.safetensors"
    save_file({k: v.contiguous() for k, v in comfy_keys.to_comfy(state, "model.diffusion_model.").items()}, str(path))
    return case, path


def test_mappings_and_display_names(nodes):
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    assert sorted(nodes.NODE_DISPLAY_NAME_MAPPINGS.values()) == ["PiD Decode (pid-kernels)", "PiD Loader (pid-kernels)"]
    for node_class in nodes.NODE_CLASS_MAPPINGS.values():
        assert hasattr(node_class, node_class.FUNCTION) and node_class.CATEGORY == "pid-kernels"


def test_loader_then_decode_gives_pids_image_in_comfy_layout(nodes, comfy_checkpoint, monkeypatch):
    case, path = comfy_checkpoint
    mappings = nodes.NODE_CLASS_MAPPINGS
    # The tiny case matches no released architecture, so its config goes in as a JSON file.
    config_file = path.with_suffix(".json")
    config_file.write_text(json.dumps(case.config))
    (decoder,) = _execute(mappings["PiDLoaderPidKernels"], checkpoint=str(path), dtype="fp32", compile=False,
                          config=str(config_file))
    assert isinstance(decoder, pid.Decoder)
    loaded = decoder.net.state_dict()
    assert all(torch.equal(loaded[k[len("net."):]], v) for k, v in case.weights().items())
    pid_latent = case["sampler.inputs.lq_latent"]
    captions = case["sampler.inputs.y"]
    comfy_latent = {"samples": denormalize_affine(pid_latent, 0.3611, 0.1159)}  # ComfyUI holds raw Flux VAE latents

    updates = []
    fake_utils = types.ModuleType("comfy.utils")
    fake_utils.ProgressBar = lambda total: types.SimpleNamespace(total=total, update=lambda n: updates.append(n))
    monkeypatch.setitem(sys.modules, "comfy", types.ModuleType("comfy"))
    monkeypatch.setitem(sys.modules, "comfy.utils", fake_utils)
    (image,) = _execute(mappings["PiDDecodePidKernels"], pid_decoder=decoder, samples=comfy_latent,
                        latent_format="flux1", degrade_sigma=0.25, seed=11, conditioning=[[captions, {}]])
    expected = decoder.decode(pid_latent, 0.25, captions, seed=11)
    assert image.shape == (1, expected.shape[2], expected.shape[3], 3) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    torch.testing.assert_close(image, ((expected + 1) / 2).permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    assert updates == [1, 1, 1, 1]


def test_decode_errors_and_tiling(nodes, comfy_checkpoint):
    case, path = comfy_checkpoint
    decoder = pid.Decoder(pid.load(path, config=case.config))
    decode = nodes.NODE_CLASS_MAPPINGS["PiDDecodePidKernels"]
    samples = {"samples": case["sampler.inputs.lq_latent"]}
    with pytest.raises(ValueError, match="needs captions"):
        _execute(decode, pid_decoder=decoder, samples=samples, latent_format="pid", degrade_sigma=0.0, seed=0)
    captions = case["sampler.inputs.y"]
    (tiled,) = _execute(decode, pid_decoder=decoder, samples=samples, latent_format="pid", degrade_sigma=0.0, seed=0,
                        conditioning=[[captions, {}]], tile_size=64, tile_overlap=32)
    expected = decoder.decode(samples["samples"], 0.0, captions, seed=0, tiles=(64, 32))
    torch.testing.assert_close(tiled, ((expected + 1) / 2).permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="checkpoint is empty"):
        _execute(nodes.NODE_CLASS_MAPPINGS["PiDLoaderPidKernels"], checkpoint="", dtype="bf16", compile=False)
