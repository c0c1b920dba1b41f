"""PiD for other inference engines: an AOTInductor package of the per-step network, and a
`torch.export` program of the whole distilled decode loop.

`export_aoti(net, path, image_hw, caption_length)` writes a `.pt2` AOTInductor package of the
per-step network under the release's contract

    velocity [B, 3, H, W] = step(x_t [B, 3, H, W], t [B] (x1000), y [B, L, D],
                                 lq_latent [B, C, zH, zW], degrade_sigma [B])

for one geometry (H, W, L fixed) and a dynamic batch 1..max_batch. Load it anywhere with
`torch._inductor.aoti_load_package(path)(x_t, t, y, lq_latent, degrade_sigma)`; it needs
torch, not this package. A sampler around it is four calls (see pid.sampling.distilled).

`export_decode_loop(decoder, image_hw, caption_length)` traces the whole 4-step loop with the
noise as inputs: `program.module()(latent, degrade_sigma, y, x_init, eps_0, eps_1, eps_2)`
returns the clamped image; `torch.export.save` writes it.

Both trace with the seams' PyTorch references: fused ops enabled by pid_kernels (or
pid.compile) are switched off for the trace and back on afterwards, so the package holds
plain aten ops that Inductor compiles for the export device.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from pid import seams
from pid.sampling.distilled import DecodeInputs, Decoder, distilled_t_list

DEFAULT_MAX_BATCH = 64
STEP_INPUTS = ("x_t", "t", "y", "lq_latent", "degrade_sigma")


class StepNetwork(nn.Module):
    """The per-step network with only tensor inputs, in the release's argument order."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x_t, t, y, lq_latent, degrade_sigma):
        return self.net(x_t, t, y, lq_latent=lq_latent, degrade_sigma=degrade_sigma)


class DecodeLoop(nn.Module):
    """Decoder.sample for one geometry with explicit noise: the traceable decode."""

    def __init__(self, decoder: Decoder, image_hw: tuple[int, int], steps: int = 4):
        super().__init__()
        self.decoder, self.net, self.image_hw = decoder, decoder.net, tuple(image_hw)
        self.t_list = distilled_t_list(steps, decoder.t_list)

    def forward(self, latent, degrade_sigma, y, *noise):
        inputs = DecodeInputs(latent, degrade_sigma, y, None, self.image_hw)
        return self.decoder.sample(inputs, self.t_list, list(noise).__getitem__).clamp(-1, 1)


@contextlib.contextmanager
def reference_seams():
    """Run with every seam on its PyTorch reference; restores the active overrides after."""
    active = seams.active_overrides()
    for name in active:
        seams.override(name, None)
    try:
        yield
    finally:
        for name, impl in active.items():
            seams.override(name, impl)


def example_step_inputs(net, image_hw: tuple[int, int], caption_length: int, batch: int = 2) -> tuple:
    """Random float32 inputs of the step contract on the network's device."""
    device = net.device
    latent_shape = net.expected_latent_shape(tuple(image_hw))
    return (
        torch.randn(batch, 3, *image_hw, device=device),
        torch.full((batch,), 999.0, device=device),
        torch.randn(batch, caption_length, net.config["txt_embed_dim"], device=device),
        torch.randn(batch, *latent_shape, device=device),
        torch.full((batch,), 0.2, device=device),
    )


def _batch_dims(count: int, max_batch: int) -> list:
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    return [{0: batch}] * count


def export_step(net, image_hw: tuple[int, int], caption_length: int, max_batch: int = DEFAULT_MAX_BATCH):
    """torch.export of StepNetwork for one geometry, batch dynamic in 1..max_batch."""
    net.geometry.check_image_hw(tuple(image_hw), "image_hw")
    inputs = example_step_inputs(net, image_hw, caption_length)
    with reference_seams(), torch.no_grad():
        return torch.export.export(StepNetwork(net).eval(), inputs, dynamic_shapes=_batch_dims(len(inputs), max_batch))


def export_aoti(
    net,
    path: Union[str, Path],
    image_hw: tuple[int, int],
    caption_length: int,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Path:
    """Write the AOTInductor package (.pt2) of the per-step network; returns its path.

    Compiles for the network's device with Inductor (a C++ compiler must be installed).
    """
    program = export_step(net, image_hw, caption_length, max_batch)
    # The wrapper is glue around the kernels; -O0 halves the C++ compile and leaves the kernels optimised.
    options = {"aot_inductor.compile_wrapper_opt_level": "O0"}
    return Path(torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=options))


def export_decode_loop(
    decoder: Decoder,
    image_hw: tuple[int, int],
    caption_length: int,
    steps: int = 4,
    max_batch: int = DEFAULT_MAX_BATCH,
):
    """torch.export of the whole decode loop (noise as inputs), batch dynamic in 1..max_batch."""
    net = decoder.net
    net.geometry.check_image_hw(tuple(image_hw), "image_hw")
    x_t, _, y, latent, sigma = example_step_inputs(net, image_hw, caption_length)
    noise = [torch.randn_like(x_t) for _ in range(steps)]
    inputs = (latent, sigma, y, *noise)
    dims = _batch_dims(len(inputs), max_batch)
    with reference_seams(), torch.no_grad():  # dynamic shapes follow the signature: *noise is one tuple
        return torch.export.export(DecodeLoop(decoder, image_hw, steps).eval(), inputs, dynamic_shapes=(*dims[:3], tuple(dims[3:])))
