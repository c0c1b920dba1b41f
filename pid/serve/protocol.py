"""The HTTP protocol of `pid serve`, independent of Ray.

POST /decode, body: a safetensors file with
  "latent"          [C, h, w] or [1, C, h, w]   (float, PiD's latent space)
  "caption_embeds"  [L, D] or [1, L, D]          (or the `caption` query parameter with a text
                                                   encoder configured on the server)
  "caption_mask"    [L] or [1, L]                (optional; 1 = real token)
query: sigma (float, default 0), seed (int, default 0), steps (1..4, default 4),
       format ("png", default, or "tensor": a safetensors file with "image" [3, H, W] float32
       in [-1, 1]), caption (text).
GET /health -> {"status": "ok", ...}.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional

import torch

FORMATS = ("png", "tensor")


class BadRequest(ValueError):
    """A request the server answers with 400 and this message."""


@dataclass
class DecodeRequest:
    latent: torch.Tensor  # [1, C, h, w] float32
    captions: Optional[torch.Tensor]  # [1, L, D] float32, None when `caption` text is given
    caption_mask: Optional[torch.Tensor]  # [1, L] or None
    caption_text: Optional[str]
    sigma: float
    seed: int
    steps: int
    format: str

    @property
    def bucket(self) -> tuple:
        """Requests that can share one batched decode: same latent and caption shapes, steps,
        and whether a mask is given (so the same output size)."""
        captions = None if self.captions is None else tuple(self.captions.shape[1:])
        return (tuple(self.latent.shape[1:]), captions, self.caption_mask is not None, self.steps)


def _batch_of_one(name: str, tensor: torch.Tensor, dims: int) -> torch.Tensor:
    if tensor.dim() == dims:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != dims + 1 or tensor.shape[0] != 1:
        raise BadRequest(f"{name} must be [{dims} dims] or [1, {dims} dims] (one image per request), got {list(tensor.shape)}")
    return tensor


def parse_decode(body: bytes, query: dict) -> DecodeRequest:
    """Request body + query parameters -> DecodeRequest, or BadRequest naming what is wrong."""
    from safetensors.torch import load as load_safetensors

    try:
        tensors = load_safetensors(body)
    except Exception as error:  # safetensors raises its own error types for bad bytes
        raise BadRequest(f"the body must be a safetensors file with 'latent' and 'caption_embeds': {error}") from None
    if "latent" not in tensors:
        raise BadRequest(f"the body has no 'latent' tensor (it has {sorted(tensors)})")
    text = query.get("caption")
    if "caption_embeds" not in tensors and text is None:
        raise BadRequest("send 'caption_embeds' [L, D] in the body, or a `caption` query parameter")
    try:
        sigma = float(query.get("sigma", 0.0))
        seed = int(query.get("seed", 0))
        steps = int(query.get("steps", 4))
    except ValueError as error:
        raise BadRequest(f"bad query parameter: {error}") from None
    fmt = query.get("format", "png")
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {FORMATS}, got {fmt!r}")
    captions = tensors.get("caption_embeds")
    mask = tensors.get("caption_mask")
    return DecodeRequest(
        latent=_batch_of_one("latent", tensors["latent"], 3).float(),
        captions=None if captions is None else _batch_of_one("caption_embeds", captions, 2).float(),
        caption_mask=None if mask is None else _batch_of_one("caption_mask", mask, 1),
        caption_text=text,
        sigma=sigma,
        seed=seed,
        steps=steps,
        format=fmt,
    )


def encode_decode_request(latent, caption_embeds=None, caption_mask=None) -> bytes:
    """The body of a POST /decode (the client side)."""
    from safetensors.torch import save

    tensors = {"latent": latent.contiguous()}
    if caption_embeds is not None:
        tensors["caption_embeds"] = caption_embeds.contiguous()
    if caption_mask is not None:
        tensors["caption_mask"] = caption_mask.contiguous()
    return save(tensors)


def encode_image(image: torch.Tensor, fmt: str) -> tuple[bytes, str]:
    """image [3, H, W] in [-1, 1] -> (body, media type)."""
    if fmt == "tensor":
        from safetensors.torch import save

        return save({"image": image.float().contiguous()}), "application/octet-stream"
    import pid

    buffer = io.BytesIO()
    pid.to_pil(image[None])[0].save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def decode_image_tensor(body: bytes) -> torch.Tensor:
    """A format=tensor response -> image [3, H, W] float32."""
    from safetensors.torch import load

    return load(body)["image"]
