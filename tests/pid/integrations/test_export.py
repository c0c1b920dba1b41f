"""Export for other engines: the AOTInductor package of the per-step network, loaded in a fresh
process that never imports pid, matches the eager step; torch.export of the decode loop
matches Decoder.decode. The network is the tiniest tiny config (1 patch block, 1 pixel block),
because compiling the package on CPU is the slow part."""

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import pid
from pid import seams
from pid.cli import commands as cli
from pid.integrations.export import StepNetwork, example_step_inputs, export_decode_loop, reference_seams
from tiny import tiny_inputs, tiny_net

IMAGE_HW, CAPTION_LENGTH = (64, 96), 7
SMALLEST = {"patch_depth": 1, "pixel_depth": 1}

# Runs in a fresh interpreter: torch only, and proves it never imported pid.
LOAD_AND_RUN = textwrap.dedent("""
    import sys, torch
    package, inputs_file, outputs_file = sys.argv[1:]
    step = torch._inductor.aoti_load_package(package)
    inputs = torch.load(inputs_file)
    outputs = [step(*inputs), step(*[x[:1] for x in inputs])]
    assert not [m for m in sys.modules if m == "pid" or m.startswith("pid.")], "pid was imported"
    torch.save(outputs, outputs_file)
""")


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="AOTInductor on CPU needs a C++ compiler")
def test_aoti_package_runs_without_pid_and_matches_the_eager_step(tmp_path, capsys):
    net = tiny_net(SMALLEST)
    checkpoint, package = tmp_path / "tiny.safetensors", tmp_path / "step.pt2"
    pid.save_safetensors(net, checkpoint)
    height, width = IMAGE_HW
    assert cli.main(["export", "--checkpoint", str(checkpoint), "--format", "aoti", "--size", f"{width}x{height}",
                     "--caption-length", str(CAPTION_LENGTH), "--max-batch", "8", "--dtype", "fp32", "--device", "cpu",
                     "--out", str(package)]) == 0
    assert "AOTInductor package" in capsys.readouterr().out
    inputs = example_step_inputs(net, IMAGE_HW, CAPTION_LENGTH, batch=3)
    torch.save(inputs, tmp_path / "inputs.pt")
    subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(package), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                   check=True, cwd=tmp_path)
    batched, single = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        eager = StepNetwork(net)(*inputs)
    torch.testing.assert_close(batched, eager, atol=1e-5 * eager.abs().max().item(), rtol=1e-4)
    torch.testing.assert_close(single, eager[:1], atol=1e-5 * eager.abs().max().item(), rtol=1e-4)


def test_decode_loop_exports_and_matches_decode(tmp_path):
    net = tiny_net(SMALLEST)
    decoder = pid.Decoder(net)
    program = export_decode_loop(decoder, IMAGE_HW, CAPTION_LENGTH, max_batch=8)
    torch.export.save(program, str(tmp_path / "loop.pt2"))
    loop = torch.export.load(str(tmp_path / "loop.pt2")).module()
    latent, sigma, captions = tiny_inputs(net, batch=2, image_hw=IMAGE_HW, text_len=CAPTION_LENGTH)
    noise = [torch.randn(2, 3, *IMAGE_HW) for _ in range(4)]
    expected = decoder.decode(latent, sigma, captions, noise=noise)
    torch.testing.assert_close(loop(latent, sigma, captions, *noise), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(loop(latent[:1], sigma[:1], captions[:1], *[n[:1] for n in noise]), expected[:1],
                               atol=1e-6, rtol=0)


def test_reference_seams_switches_overrides_off_and_back():
    fake = lambda *args: None  # noqa: E731
    previous = seams.override("gated_residual", fake)
    try:
        with reference_seams():
            assert "gated_residual" not in seams.active_overrides()
        assert seams.active_overrides()["gated_residual"] is fake
    finally:
        seams.override("gated_residual", previous)
