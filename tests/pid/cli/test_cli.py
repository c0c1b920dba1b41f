"""The `pid` command line: decode, info, demo, and its errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import pid
from pid.cli import commands as cli
from pid.cli import demo
from pid.io.captions import save_caption_embeds
from tiny import TINY_V1, tiny_inputs, tiny_net


@pytest.fixture
def files(tmp_path):
    net = tiny_net()
    checkpoint = tmp_path / "tiny.safetensors"
    pid.save_safetensors(net, checkpoint)
    latent, _, captions = tiny_inputs(net, batch=1)
    save_file({"latent": latent}, str(tmp_path / "latent.safetensors"))
    save_caption_embeds(tmp_path / "captions.safetensors", captions, embed_dim=captions.shape[-1])
    return tmp_path, net, latent, captions


def test_decode_writes_the_decoder_image(files, capsys):
    tmp_path, net, latent, captions = files
    out = tmp_path / "out.png"
    status = cli.main([
        "decode", "--checkpoint", str(tmp_path / "tiny.safetensors"), "--latent", str(tmp_path / "latent.safetensors"),
        "--caption-embeds", str(tmp_path / "captions.safetensors"), "--sigma", "0.2", "--seed", "3",
        "--dtype", "fp32", "--out", str(out),
    ])
    assert status == 0
    expected = pid.to_uint8(pid.Decoder(net).decode(latent, 0.2, captions, seed=3))[0]
    assert torch.equal(torch.from_numpy(np.array(Image.open(out))), expected)
    assert "wrote" in capsys.readouterr().out


def test_decode_without_captions_says_how_to_get_them(files, capsys):
    tmp_path = files[0]
    status = cli.main(["decode", "--checkpoint", str(tmp_path / "tiny.safetensors"),
                       "--latent", str(tmp_path / "latent.safetensors"), "--out", str(tmp_path / "x.png")])
    assert status == cli.EXIT_USAGE
    assert "--caption TEXT" in capsys.readouterr().err


def test_decode_rejects_wrong_latent_with_expected_shape(files, capsys):
    tmp_path = files[0]
    torch.save(torch.zeros(1, 4, 2, 3), tmp_path / "bad.pt")
    status = cli.main(["decode", "--checkpoint", str(tmp_path / "tiny.safetensors"), "--latent", str(tmp_path / "bad.pt"),
                       "--caption-embeds", str(tmp_path / "captions.safetensors"), "--dtype", "fp32",
                       "--out", str(tmp_path / "x.png")])
    assert status == cli.EXIT_USAGE
    assert "expected [B, 16, 2, 3]" in capsys.readouterr().err


def test_info_lists_versions_and_paths(capsys):
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"torch {torch.__version__}" in text and "accelerated paths:" in text


def test_demo_runs_full_pipeline_and_says_weights_are_random(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "released_config", lambda name: {**pid.released_config(name), **TINY_V1})
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "--size", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "SEEDED RANDOM WEIGHTS" in text and "network" in text
    assert Image.open(out).size == (64, 64)


def test_decode_with_the_cfg_sampler(files, capsys):
    tmp_path, net, latent, captions = files
    out = tmp_path / "cfg.png"
    common = ["decode", "--checkpoint", str(tmp_path / "tiny.safetensors"), "--latent",
              str(tmp_path / "latent.safetensors"), "--caption-embeds", str(tmp_path / "captions.safetensors"),
              "--dtype", "fp32", "--sampler", "cfg", "--steps", "3", "--out", str(out)]
    assert cli.main(common) == cli.EXIT_USAGE
    assert "--negative-embeds" in capsys.readouterr().err
    assert cli.main(common + ["--negative-embeds", str(tmp_path / "captions.safetensors"), "--cfg-scale", "2"]) == 0
    assert Image.open(out).size == (96, 64)
