"""`torchrun ... -m pid decode --parallel`, and the errors of the parallel API that need no ranks."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import pid
from conftest import REPO
from pid.cli import commands as cli
from pid.io.captions import save_caption_embeds
from pid.parallel.mesh import ulysses_degrees
from pid.parallel.split import RowSplit
from spawn_ranks import free_port
from tiny import tiny_inputs, tiny_net

TIMEOUT_S = 180


@pytest.fixture
def files(tmp_path):
    net = tiny_net()
    pid.save_safetensors(net, tmp_path / "tiny.safetensors")
    latent, _, captions = tiny_inputs(net, batch=1)
    save_file({"latent": latent}, str(tmp_path / "latent.safetensors"))
    save_caption_embeds(tmp_path / "captions.safetensors", captions, embed_dim=captions.shape[-1])
    arguments = ["decode", "--checkpoint", str(tmp_path / "tiny.safetensors"), "--latent",
                 str(tmp_path / "latent.safetensors"), "--caption-embeds", str(tmp_path / "captions.safetensors"),
                 "--seed", "3", "--dtype", "fp32", "--device", "cpu"]
    return tmp_path, arguments


def test_torchrun_parallel_decode_writes_the_one_process_image(files):
    tmp_path, arguments = files
    assert cli.main([*arguments, "--out", str(tmp_path / "single.png")]) == 0
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "-m", "pid", *arguments, "--parallel", "auto", "--out", str(tmp_path / "parallel.png")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 0, run.stderr[-3000:]
    single, parallel = (np.array(Image.open(tmp_path / name)) for name in ("single.png", "parallel.png"))
    assert np.array_equal(single, parallel)
    assert run.stdout.count("wrote") == 1  # rank 0 writes, the others do not


def test_parallel_flag_outside_torchrun_says_how_to_launch(files, capsys, monkeypatch):
    tmp_path, arguments = files
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main([*arguments, "--parallel", "auto", "--out", str(tmp_path / "x.png")]) == cli.EXIT_USAGE
    assert "torchrun --nproc-per-node N -m pid decode" in capsys.readouterr().err


def test_ulysses_error_names_the_head_counts_and_valid_degrees():
    heads = {"patch blocks": 24, "pixel blocks": 16}
    assert ulysses_degrees("ulysses", heads, 8) == {16: 8, 24: 8}
    with pytest.raises(ValueError, match=r"patch blocks have 24 heads, pixel blocks have 16 heads.*\[1, 2, 4, 8\]"):
        ulysses_degrees("ulysses", heads, 3)
    with pytest.raises(ValueError, match=r"ulysses_degree=3 .* valid degrees: \[1, 2\]"):
        ulysses_degrees("usp", heads, 6, ulysses_degree=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        ulysses_degrees("tensor", heads, 2)


def test_auto_keeps_ulysses_inside_a_node_and_rings_the_rest():
    heads = {"patch blocks": 24, "pixel blocks": 16}
    assert ulysses_degrees("auto", heads, 3) == {24: 3, 16: 1}
    assert ulysses_degrees("auto", heads, 16, per_node=8) == {24: 8, 16: 8}
    assert ulysses_degrees("auto", heads, 6, per_node=6) == {24: 6, 16: 2}
    assert ulysses_degrees("usp", heads, 16, per_node=4) == {24: 4, 16: 4}
    assert ulysses_degrees("ring", heads, 4) == {24: 1, 16: 1}


def test_row_split_bands_cover_the_image_once():
    bands = [RowSplit.even((80, 48), 16, 3, rank) for rank in range(3)]
    assert [band.local_hw for band in bands] == [(16, 48), (32, 48), (32, 48)]
    assert bands[0].token_counts == [3, 6, 6]
    image = torch.arange(2 * 3 * 80 * 48.0).view(2, 3, 80, 48)
    assert torch.equal(torch.cat([band.band(image) for band in bands], dim=-2), image)
    with pytest.raises(ValueError, match="5 patch rows, fewer than the 8 ranks"):
        RowSplit.even((80, 48), 16, 8, 0)


def test_sequence_parallel_needs_an_initialised_group():
    with pytest.raises(RuntimeError, match="torch.distributed initialised"):
        pid.parallel.sequence_parallel(pid.Decoder(tiny_net()))
