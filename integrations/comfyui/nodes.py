"""ComfyUI nodes "PiD Loader (pid-kernels)" and "PiD Decode (pid-kernels)".

They follow ComfyUI's classic node conventions (INPUT_TYPES / RETURN_TYPES / FUNCTION /
CATEGORY, NODE_CLASS_MAPPINGS) and tensor layouts: LATENT is {"samples": [B, C, h, w]}
(5-D [B, C, 1, h, w] for Qwen-Image) in ComfyUI's VAE space, before its latent_format's
process_in; CONDITIONING is [[cond [B, L, D], {...}], ...]; IMAGE is [B, H, W, 3] float32 in
[0, 1]. ComfyUI modules (folder_paths, comfy.utils, comfy.model_management) are used when
present and are never required, so the nodes also run without ComfyUI (the tests do).
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch

import pid
from pid.latents.transforms import raw_to_pid_latent
from pid.sampling.tiled import TileSpec, plan_tiles

PID_DECODER = "PID_DECODER"
CATEGORY = "pid-kernels"
DECODE_STEPS = len(pid.DISTILLED_T_LIST) - 1  # Decoder.decode's default, the released students'
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# ComfyUI latent_format -> pid backbone whose normalization its process_in applies. ComfyUI's
# Flux.2 latent is already PiD's (128 channels, BN-normalized; process_in is the identity),
# and "pid" means a latent already in PiD's space. Z-Image uses "flux1", as in ComfyUI.
LATENT_FORMATS = {"flux1": "flux", "sd3": "sd3", "sdxl": "sdxl", "qwenimage": "qwenimage", "flux2": None, "pid": None}


def _optional(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


def _checkpoint_input():
    """A combo of ComfyUI's diffusion_models files and the released names, else a path string."""
    folder_paths = _optional("folder_paths")
    if folder_paths is None:
        return ("STRING", {"default": "", "tooltip": "model_ema_bf16.pth / .safetensors path or a released name"})
    return (sorted(folder_paths.get_filename_list("diffusion_models")) + sorted(pid.RELEASED_CHECKPOINTS),)


def _resolve_checkpoint(name: str) -> str:
    folder_paths = _optional("folder_paths")
    if folder_paths is not None and name in folder_paths.get_filename_list("diffusion_models"):
        return folder_paths.get_full_path_or_raise("diffusion_models", name)
    return name


def _device() -> torch.device:
    management = _optional("comfy.model_management")
    if management is not None:
        return management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class PiDLoader:
    """Loads a PiD checkpoint (release .pth, our .safetensors or the Comfy-Org bf16 repack)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "checkpoint": _checkpoint_input(),
                "dtype": (list(DTYPES), {"default": "bf16"}),
                "compile": ("BOOLEAN", {"default": False, "tooltip": "pid.compile: fused kernels, CUDA graphs"}),
            },
            "optional": {
                "config": ("STRING", {"default": "", "tooltip": "a released checkpoint name or a config .json; "
                                      "needed only for weights that match no released architecture"}),
            },
        }

    RETURN_TYPES = (PID_DECODER,)
    RETURN_NAMES = ("pid_decoder",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, checkpoint: str, dtype: str, compile: bool, config: str = ""):
        if not checkpoint:
            raise ValueError("PiD Loader: checkpoint is empty; give a file path or a released checkpoint name")
        net = pid.load(_resolve_checkpoint(checkpoint), config=config or None, dtype=DTYPES[dtype], device=_device())
        decoder = pid.Decoder(net)
        return (pid.compile(decoder) if compile else decoder,)


class _StepProgress:
    """Stands in for Decoder.decode's stage timer: after each network step it advances ComfyUI's
    progress bar and lets ComfyUI's cancel button interrupt the decode."""

    def __init__(self, bar, management):
        self.bar, self.management = bar, management

    @contextlib.contextmanager
    def stage(self, name: str):
        yield
        if name == "network":
            if self.management is not None:
                self.management.throw_exception_if_processing_interrupted()
            self.bar.update(1)


def _pid_latent(samples: torch.Tensor, latent_format: str) -> torch.Tensor:
    if latent_format not in LATENT_FORMATS:
        raise ValueError(f"latent_format must be one of {', '.join(LATENT_FORMATS)}, got {latent_format!r}")
    backbone = LATENT_FORMATS[latent_format]
    return samples if backbone is None else raw_to_pid_latent(backbone, samples.float())


def _captions(conditioning, caption_embeds: Optional[torch.Tensor], batch: int) -> torch.Tensor:
    if caption_embeds is None:
        if not conditioning:
            raise ValueError("PiD Decode needs captions: connect a CONDITIONING (ComfyUI's pixeldit text encoder) "
                             "or a caption_embeds file (pid.io.captions.save_caption_embeds)")
        caption_embeds = conditioning[0][0]
    captions = caption_embeds.float()
    return captions.expand(batch, -1, -1) if captions.shape[0] == 1 else captions


class PiDDecode:
    """LATENT (+ captions) -> IMAGE with PiD's distilled 4-step sampler."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pid_decoder": (PID_DECODER,),
                "samples": ("LATENT",),
                "latent_format": (list(LATENT_FORMATS), {"default": "flux1"}),
                "degrade_sigma": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                            "tooltip": "noise left in the latent; 0 = a finished latent"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            },
            "optional": {
                "conditioning": ("CONDITIONING",),
                "caption_embeds_file": ("STRING", {"default": "", "tooltip": ".safetensors with 'caption_embeds'"}),
                "tile_size": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 32,
                                      "tooltip": "output pixels per tile; 0 = no tiling"}),
                "tile_overlap": ("INT", {"default": 128, "min": 32, "max": 4096, "step": 32}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY

    def decode(self, pid_decoder, samples, latent_format, degrade_sigma, seed, conditioning=None,
               caption_embeds_file="", tile_size=0, tile_overlap=128):
        from pid.io.captions import load_caption_embeds

        net = pid_decoder.net
        latent = _pid_latent(samples["samples"], latent_format)
        file_embeds = None
        if caption_embeds_file:
            file_embeds, _ = load_caption_embeds(caption_embeds_file, embed_dim=net.config["txt_embed_dim"])
        captions = _captions(conditioning, file_embeds, latent.shape[0])
        tiles = TileSpec(tile_size, tile_overlap) if tile_size else None
        kwargs = {"seed": seed, "tiles": tiles}
        utils = _optional("comfy.utils")
        if utils is not None and pid_decoder.graphs is None:  # a CUDA-graph replay has no steps to report
            cell = net.sr_scale * net.latent_down_factor
            tile_count = len(plan_tiles(tuple(latent.shape[-2:]), cell, tiles)) if tiles else 1
            bar = utils.ProgressBar(DECODE_STEPS * tile_count)
            kwargs["timer"] = _StepProgress(bar, _optional("comfy.model_management"))
        images = pid_decoder.decode(latent, degrade_sigma, captions, **kwargs)
        return (((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu(),)


NODE_CLASS_MAPPINGS = {"PiDLoaderPidKernels": PiDLoader, "PiDDecodePidKernels": PiDDecode}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PiDLoaderPidKernels": "PiD Loader (pid-kernels)",
    "PiDDecodePidKernels": "PiD Decode (pid-kernels)",
}
