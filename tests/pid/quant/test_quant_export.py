"""Quantized exports and the fp8 switches: pid quantize, pid.load, CompileConfig(precision),
pid decode / pid bench --precision fp8."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import pid
from pid.cli import commands as cli
from pid.io.captions import save_caption_embeds
from pid.quant import quantize_model
from pid.quant.linear import FP8Linear
from pid.quant.policy import load_policy
from tiny import TINY_V15, tiny_inputs, tiny_net


@pytest.fixture
def checkpoint(tmp_path):
    net = tiny_net(TINY_V15)
    path = tmp_path / "tiny.safetensors"
    pid.save_safetensors(net, path, dtype=torch.bfloat16)
    return path


def _decode(net, seed=3):
    return pid.Decoder(net).decode(*tiny_inputs(net, batch=1, image_hw=(32, 64)), seed=seed)


def test_quantize_export_loads_back_identically(checkpoint, tmp_path, capsys):
    (tmp_path / "export").mkdir()
    out = tmp_path / "export" / "tiny_fp8.safetensors"
    assert cli.main(["quantize", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    assert "fp8 (" in capsys.readouterr().out
    with safe_open(str(out), framework="pt") as handle:
        assert "pid_config" in handle.metadata() and "pid_quant" in handle.metadata()
    stored = load_file(str(out))
    assert stored["net.patch_blocks.0.attn.qkv_x.weight"].dtype == torch.float8_e4m3fn
    assert stored["net.patch_blocks.0.attn.qkv_x.weight_scale"].dtype == torch.float32
    assert stored["net.final_layer.linear.weight"].dtype == torch.bfloat16
    loaded = pid.load(out)
    assert loaded.dtype == torch.bfloat16 and isinstance(loaded.patch_blocks[1].attn.qkv_y, FP8Linear)
    expected = pid.load(checkpoint, precision="fp8")
    assert torch.equal(_decode(loaded), _decode(expected))
    assert isinstance(pid.load(out.parent).patch_blocks[0].mlp_x.w1, FP8Linear)  # a directory finds it


def test_an_fp8_patch_embedding_export_round_trips(checkpoint, tmp_path):
    policy_file = tmp_path / "policy.json"
    policy_file.write_text('{"rules": [{"pattern": "s_embedder.proj", "precision": "fp8"}]}')
    out = tmp_path / "tiny_fp8.safetensors"
    assert cli.main(["quantize", "--checkpoint", str(checkpoint), "--out", str(out), "--policy", str(policy_file)]) == 0
    assert load_file(str(out))["net.s_embedder.proj.weight"].dtype == torch.float8_e4m3fn
    loaded = pid.load(out)
    assert loaded.dtype == torch.bfloat16 and loaded.s_embedder.proj.mode == "fp8"
    expected = pid.load(checkpoint, dtype=torch.bfloat16)
    quantize_model(expected, load_policy(policy_file))
    assert torch.equal(_decode(loaded), _decode(expected))


def test_an_export_with_dequantized_tensors_is_refused(checkpoint, tmp_path):
    out = tmp_path / "tiny_fp8.safetensors"
    assert cli.main(["quantize", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(out))
    state["net.patch_blocks.0.mlp_x.w1.weight"] = state["net.patch_blocks.0.mlp_x.w1.weight"].bfloat16()
    save_file(state, str(out), metadata=metadata)
    with pytest.raises(ValueError, match="wrong dtype: patch_blocks.0.mlp_x.w1.weight"):
        pid.load(out)


def test_load_time_fp8_is_close_to_bf16(checkpoint):
    bf16 = _decode(pid.load(checkpoint, dtype=torch.bfloat16))
    fp8 = _decode(pid.load(checkpoint, precision="fp8"))
    assert 0 < (fp8 - bf16).abs().mean() < 0.05
    with pytest.raises(ValueError, match="precision must be None or 'fp8'"):
        pid.load(checkpoint, precision="int8")


def test_compile_precision_fp8_quantizes_in_place_and_reports(checkpoint):
    decoder = pid.Decoder(pid.load(checkpoint, dtype=torch.bfloat16))
    pid.compile(decoder, pid.CompileConfig(precision="fp8"))
    report = decoder.pid_compile_report
    text = str(report)
    assert "CPU: float32 emulation" in text and "fp8 (" in text
    assert any(key.startswith("fp8 of final layer") for key in report.skipped)
    assert isinstance(decoder.net.patch_blocks[0].attn.qkv_x, FP8Linear)
    pid.revert(decoder)
    assert isinstance(decoder.net.patch_blocks[0].attn.qkv_x, FP8Linear)  # the bf16 weights are gone
    with pytest.raises(ValueError, match="precision must be None or one of"):
        pid.compile(decoder, pid.CompileConfig(precision="fp4"))


def test_compile_precision_fp8_is_refused_without_fp8_tensor_cores(monkeypatch):
    from pid.quant import switch

    net = tiny_net()
    refusal = ["NVIDIA A100 (compute capability 8.0) has no fp8"]
    monkeypatch.setattr(switch, "fp8_device_reasons", lambda device: refusal)
    with pytest.raises(ValueError, match="refused: NVIDIA A100"):
        pid.compile(net, pid.CompileConfig(precision="fp8"))
    assert not isinstance(net.patch_blocks[0].attn.qkv_x, FP8Linear)


def test_gpu_policy_keeps_attention_in_bf16():
    from pid.quant.switch import NO_FP8_ATTENTION_KERNEL, device_policy

    rule = device_policy(torch.device("cuda")).decide("patch_blocks.2.attn")
    assert rule.precision == "bf16" and rule.reason == NO_FP8_ATTENTION_KERNEL
    assert device_policy(torch.device("cpu")).decide("patch_blocks.2.attn").precision == "fp8"


def test_decode_precision_fp8(checkpoint, tmp_path):
    net = pid.load(checkpoint, precision="fp8")
    latent, _, captions = tiny_inputs(net, batch=1)
    save_file({"latent": latent}, str(tmp_path / "latent.safetensors"))
    save_caption_embeds(tmp_path / "captions.safetensors", captions, embed_dim=captions.shape[-1])
    out = tmp_path / "out.png"
    assert cli.main([
        "decode", "--checkpoint", str(checkpoint), "--latent", str(tmp_path / "latent.safetensors"),
        "--caption-embeds", str(tmp_path / "captions.safetensors"), "--seed", "3", "--precision", "fp8",
        "--out", str(out),
    ]) == 0
    expected = pid.to_uint8(pid.Decoder(net).decode(latent, 0.0, captions, seed=3))[0]
    assert torch.equal(torch.from_numpy(np.array(Image.open(out))), expected)


def test_bench_precision_fp8(tmp_path):
    assert cli.main(["bench", "--quick", "--precision", "fp8", "--paths", "a", "--no-profile",
                     "--out-dir", str(tmp_path)]) == 0
    with (tmp_path / "decode.csv").open(newline="") as file:
        (row,) = list(csv.DictReader(file))
    assert row["impl"] == "a_eager_fp8" and float(row["psnr_db"]) > 20
