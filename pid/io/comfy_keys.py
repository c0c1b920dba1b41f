"""ComfyUI's PiD weight layout <-> ours (the release's parameter names).

ComfyUI core builds PiD from `comfy/ldm/pixeldit/` (PixDiT_T2I + PidNet); its
module names are the release's, so most keys carry over unchanged. The table
below was derived from that public model code and from its model-detection test
(read 2026-12; no ComfyUI code is used here):

| ours (release, `net.` stripped)                  | ComfyUI                                                   |
|--------------------------------------------------|-----------------------------------------------------------|
| (no prefix)                                      | `model.diffusion_model.` in a full checkpoint; none in a   |
|                                                  | `diffusion_models/` file (the Comfy-Org repack,            |
|                                                  | `Comfy-Org/PixelDiT`, `pid_*_4step_bf16.safetensors`)      |
| `pixel_blocks.{i}.adaLN_modulation.0.weight`     | `pixel_blocks.{i}.adaLN_modulation_msa.weight` and         |
|   [6*Dp*P2, C]                                   | `pixel_blocks.{i}.adaLN_modulation_mlp.weight`, [3*Dp*P2, C] each |
| `pixel_blocks.{i}.adaLN_modulation.0.bias`       | `..._msa.bias` and `..._mlp.bias`                          |
| `lq_proj.lq_aux_rgb_head.*` (v1.5, training-only) | absent: ComfyUI does not build the head                   |
| every other key                                  | the same name                                             |

ComfyUI splits the pixel-block adaLN Linear at load (its two Linears keep peak
memory down). The release views that Linear's output as [tokens, P2, 6*Dp] and
chunks the last axis into (shift, scale, gate) for attention then (shift, scale,
gate) for the MLP; each ComfyUI Linear yields [tokens, P2, 3*Dp]. So output row
p*6*Dp + k is msa row p*3*Dp + k for k < 3*Dp, and mlp row p*3*Dp + k - 3*Dp
otherwise. A file may hold either the split or the unsplit form: both load.

Quantized ComfyUI variants (mxfp8 v1, int8 v1.5: float8/int8 weights with
`weight_scale` / `comfy_quant` entries) are refused with a clear error until the
project's fp8 support lands.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

COMFY_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
_SPLIT = re.compile(r"^(pixel_blocks\.\d+)\.adaLN_modulation_(msa|mlp)\.(weight|bias)$")
_QUANT_SUFFIXES = (".weight_scale", ".comfy_quant", ".scale_weight", ".input_scale")
_QUANT_DTYPES = {torch.int8, torch.uint8, *(getattr(torch, n) for n in dir(torch) if n.startswith("float8_"))}


def is_comfy_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys carry ComfyUI's prefix or its split pixel-block adaLN."""
    return any(key.startswith(COMFY_PREFIXES) or _SPLIT.match(key) for key in state)


def check_not_quantized(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse ComfyUI's fp8/int8 repacks, naming what gave them away."""
    for key, value in state.items():
        quantized_dtype = isinstance(value, torch.Tensor) and value.dtype in _QUANT_DTYPES
        if key.endswith(_QUANT_SUFFIXES) or quantized_dtype:
            what = f"dtype {value.dtype}" if quantized_dtype else "a quantization scale entry"
            raise ValueError(
                f"checkpoint entry {key!r} is {what}: quantized ComfyUI PiD files (mxfp8 / int8) are not "
                f"supported yet (pending the fp8 work); use the bf16 repack (pid_*_bf16.safetensors) or the "
                f"release's model_ema_bf16.pth"
            )


def _strip_prefix(key: str) -> str:
    for prefix in COMFY_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _pixel_dim(state: Mapping[str, torch.Tensor], block: str) -> int:
    norm = f"{block}.norm1.weight"
    if norm not in state:
        raise ValueError(f"ComfyUI layout: {block} has a split adaLN but no {norm} to size it by")
    return state[norm].shape[0]


def from_comfy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ComfyUI-layout state dict -> our keys (no `net.`), merging the split adaLN Linears."""
    plain = {_strip_prefix(key): value for key, value in state.items()}
    out: dict[str, torch.Tensor] = {}
    halves: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in plain.items():
        match = _SPLIT.match(key)
        if match:
            block, half, kind = match.groups()
            halves.setdefault((block, kind), {})[half] = value
        else:
            out[key] = value
    for (block, kind), pair in halves.items():
        if set(pair) != {"msa", "mlp"}:
            raise ValueError(f"ComfyUI layout: {block}.adaLN_modulation_{'mlp' if 'msa' in pair else 'msa'}.{kind} is missing")
        third = 3 * _pixel_dim(plain, block)
        msa, mlp = pair["msa"], pair["mlp"]
        merged = torch.cat([msa.reshape(-1, third, *msa.shape[1:]), mlp.reshape(-1, third, *mlp.shape[1:])], dim=1)
        out[f"{block}.adaLN_modulation.0.{kind}"] = merged.reshape(-1, *msa.shape[1:])
    return out


def to_comfy(state: Mapping[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Our state dict (no `net.`) -> ComfyUI's split layout under `prefix` (the inverse of from_comfy)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = re.match(r"^(pixel_blocks\.\d+)\.adaLN_modulation\.0\.(weight|bias)$", key)
        if not match:
            out[prefix + key] = value
            continue
        block, kind = match.groups()
        third = 3 * state[f"{block}.norm1.weight"].shape[0]
        rows = value.reshape(-1, 2 * third, *value.shape[1:])
        out[f"{prefix}{block}.adaLN_modulation_msa.{kind}"] = rows[:, :third].reshape(-1, *value.shape[1:]).contiguous()
        out[f"{prefix}{block}.adaLN_modulation_mlp.{kind}"] = rows[:, third:].reshape(-1, *value.shape[1:]).contiguous()
    return out
