"""ComfyUI-layout weights: the inverse key table turns a golden case into a Comfy-Org-style
bf16 file, and pid.load reads it back to the same network outputs."""

import pytest
import torch
import torch.nn.functional as F

import pid
from pid.io import comfy_keys


def _release_state(case):
    return {k[len("net."):]: v for k, v in case.weights().items()}


@pytest.mark.parametrize("name", ["v1_tiny", "v15_tiny"])
def test_comfy_file_loads_to_the_same_outputs(golden, tmp_path, name):
    from safetensors.torch import save_file

    case = golden(name)
    state = _release_state(case)
    comfy = comfy_keys.to_comfy(
        {k: v for k, v in state.items() if not k.startswith("lq_proj.lq_aux_rgb_head.")}, "model.diffusion_model."
    )
    assert not any("adaLN_modulation.0" in k for k in comfy if k.split(".")[2] == "pixel_blocks")
    path = tmp_path / "pid_comfy_bf16.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in comfy.items()}, str(path))

    ours = pid.load(path, config=case.config)
    reference = pid.load({k: v for k, v in case.weights().items()}, config=case.config)
    inputs = [case[f"inputs.{k}"] for k in ("x_t", "t", "y")]
    kwargs = {"lq_latent": case["inputs.lq_latent"], "degrade_sigma": case["inputs.degrade_sigma"]}
    with torch.no_grad():
        assert torch.equal(ours(*inputs, **kwargs), reference(*inputs, **kwargs))


def test_split_halves_compute_the_release_chunks(golden):
    state = _release_state(golden("v1_tiny"))
    comfy = comfy_keys.to_comfy(state)
    pixel_dim = state["pixel_blocks.0.norm1.weight"].shape[0]
    weight, bias = state["pixel_blocks.0.adaLN_modulation.0.weight"], state["pixel_blocks.0.adaLN_modulation.0.bias"]
    condition = torch.randn(5, weight.shape[1])
    release = F.linear(condition, weight, bias).view(5, -1, 6 * pixel_dim)
    for half, chunk in (("msa", release[..., : 3 * pixel_dim]), ("mlp", release[..., 3 * pixel_dim :])):
        block = "pixel_blocks.0.adaLN_modulation_" + half
        out = F.linear(condition, comfy[block + ".weight"], comfy[block + ".bias"]).view(5, -1, 3 * pixel_dim)
        assert torch.equal(out, chunk)
    assert comfy_keys.from_comfy(comfy).keys() == state.keys()


def test_quantized_and_unknown_layouts_are_refused(golden):
    state = _release_state(golden("v1_tiny"))
    fp8 = dict(state, **{"patch_blocks.0.attn.qkv_x.weight": state["patch_blocks.0.attn.qkv_x.weight"].to(torch.float8_e4m3fn)})
    with pytest.raises(ValueError, match="quantized ComfyUI PiD files"):
        pid.load(fp8)
    with pytest.raises(ValueError, match="quantized ComfyUI PiD files"):
        pid.load(dict(state, **{"patch_blocks.0.attn.qkv_x.weight_scale": torch.ones(())}))
    with pytest.raises(ValueError, match="not a PiD checkpoint layout"):
        pid.load({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)})
    half = comfy_keys.to_comfy(state)
    half.pop("pixel_blocks.0.adaLN_modulation_mlp.bias")
    with pytest.raises(ValueError, match="adaLN_modulation_mlp.bias is missing"):
        pid.load(half)
