"""Input checks and conversions with messages that name the argument and say what was expected.

Shape checks are cheap and run on every forward. Value checks (finite, sigma
range) read tensor values, which synchronises a GPU, so they run once per
decode in `pid.Decoder`, not inside the network. Image-size and latent-shape
rules live in `pid.sampling.geometry`.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch

# Every spelling a dtype argument accepts (the CLI offers the short ones).
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}  # fmt: skip
CLI_DTYPES = ("fp32", "bf16", "fp16")


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) if t.dim() else "scalar"


def as_dtype(value: Any, what: str = "dtype") -> Optional[torch.dtype]:
    """A floating torch.dtype from a torch.dtype or a name ('bf16', 'bfloat16', 'fp16', 'float32', ...);
    None stays None."""
    if value is None or isinstance(value, torch.dtype) and value in DTYPES.values():
        return value
    if isinstance(value, str) and value.strip().lower().removeprefix("torch.") in DTYPES:
        return DTYPES[value.strip().lower().removeprefix("torch.")]
    raise TypeError(f"{what} must be a torch.dtype or one of {', '.join(DTYPES)}, got {value!r}")


def as_tensor(value: Any, what: str, floating: bool = True) -> torch.Tensor:
    """A tensor from a tensor or a numpy array; anything else is a TypeError naming `what`."""
    if isinstance(value, torch.Tensor):
        tensor = value
    elif type(value).__module__ == "numpy" and hasattr(value, "__array__"):
        tensor = torch.as_tensor(value)
    else:
        raise TypeError(f"{what} must be a torch.Tensor (or a numpy array), got {type(value).__name__}")
    if floating and not tensor.is_floating_point():
        raise TypeError(f"{what} must hold floating-point values, got dtype {tensor.dtype}")
    return tensor


def as_per_sample(value: Any, what: str) -> torch.Tensor:
    """A float, a sequence of floats, a numpy array or a tensor -> a float32 tensor [N]."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise TypeError(f"{what} must be a number or a tensor of one value per sample, got {value!r}")
    try:
        tensor = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what} must be a number or a tensor of one value per sample, got {type(value).__name__}") from None
    return tensor.reshape(-1)


def require_tensor(what: str, value: Any) -> None:
    """The network's cheap guard: a non-tensor argument is a TypeError, not an AttributeError inside."""
    if value is not None and not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(value).__name__}")


def check_captions(net, y: torch.Tensor, batch: int, caption_mask: Optional[torch.Tensor]) -> None:
    txt_dim = net.config["txt_embed_dim"]
    if y.dim() != 3 or y.shape[-1] != txt_dim or y.shape[1] < 1:
        raise ValueError(f"caption embeddings must be [B, L, {txt_dim}] with L >= 1, got shape {_shape(y)}")
    if y.shape[0] != batch:
        raise ValueError(f"batch mismatch: caption embeddings have batch {y.shape[0]}, expected {batch}")
    if caption_mask is not None and tuple(caption_mask.shape) != tuple(y.shape[:2]):
        raise ValueError(f"caption_mask must be [B, L] = {_shape(y[..., 0])}, got {_shape(caption_mask)}")


def truncate_captions(embeds: torch.Tensor, mask: Optional[torch.Tensor], max_tokens: int, what="caption_embeds"):
    """Keep the first `max_tokens` caption tokens, as the release's network does, with a warning."""
    if embeds.dim() != 3 or embeds.shape[1] <= max_tokens:  # shapes are checked elsewhere
        return embeds, mask
    warnings.warn(
        f"{what} has {embeds.shape[1]} tokens but this model reads at most {max_tokens}; using the first "
        f"{max_tokens}, as the release does",
        stacklevel=5,  # the caller of decode / sample_cfg (under torch.no_grad's wrapper)
    )
    return embeds[:, :max_tokens], None if mask is None else mask[:, :max_tokens]


def check_per_sample(name: str, value: torch.Tensor, batch: int) -> None:
    if value is None:
        raise ValueError(f"{name} is required, one value per sample [B]")
    if value.numel() not in (1, batch):
        raise ValueError(f"{name} must hold 1 or B={batch} values, got shape {_shape(value)}")


def check_forward_inputs(net, x, t, y, lq_latent, degrade_sigma, caption_mask) -> None:
    for what, value in (("x", x), ("t", t), ("y", y), ("lq_latent", lq_latent), ("degrade_sigma", degrade_sigma),
                        ("caption_mask", caption_mask)):
        require_tensor(what, value)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"x_t must be [B, 3, H, W], got shape {_shape(x)}")
    batch = x.shape[0]
    net.geometry.check_latent(lq_latent, tuple(x.shape[-2:]), batch, what="lq_latent")
    check_captions(net, y, batch, caption_mask)
    check_per_sample("t", t, batch)
    check_per_sample("degrade_sigma", degrade_sigma, batch)


def check_finite(name: str, value: torch.Tensor) -> None:
    if not torch.isfinite(value).all():
        bad = (~torch.isfinite(value)).sum().item()
        raise ValueError(f"{name} contains {bad} NaN/Inf value(s); every input value must be finite")


def check_sigma_range(sigma: torch.Tensor) -> None:
    if ((sigma < 0) | (sigma > 1)).any():
        raise ValueError(f"degrade_sigma must lie in [0, 1] (0 = clean latent), got {sigma.tolist()}")


class NonFiniteError(RuntimeError):
    """Weights or decoded images hold NaN/Inf: never written out as if they were an image."""


NON_FINITE_CAUSES = (
    "likely causes: a corrupted checkpoint file (pid.load checks every weight unless check_finite=False), "
    "float16 overflow (decode in bfloat16 or float32), or NaN/Inf in the inputs"
)


def check_finite_images(images: torch.Tensor) -> None:
    """One device sync per decode; counts the bad values only when there are some."""
    if not bool(torch.isfinite(images).all()):
        bad = int((~torch.isfinite(images)).sum())
        raise NonFiniteError(
            f"the decoded images contain {bad} NaN/Inf value(s) of {images.numel()} "
            f"(batch {images.shape[0]}, {images.shape[-2]}x{images.shape[-1]}); {NON_FINITE_CAUSES}"
        )


def default_device() -> torch.device:
    """The first CUDA device when torch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU, as the release runs; float32 on the CPU, where bf16 matmuls are slow."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def as_device(value: Any, what: str = "device") -> torch.device:
    """A usable torch.device from a string or device ('cpu', 'cuda', 'cuda:1'); None -> default_device().
    ValueError when the device does not exist here (CUDA without a GPU, a GPU index too large)."""
    if value is None:
        return default_device()
    try:
        device = torch.device(value)
    except (TypeError, RuntimeError, ValueError):
        raise ValueError(f"{what} {value!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{what} {value!r}: no CUDA device is visible (torch {torch.__version__}, CUDA build: "
                f"{torch.version.cuda or 'none'}); use cpu, or install a CUDA build of torch on a GPU machine"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{what} {value!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif device.type != "cpu":
        raise ValueError(f"{what} {value!r}: PiD runs on cpu or cuda, not {device.type}")
    return device
