"""Loading released PiD checkpoints (and our own safetensors exports) into a PiDNet.

Accepted sources:
- the release's `model_ema_bf16.pth`: `torch.save` of a flat dict
  {"net.<param>": bf16 tensor}; read with `torch.load(weights_only=True, mmap=True)`,
  so no pickle code ever runs;
- a `.safetensors` file (keys with or without `net.`; our exports also carry the
  config as JSON metadata under "pid_config");
- a state dict; a directory holding one of the files; a released checkpoint name,
  found in a local Hugging Face cache snapshot of `nvidia/PiD` (never downloaded);
- ComfyUI's layout (the Comfy-Org bf16 repack): see `pid.io.comfy_keys`.

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

from pid.configs import DEFAULTS, RELEASED_CHECKPOINTS, architecture_names, released_config, resolve_config
from pid.io import comfy_keys, hub
from pid.io.files import TensorFileError, read_tensor_file
from pid.model.network import PiDNet
from pid.sampling.checks import NonFiniteError, as_device, as_dtype
from pid.sampling.geometry import lq_alignment

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
        super().__init__(
            "checkpoint does not match the PiD config; " + "; ".join(parts) + ". Pass the config these weights "
            "were made with (config= a released name, a JSON file or a dict), or none to read it off the weights"
        )


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
    raise FileNotFoundError(
        f"checkpoint {str(source)!r} is neither a file, a directory nor a released checkpoint name; check the "
        f"path, or pass one of pid.RELEASED_CHECKPOINTS"
    )


def read_state_dict(source: Source) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """Any accepted source -> (raw flat state dict, config from file metadata or None)."""
    if isinstance(source, Mapping):
        return dict(source), None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path, a released checkpoint name or a state dict, got {type(source).__name__}")
    path = _resolve_path(source)
    state, metadata = read_tensor_file(path, "checkpoint", mmap=True)
    if not isinstance(state, Mapping):
        raise TensorFileError(
            f"checkpoint {path} holds a {type(state).__name__}, expected a flat dict of tensors; save "
            f"{{parameter name: tensor}} (e.g. net.state_dict()) instead"
        )
    config = None
    if metadata and CONFIG_METADATA_KEY in metadata:
        config = json.loads(metadata[CONFIG_METADATA_KEY])
    return dict(state), config


def network_state_dict(raw: Mapping[str, Any], quantized: bool = False) -> dict[str, torch.Tensor]:
    """Strip `net.`, drop training-only prefixes, refuse non-tensor values; ComfyUI's layout
    (pid.io.comfy_keys) is mapped to ours, and a layout without PiD's keys is refused.
    `quantized`: the file is our own fp8 export (pid.quant), whose layout vouches for its fp8 entries."""
    if not quantized:
        comfy_keys.check_not_quantized(raw)
    if comfy_keys.is_comfy_layout(raw):
        raw = comfy_keys.from_comfy(raw)
    state = {}
    for key, value in raw.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint entry {key!r} is a {type(value).__name__}, expected a tensor")
        state[key[len(PREFIX) :] if key.startswith(PREFIX) else key] = value
    if state and not any(key.startswith(("s_embedder.", "pixel_blocks.", "patch_blocks.")) for key in state):
        raise ValueError(
            f"not a PiD checkpoint layout this loader understands (keys: {_preview(sorted(state), 6)}); "
            "understood: the release's net.* keys, bare parameter names, ComfyUI's (model.diffusion_model.* "
            "and split pixel-block adaLN)"
        )
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


# Kwargs that leave no trace in the weights and differ between released architectures, with
# what they mean. Kwargs every release shares (rope_mode, text RoPE) are taken as the release's.
UNDETERMINED_BY_WEIGHTS: dict[str, str] = {
    "rope_ref_h": "RoPE reference height in pixels: 1024 for v1, 2048 for v1.5",
    "rope_ref_w": "RoPE reference width in pixels: 1024 for v1, 2048 for v1.5",
    "sr_scale": "output size / LQ image size: 4 or 8",
    "latent_spatial_down_factor": "LQ-image pixels per latent cell: 8 or 16",
    "lq_latent_unpatchify_factor": "latent unpatchify before the adapter: 1, or 2 for v1.5 Flux.2",
    "lq_conv_padding_mode": "LQ adapter conv padding: 'zeros' for v1, 'replicate' for v1.5",
    "lq_interval": "patch blocks per LQ gate: 2 in every release",
}


class ConfigUndeterminedError(ValueError):
    """A checkpoint whose config the weights do not fix; names each missing value and how to give it."""

    def __init__(self, missing: list[str], source: str):
        self.missing = missing
        listed = "; ".join(f"{key} ({UNDETERMINED_BY_WEIGHTS[key]})" for key in missing)
        super().__init__(
            f"cannot tell the config of {source} from its weights: they match no released architecture "
            f"exactly, and these values leave no trace in them: {listed}. Give them in one of three ways: "
            f"config={{...}} holding these keys, or a released checkpoint name (pid.RELEASED_CHECKPOINTS); "
            f"config='FILE.json', a JSON object of constructor kwargs (or one with a 'config' entry); or load "
            f"our own .safetensors export (pid.save_safetensors), which carries its config. "
            f"On the command line: pid decode --config FILE.json|NAME"
        )


def _released_match(shapes: Mapping[str, tuple]) -> Optional[dict[str, Any]]:
    for arch in architecture_names():
        if _fits(shapes, _meta_shapes(released_config(arch))):
            return released_config(arch)
    return None


def _lq_intervals(patch_depth: int, num_gates: int) -> list[int]:
    """Gate intervals that give `num_gates` gates over `patch_depth` blocks (gates before 0, i, 2i, ...)."""
    return [i for i in range(1, patch_depth + 1) if -(-patch_depth // i) == num_gates]


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The config values a network state dict (keys without `net.`) determines.

    A released architecture whose keys and shapes match exactly is returned whole.
    Otherwise only what the shapes fix is returned (widths, depths, heads, gate type,
    LQ adapter sizes, PiT injection, ...): the kwargs of UNDETERMINED_BY_WEIGHTS are
    left out unless the weights pin them down.
    """
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    released = _released_match(shapes)
    if released is not None:
        return released
    try:
        hidden, patch_features = shapes["s_embedder.proj.weight"]
        head_dim = shapes["patch_blocks.0.attn.q_norm_x.weight"][0]
        attn_dim = shapes["pixel_blocks.0.compress_to_attn.weight"][0]
        pixel_head_dim = shapes["pixel_blocks.0.attn.q_norm.weight"][0]
        lq_hidden = shapes["lq_proj.latent_proj.0.weight"][0]
        gate_out = shapes["lq_proj.gate_modules.0.content_proj.weight"][0]
        txt_max_length, txt_embed_dim = shapes["y_pos_embedding"][1], shapes["y_embedder.proj.weight"][1]
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"cannot read a PiD config off the state dict: it lacks or misshapes {error}") from None
    patch_depth = _count(state, "patch_blocks.", "norm_x1.weight")
    patch_size = int(round((patch_features / 3) ** 0.5))
    config: dict[str, Any] = dict(
        hidden_size=hidden,
        patch_size=patch_size,
        num_groups=hidden // head_dim,
        patch_depth=patch_depth,
        pixel_depth=_count(state, "pixel_blocks.", "norm1.weight"),
        pixel_hidden_size=shapes["pixel_embedder.proj.weight"][0],
        pixel_attn_hidden_size=attn_dim,
        pixel_num_groups=attn_dim // pixel_head_dim,
        txt_embed_dim=txt_embed_dim,
        txt_max_length=txt_max_length,
        lq_hidden_dim=lq_hidden,
        lq_num_res_blocks=_count(state, "lq_proj.latent_proj.", "block.0.weight"),
        lq_gate_type="sigma_aware_per_token" if gate_out == 1 else "sigma_aware_per_token_per_dim",
        pit_lq_inject="pit_lq_gate.log_alpha" in shapes,
        lq_aux_rgb_head=any(key.startswith(OPTIONAL_PREFIXES) for key in shapes),
    )
    intervals = _lq_intervals(patch_depth, _count(state, "lq_proj.gate_modules.", "log_alpha"))
    if len(intervals) == 1:
        config["lq_interval"] = intervals[0]
    aux_out = shapes.get(OPTIONAL_PREFIXES[0] + "3.weight")
    if aux_out is not None:  # the aux head predicts (patch_size / sr_scale)^2 RGB pixels per patch
        config["sr_scale"] = patch_size // int(round((aux_out[0] / 3) ** 0.5))
    return config


def _latent_channels(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> int:
    """lq_latent_channels from the adapter's input width, once unpatchify and fold are known."""
    lq_in = state["lq_proj.latent_proj.0.weight"].shape[1]
    unpatchify = config["lq_latent_unpatchify_factor"]
    fold, _ = lq_alignment(  # the fold factor does not depend on the channel count given here
        unpatchify**2, config["patch_size"], config["sr_scale"], config["latent_spatial_down_factor"], unpatchify
    )
    if lq_in % (fold * fold):
        raise ValueError(f"the LQ adapter takes {lq_in} channels, which a {fold}x{fold} latent fold cannot give")
    return lq_in // (fold * fold) * unpatchify**2


def load_config(
    state: Mapping[str, torch.Tensor], config: Optional[Union[str, os.PathLike, Mapping[str, Any]]], source: str
) -> dict[str, Any]:
    """The exact config to build for `state`: the user's values first, then what the weights
    determine, then the values every release shares. ConfigUndeterminedError when a value
    that the weights do not fix is still unknown."""
    if isinstance(config, str) and not config.lower().endswith(".json"):
        return resolve_config(config)  # a released name: the whole config
    user = {} if config is None else dict(config) if isinstance(config, Mapping) else resolve_config(config)
    if isinstance(config, Mapping):
        resolve_config(user)  # refuses unknown keys
    try:
        weights = infer_config(state)
    except ValueError:
        if not user:
            raise
        return resolve_config(user)  # the weights are too incomplete to read; load_into lists what is wrong
    missing = [key for key in UNDETERMINED_BY_WEIGHTS if key not in user and key not in weights]
    if missing:
        raise ConfigUndeterminedError(missing, source)
    resolved = {**DEFAULTS, **weights, **user}
    if "lq_latent_channels" not in user and "lq_latent_channels" not in weights:
        resolved["lq_latent_channels"] = _latent_channels(resolved, state)
    return resolve_config(resolved)


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


def _all_finite(tensor: torch.Tensor) -> torch.Tensor:
    """A 0-dim bool; float8 has no isfinite kernel, so its (exact) values are checked in float32."""
    if tensor.element_size() == 1:
        tensor = tensor.float()
    return torch.isfinite(tensor).all()


def check_finite_weights(net: PiDNet, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Every floating weight finite, with one device sync; names the first bad key."""
    params = [(key, value) for key, value in net.state_dict().items() if value.is_floating_point()]
    finite = torch.stack([_all_finite(value) for _, value in params]).cpu()
    if bool(finite.all()):
        return
    key = params[int((~finite).nonzero()[0])][0]
    others = int((~finite).sum()) - 1
    more = f" and {others} other tensor(s)" if others else ""
    if bool(_all_finite(state[key])):
        raise NonFiniteError(
            f"weight {key!r} of {source} overflows {str(net.dtype).replace('torch.', '')} (it is finite in the "
            f"file): load it in bfloat16 or float32"
        )
    raise NonFiniteError(
        f"checkpoint {source} holds NaN/Inf in {key!r}{more}: the file is corrupted (or was saved from a "
        f"diverged run); copy or download it again"
    )


def load(
    source: Source,
    config: Optional[Union[str, os.PathLike, Mapping[str, Any]]] = None,
    dtype: Optional[Union[str, torch.dtype]] = None,
    device: Optional[Union[str, torch.device]] = None,
    check_finite: bool = True,
    precision: Optional[str] = None,
) -> PiDNet:
    """A PiDNet with the weights of `source`, in eval mode.

    config: a released checkpoint name, a dict of constructor kwargs (it may hold only the
    values the weights leave open), or a JSON file. Without it the config is the file's own
    (our .safetensors exports), else the released architecture the weights match exactly,
    else read off the weights; a value no weight determines (RoPE reference, sr_scale,
    latent down factor, unpatchify factor, padding mode) is never guessed:
    ConfigUndeterminedError names each one and the ways to give it.

    dtype: torch.dtype or a name ('bf16', 'bfloat16', 'fp16', 'float32', ...); float32 by
    default (the release's bf16 values are exact in either). device: 'cpu' (default), 'cuda',
    'cuda:N' or a torch.device; one that is not there is a ValueError. check_finite=False skips the
    NaN/Inf scan of the weights (one pass over them, one sync) for speed.

    precision="fp8" quantizes the network at load time by the default `pid.quant` policy; a
    quantized export (`pid quantize`) loads as stored, fp8 without asking. Either way the
    layers kept out of fp8 are in `dtype`, bfloat16 by default.
    """
    from pid.quant.export import read_layout

    if precision not in (None, "fp8"):
        raise ValueError(f"precision must be None or 'fp8', got {precision!r}")
    dtype = as_dtype(dtype)
    device = torch.device("cpu") if device is None else as_device(device)
    raw, file_config = read_state_dict(source)
    layout = None if isinstance(source, Mapping) else read_layout(_resolve_path(source))
    state = network_state_dict(raw, quantized=layout is not None)
    name = "the state dict" if isinstance(source, Mapping) else str(source)
    resolved = load_config(state, config if config is not None else file_config, name)
    if dtype is None:
        dtype = torch.bfloat16 if layout is not None or precision == "fp8" else torch.float32
    with torch.device("meta"):
        net = PiDNet(**resolved)
        if layout is not None:
            layout.apply(net)
    # Allocate in the target dtype so a bf16 load never holds a float32 copy.
    net = net.to_empty(device=device).to(dtype)
    load_into(net, state)
    if layout is not None:
        layout.check(net, state)
    if net.lq_proj.lq_aux_rgb_head is not None and not any(k.startswith(OPTIONAL_PREFIXES) for k in state):
        # The released students ship without the training-only head: drop its uninitialised memory.
        net.lq_proj.lq_aux_rgb_head = None
    if check_finite:  # after the drop above: only weights that came from the file are scanned
        check_finite_weights(net, state, name)
    if precision == "fp8" and layout is None:
        from pid.quant.convert import quantize_model

        quantize_model(net)
    return net.eval()


def save_safetensors(net: PiDNet, path: Union[str, os.PathLike], dtype: Optional[Union[str, torch.dtype]] = None) -> None:
    """Write `net` as `.safetensors` with the release's `net.` keys and our config as metadata.
    A quantized network (`pid.quant`) keeps its e4m3 weights and float32 scales (`dtype`
    casts the rest) and records its layout, so `load` rebuilds it."""
    from safetensors.torch import save_file

    from pid.quant.export import export_metadata, is_quantized, quantized_keys

    dtype = as_dtype(dtype)
    kept = quantized_keys(net)
    state = {PREFIX + k: (v.to(dtype) if dtype and k not in kept else v).contiguous() for k, v in net.state_dict().items()}
    metadata = {CONFIG_METADATA_KEY: json.dumps(net.config)}
    if is_quantized(net):
        metadata.update(export_metadata(net.pid_quant))
    save_file(state, str(path), metadata=metadata)
