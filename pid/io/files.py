"""Reading tensor files (checkpoints, latents, caption embeddings) with errors that say what is wrong.

`.safetensors` is read with safetensors; `.pth` / `.pt` / `.bin` / `.ckpt` with
`torch.load(weights_only=True)`, which never runs pickled code: a file that needs
more than tensors and plain containers is refused for safety. Every failure is a
`TensorFileError` (a ValueError) or a FileNotFoundError naming the file and what to do.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any, Optional

import torch

SAFETENSORS_SUFFIX = ".safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_MAGIC = b"\x80"  # torch.save's legacy format starts with a pickle protocol byte
ACCEPTED = f"{SAFETENSORS_SUFFIX} or {'/'.join(TORCH_SUFFIXES)} (torch.save of tensors)"


class TensorFileError(ValueError):
    """A tensor file that cannot be used: empty, truncated, refused, or of another format."""


def _first_line(error: BaseException) -> str:
    """The first sentence of an error message (torch's go on for paragraphs)."""
    text = str(error).strip().splitlines()
    return text[0].split(". ")[0].rstrip(".") if text else type(error).__name__


def _refused_global(error: BaseException) -> str:
    match = re.search(r"GLOBAL (\S+)", str(error))
    return f"it needs the Python object {match.group(1)}" if match else "it holds Python objects other than tensors"


def _torch_load(path: Path, what: str, mmap: bool) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise TensorFileError(
                f"{what} {path} was refused for safety: {_refused_global(error)}, and pid reads .pth files "
                f"with torch.load(weights_only=True), which never runs pickled code; save a plain dict of "
                f"tensors or a .safetensors file instead"
            ) from None
        failure = error
    except Exception as error:  # torch.load fails in many types (RuntimeError, EOFError, KeyError, ...)
        if mmap and "mmap" in str(error):
            return _torch_load(path, what, mmap=False)  # legacy (non-zip) files cannot be memory-mapped
        failure = error
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == ZIP_MAGIC or head[:1] == PICKLE_MAGIC:
        raise TensorFileError(
            f"{what} {path} is truncated or corrupted ({_first_line(failure)}); copy or download it again"
        ) from None
    raise TensorFileError(
        f"{what} {path} is not a torch checkpoint (it starts with {head!r}, not a torch.save header); "
        f"expected {ACCEPTED}"
    ) from None


def read_tensor_file(path: Path, what: str, mmap: bool = False) -> tuple[Any, Optional[dict]]:
    """(contents, safetensors metadata or None) of a tensor file; `what` names it in errors
    ("checkpoint", "latent file", ...). `mmap` memory-maps torch files (large checkpoints)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    if path.stat().st_size == 0:
        raise TensorFileError(f"{what} {path} is empty (0 bytes): the copy or download did not finish; get it again")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                return {key: handle.get_tensor(key) for key in handle.keys()}, metadata
        except Exception as error:  # safetensors raises SafetensorError, OSError or a Rust panic
            raise TensorFileError(
                f"{what} {path} is not a readable safetensors file ({_first_line(error)}); it may be truncated "
                f"or of another format: copy or download it again"
            ) from None
    if suffix in TORCH_SUFFIXES:
        return _torch_load(path, what, mmap), None
    raise TensorFileError(f"{what} {path} has an unsupported format ({suffix or 'no suffix'}); use {ACCEPTED}")
