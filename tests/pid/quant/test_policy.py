"""The per-layer policy: every layer decided with a reason, raw-weight layers kept, files."""

import json

import pytest
import torch

import pid
from pid.quant import quantize_model
from pid.quant.linear import FP8Linear
from pid.quant.policy import Policy, Rule, load_policy, plan
from tiny import TINY_V15, tiny_inputs, tiny_net


def test_every_layer_gets_a_precision_and_a_reason():
    net = tiny_net(TINY_V15)
    layers = plan(net, Policy())
    decided = {**layers.linears, **layers.attentions, **layers.convs}
    linears = [name for name, module in net.named_modules() if isinstance(module, torch.nn.Linear)]
    assert set(linears) <= set(decided)
    assert all(rule.reason and rule.reason != "no policy rule matches this layer" for rule in decided.values())
    assert layers.linears["patch_blocks.0.attn.qkv_x"].precision == "fp8"
    assert layers.linears["patch_blocks.0.adaLN_modulation_img.0"].precision == "fp8_weight"
    assert layers.linears["final_layer.linear"].precision == "bf16"
    assert layers.linears["s_embedder.proj"].precision == "bf16"  # patch_embed_fp8 only when a rule asks
    assert layers.attentions["pixel_blocks.1.attn"].precision == "fp8"


def test_raw_weight_layers_cannot_be_asked_for_fp8():
    policy = Policy((Rule("final_layer.linear", "fp8", "test"),))
    with pytest.raises(ValueError, match="final_layer.linear, which can only be bf16"):
        plan(tiny_net(), policy)


def test_default_policy_keeps_the_patch_embedding_in_bf16():
    net = tiny_net().to(torch.bfloat16)
    quantize_model(net)
    assert type(net.s_embedder.proj) is torch.nn.Linear and net.s_embedder.proj.weight.dtype == torch.bfloat16
    assert net.pid_quant.layers["s_embedder.proj"][1].startswith("patch embedding: ")


def test_an_fp8_patch_embedding_leaves_the_model_dtype_bf16():
    net = tiny_net().to(torch.bfloat16)
    quantize_model(net, Policy((Rule("s_embedder.proj", "fp8", "test"),) + Policy().rules))
    assert net.s_embedder.proj.weight.dtype == torch.float8_e4m3fn and net.dtype == torch.bfloat16


def test_an_fp8_weight_patch_embedding_runs_on_its_dequantized_weight():
    net = tiny_net().to(torch.bfloat16)
    quantize_model(net, Policy((Rule("s_embedder.proj", "fp8_weight", "test"),) + Policy().rules))
    dense = tiny_net().to(torch.bfloat16)
    quantize_model(dense)
    with torch.no_grad():
        dense.s_embedder.proj.weight.copy_(net.s_embedder.proj.dequantized_weight(torch.bfloat16))
    inputs = tiny_inputs(net, batch=1, image_hw=(32, 64))
    assert torch.equal(pid.Decoder(net).decode(*inputs, seed=3), pid.Decoder(dense).decode(*inputs, seed=3))


def test_quantize_model_swaps_layers_and_keeps_the_release_keys():
    net = tiny_net().to(torch.bfloat16)
    keys = set(net.state_dict())
    report = quantize_model(net)
    assert isinstance(net.patch_blocks[0].mlp_x.w2, FP8Linear) and net.patch_blocks[0].mlp_x.w2.mode == "fp8"
    assert net.patch_blocks[0].attn.attention_op.recipe == report.attention_recipe == "sage"
    scales = {f"{name}.weight_scale" for name in report.names("fp8") + report.names("fp8_weight")
              if isinstance(net.get_submodule(name), FP8Linear)}
    assert set(net.state_dict()) == keys | scales
    assert "fp8 (" in str(report) and "bf16 (" in str(report)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(net)


def test_policy_files_go_before_the_defaults(tmp_path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"attention_recipe": "fa3", "rules": [
        {"pattern": "patch_blocks.*.mlp_*", "precision": "bf16", "reason": "keep the MLPs"}]}))
    policy = load_policy(path)
    assert policy.attention_recipe == "fa3"
    assert policy.decide("patch_blocks.3.mlp_x.w1").reason == "keep the MLPs"
    assert policy.decide("patch_blocks.3.attn.qkv_x").precision == "fp8"


@pytest.mark.parametrize("spec,message", [
    ({"rules": [{"pattern": "*", "precision": "int4"}]}, "precision must be one of"),
    ({"rules": [{"precision": "fp8"}]}, "needs 'pattern' and 'precision'"),
    ({"rules": [], "recipe": "sage"}, "unknown keys"),
    ({"attention_recipe": "flash"}, "attention_recipe must be one of"),
])
def test_bad_policy_files_are_refused_naming_the_problem(tmp_path, spec, message):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        load_policy(path)


def test_v1_flux_weights_fit_in_1_5_gib():
    """Issue 13's memory target, on the meta device: e4m3 weights + scales + the kept bf16 layers."""
    with torch.device("meta"):
        net = pid.build_model("PiD_res2k_sr4x_official_flux_distill_4step").to(torch.bfloat16)
        bf16_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
        report = quantize_model(net)
    print(f"v1 Flux weights: bf16 {bf16_bytes / 2**30:.3f} GiB, fp8 policy {report.weight_bytes / 2**30:.3f} GiB")
    assert report.weight_bytes <= 1.5 * 2**30
    assert report.weight_bytes == sum(t.numel() * t.element_size() for t in net.state_dict().values())
