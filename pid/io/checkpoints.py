"""Loading released PiD checkpoints (and our own safetensors exports) into a PiDNet.

Accepted sources:
- the release's `model_ema_bf16.pth`: `torch.save` of a flat dict
  {"net.<param>": bf16 tensor}; read with `torch.load(weights_only=True, mmap=True)`,
  so no pickle code ever runs;
- a `.safetensors` file (keys with or without `net.`; our exports also carry the
  config as JSON metadata under "pid_config");
- a state dict; a directory holding one of the files; a released checkpoint name,
  found in a local Hugging Face cache snapshot of `nvidia/PiD` (never downloaded).

Key mapping: our parameter names are the release's, so the only rename is
stripping the `net.` prefix. Keys under `net_ema.`, `fake_score.` and
`discriminator.` (training state) are ignored, as the official loader does. The
v1.5 aux RGB head (`lq_proj.lq_aux_rgb_head.*`, training-only) may be absent.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from pid.io import hub
from pid.configs import RELEASED_CHECKPOINTS, architecture_names, released_config, resolve_config
from pid.model.network import PiDNet

PREFIX = "net."
IGNORED_PREFIXES = ("net_ema.", "fake_score.", "discriminator.")
OPTIONAL_PREFIXES = ("lq_proj.lq_aux_rgb_head.",)
CHECKPOINT_FILE = "model_ema_bf16.pth"
HF_REPO_ID = "nvidia/PiD"
CONFIG_METADATA_KEY = "pid_config"

Source = Union[str, os.PathLike, Mapping[str, torch.Tensor]]


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the network; lists every offending key."""

    def __init__(self, missing, unexpected, misshapen):
        self.missing, self.unexpected, self.misshapen = missing, unexpected, misshapen
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if misshapen:
            shapes = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in misshapen]
            parts.append(f"misshapen keys ({len(misshapen)}): {_preview(shapes)}")
        super().__init__("checkpoint does not match the PiD config; " + "; ".join(parts))


def _preview(items, limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# ---- finding and reading files ------------------------------------------------------
def find_released_checkpoint(name: str) -> Path:
    """The local file of a released checkpoint name, from an `nvidia/PiD` hub snapshot."""
    looked = []
    for cache in hub.cache_dirs():
        repo_dir = hub.repo_folder(cache, HF_REPO_ID)
        looked.append(str(repo_dir))
        for snapshot in hub.snapshots(repo_dir):
            for candidate in (snapshot / "checkpoints" / name / CHECKPOINT_FILE, snapshot / name / CHECKPOINT_FILE):
                if candidate.is_file():
                    return candidate
    raise FileNotFoundError(
        f"released checkpoint {name!r} not found locally (looked under {', '.join(looked)}); download it "
        f"once, e.g. `huggingface-cli download nvidia/PiD --include 'checkpoints/{name}/*'`, or pass the "
        f"path of its {CHECKPOINT_FILE}"
    )


def _resolve_path(source: Union[str, os.PathLike]) -> Path:
    path = Path(source)
    if path.is_dir():
        candidates = [path / CHECKPOINT_FILE, *sorted(path.glob("*.safetensors"))]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise FileNotFoundError(f"no {CHECKPOINT_FILE} or *.safetensors in directory {path}")
        return found[0]
    if path.is_file():
        return path
    if str(source) in RELEASED_CHECKPOINTS:
        return find_released_checkpoint(str(source))
    raise FileNotFoundError(f"checkpoint {str(source)!r} is neither a file, a directory nor a released checkpoint name")


def read_state_dict(source: Source) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """Any accepted source -> (raw flat state dict, config from file metadata or None)."""
    if isinstance(source, Mapping):
        return dict(source), None
    path = _resolve_path(source)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
        config = json.loads(metadata[CONFIG_METADATA_KEY]) if CONFIG_METADATA_KEY in metadata else None
        return state, config
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        # Files written with the legacy (non-zip) serializer cannot be memory-mapped.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a flat dict of tensors")
    return dict(state), None


def network_state_dict(raw: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Strip `net.`, drop training-only prefixes, refuse non-tensor values."""
    state = {}
    for key, value in raw.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, expected a tensor")
        state[key[len(PREFIX) :] if key.startswith(PREFIX) else key] = value
    return state


# ---- configs ------------------------------------------------------------------------
def _meta_shapes(config: Mapping[str, Any]) -> dict[str, tuple]:
    with torch.device("meta"):
        net = PiDNet(**config)
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def _fits(state_shapes: Mapping[str, tuple], model_shapes: Mapping[str, tuple]) -> bool:
    required = {k: v for k, v in model_shapes.items() if not k.startswith(OPTIONAL_PREFIXES)}
    if any(k not in model_shapes for k in state_shapes):
        return False
    return all(state_shapes.get(k) == shape for k, shape in required.items()) and all(
        model_shapes[k] == state_shapes[k] for k in state_shapes
    )


def _count(state: Mapping[str, torch.Tensor], prefix: str, suffix: str) -> int:
    return sum(1 for key in state if key.startswith(prefix) and key.endswith(suffix))


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A config for a network state dict (keys without `net.`).

    A released architecture whose keys and shapes match is returned as is. Otherwise
    the structural sizes are read off the shapes; the kwargs that leave no trace in
    the weights (RoPE reference, conv padding, sr_scale, latent down factor,
    unpatchify factor) take the values of the release family the keys belong to
    (v1.5 when the PiT gate is present, v1 otherwise): pass `config` to override.
    """
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for arch in architecture_names():
        if _fits(shapes, _meta_shapes(released_config(arch))):
            return released_config(arch)
    try:
        hidden, patch_features = shapes["s_embedder.proj.weight"]
        head_dim = shapes["patch_blocks.0.attn.q_norm_x.weight"][0]
        attn_dim = shapes["pixel_blocks.0.compress_to_attn.weight"][0]
        pixel_head_dim = shapes["pixel_blocks.0.attn.q_norm.weight"][0]
        lq_hidden, lq_in = shapes["lq_proj.latent_proj.0.weight"][:2]
        gate_out = shapes["lq_proj.gate_modules.0.content_proj.weight"][0]
        txt_max_length, txt_embed_dim = shapes["y_pos_embedding"][1], shapes["y_embedder.proj.weight"][1]
    except KeyError as error:
        raise ValueError(f"cannot infer a PiD config: the state dict lacks {error}") from None
    v15 = "pit_lq_gate.log_alpha" in shapes
    config = released_config("v15_sr4x_lat16_down8" if v15 else "v1_sr4x_lat16_down8")
    patch_depth = _count(state, "patch_blocks.", "norm_x1.weight")
    num_gates = _count(state, "lq_proj.gate_modules.", "log_alpha")
    config.update(
        hidden_size=hidden,
        patch_size=int(round((patch_features / 3) ** 0.5)),
        num_groups=hidden // head_dim,
        patch_depth=patch_depth,
        pixel_depth=_count(state, "pixel_blocks.", "norm1.weight"),
        pixel_hidden_size=shapes["pixel_embedder.proj.weight"][0],
        pixel_attn_hidden_size=attn_dim,
        pixel_num_groups=attn_dim // pixel_head_dim,
        txt_embed_dim=txt_embed_dim,
        txt_max_length=txt_max_length,
        lq_hidden_dim=lq_hidden,
        lq_latent_channels=lq_in * config["lq_latent_unpatchify_factor"] ** 2,
        lq_num_res_blocks=_count(state, "lq_proj.latent_proj.", "block.0.weight"),
        lq_interval=-(-patch_depth // num_gates) if num_gates else 1,
        lq_gate_type="sigma_aware_per_token" if gate_out == 1 else "sigma_aware_per_token_per_dim",
        pit_lq_inject=v15,
        lq_aux_rgb_head=any(key.startswith(OPTIONAL_PREFIXES) for key in shapes) or v15,
    )
    return config


# ---- the public entry point -----------------------------------------------------------
def load_into(net: PiDNet, state: Mapping[str, torch.Tensor]) -> None:
    """Copy a network state dict into `net` strictly (the aux RGB head may be absent)."""
    model_state = net.state_dict()
    missing = [k for k in model_state if k not in state and not k.startswith(OPTIONAL_PREFIXES)]
    unexpected = [k for k in state if k not in model_state]
    misshapen = [
        (k, tuple(v.shape), tuple(model_state[k].shape))
        for k, v in state.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    if missing or unexpected or misshapen:
        raise CheckpointMismatchError(missing, unexpected, misshapen)
    net.load_state_dict(state, strict=False)


def load(
    source: Source,
    config: Optional[Union[str, Mapping[str, Any]]] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[Union[str, torch.device]] = None,
    precision: Optional[str] = None,
) -> PiDNet:
    """A PiDNet with the weights of `source`, in eval mode.

    The weights are upcast to float32 unless `dtype` is given (the release's bf16
    values are exact in either). `config` (a checkpoint name or a kwargs dict) is
    inferred from the keys and shapes when omitted. `precision="fp8"` quantizes the
    network at load time by the default `pid.quant` policy; a quantized export
    (`pid quantize`) loads as stored, fp8 without asking. Either way the layers kept out
    of fp8 are in `dtype`, bfloat16 by default.
    """
    from pid.quant.export import read_layout

    if precision not in (None, "fp8"):
        raise ValueError(f"precision must be None or 'fp8', got {precision!r}")
    raw, file_config = read_state_dict(source)
    state = network_state_dict(raw)
    resolved = resolve_config(config) if config is not None else file_config or infer_config(state)
    layout = None if isinstance(source, Mapping) else read_layout(_resolve_path(source))
    if dtype is None and (layout is not None or precision == "fp8"):
        dtype = torch.bfloat16
    with torch.device("meta"):
        net = PiDNet(**resolved)
        if layout is not None:
            layout.apply(net)
    # Allocate in the target dtype so a bf16 load never holds a float32 copy.
    net = net.to_empty(device=device or "cpu").to(dtype or torch.float32)
    load_into(net, state)
    if layout is not None:
        layout.check(net, state)
    if net.lq_proj.lq_aux_rgb_head is not None and not any(k.startswith(OPTIONAL_PREFIXES) for k in state):
        # The released students ship without the training-only head; keep it but mark it unusable.
        net.lq_proj.lq_aux_rgb_head = None
    if precision == "fp8" and layout is None:
        from pid.quant.convert import quantize_model

        quantize_model(net)
    return net.eval()


def save_safetensors(net: PiDNet, path: Union[str, os.PathLike], dtype: Optional[torch.dtype] = None) -> None:
    """Write `net` as `.safetensors` with the release's `net.` keys and our config as metadata.
    A quantized network (`pid.quant`) keeps its e4m3 weights and float32 scales (`dtype`
    casts the rest) and records its layout, so `load` rebuilds it."""
    from safetensors.torch import save_file

    from pid.quant.export import export_metadata, is_quantized, quantized_keys

    kept = quantized_keys(net)
    state = {PREFIX + k: (v.to(dtype) if dtype and k not in kept else v).contiguous() for k, v in net.state_dict().items()}
    metadata = {CONFIG_METADATA_KEY: json.dumps(net.config)}
    if is_quantized(net):
        metadata.update(export_metadata(net.pid_quant))
    save_file(state, str(path), metadata=metadata)
