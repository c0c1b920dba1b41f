"""The Ray Serve application of `pid serve`.

One `PiDDecoder` replica per GPU (or per CPU slot in tests) holds a loaded network. Each
request joins the batch queue of its bucket (latent and caption shapes, steps: requests that
decode to the same output size and can be stacked), `@serve.batch` forms batches of up to
`max_batch_size`, and one batched decode answers them all. Each request's noise is drawn from
its own seed exactly as a single-image `pid.Decoder.decode(seed=...)` draws it, so an image
does not depend on what it was batched with.

Back-pressure: a replica takes `max_ongoing_requests` at a time, and at most
`max_queued_requests` wait for one; beyond that Ray Serve's proxy answers 503 at once.

Multi-GPU replicas (`gpus_per_replica > 1`) reserve their GPUs as one STRICT_PACK placement
group (`deployment_options`), for a sequence-parallel decode of 4K/8K images inside the
replica. Only the reservation is implemented: the replica does not yet start the ranks that
would use the extra GPUs, and nothing of it has been run (no multi-GPU machine here).
"""

from __future__ import annotations

import asyncio
import os
from typing import Optional

import torch

from pid.serve.protocol import BadRequest, DecodeRequest, encode_image, parse_decode

try:
    from ray import serve
    from starlette.responses import JSONResponse, Response
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("pid serve needs Ray Serve: pip install 'pid-kernels[serve]'") from error

DEFAULT_MAX_BATCH = 4
DEFAULT_BATCH_WAIT_S = 0.05
DEFAULT_MAX_QUEUED = 64


def deployment_options(
    replicas: int = 1,
    gpus_per_replica: int = 0,
    cpus_per_replica: float = 1.0,
    max_batch_size: int = DEFAULT_MAX_BATCH,
    max_queued_requests: int = DEFAULT_MAX_QUEUED,
) -> dict:
    """Ray Serve deployment options: `replicas` replicas of `gpus_per_replica` GPUs (0: CPU),
    room for two batches in flight per replica, a bounded queue."""
    options = {
        "num_replicas": replicas,
        "max_ongoing_requests": 2 * max_batch_size,
        "max_queued_requests": max_queued_requests,
        "health_check_period_s": 2.0,
    }
    if gpus_per_replica > 1:
        options["placement_group_bundles"] = [{"CPU": cpus_per_replica, "GPU": 1}] + [{"GPU": 1}] * (gpus_per_replica - 1)
        options["placement_group_strategy"] = "STRICT_PACK"
    else:
        options["ray_actor_options"] = {"num_cpus": cpus_per_replica, "num_gpus": gpus_per_replica}
    return options


@serve.deployment
class PiDDecoder:
    """A replica: the network of `checkpoint` on this replica's device, batches per bucket."""

    def __init__(
        self,
        checkpoint: str,
        dtype: str = "bf16",
        max_batch_size: int = DEFAULT_MAX_BATCH,
        batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_S,
        compile: bool = False,
    ):
        import pid

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        self.net = pid.load(checkpoint, dtype=dtypes[dtype], device=self.device)
        self.decoder = pid.Decoder(self.net)
        if compile:
            self.decoder = pid.compile(self.decoder)
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self._queues: dict = {}
        self._caption_encoder = None

    def _queue(self, bucket):
        """The batch queue of one bucket, made on first use."""
        if bucket not in self._queues:

            async def decode_bucket(requests: list[DecodeRequest]) -> list:
                return await asyncio.to_thread(self.decode_batch, requests)

            self._queues[bucket] = serve.batch(
                max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.batch_wait_timeout_s
            )(decode_bucket)
        return self._queues[bucket]

    def decode_batch(self, requests: list[DecodeRequest]) -> list[tuple[torch.Tensor, int]]:
        """One batched decode -> (image [3, H, W], batch size) per request."""
        from pid.sampling.distilled import _generator_noise

        latent = torch.cat([r.latent for r in requests])
        captions = torch.cat([r.captions for r in requests])
        mask = None if requests[0].caption_mask is None else torch.cat([r.caption_mask for r in requests])
        sigma = torch.tensor([r.sigma for r in requests])
        steps = requests[0].steps
        shape = (1, 3, *self.net.image_size_for_latent(tuple(latent.shape[-2:])))
        draws = [_generator_noise(torch.Generator(device=self.device).manual_seed(r.seed), shape, self.device)
                 for r in requests]
        noise = [torch.cat([draw(0) for draw in draws]) for _ in range(steps)]
        images = self.decoder.decode(latent, sigma, captions, caption_mask=mask, noise=noise, steps=steps)
        return [(image.cpu(), len(requests)) for image in images]

    def _text_captions(self, request: DecodeRequest) -> None:
        """Fill request.captions from request.caption_text with a local Gemma (optional)."""
        if self._caption_encoder is None:
            from pid.io import captions

            try:
                self._caption_encoder = captions.CaptionEncoder(device=self.device)
            except (ImportError, FileNotFoundError) as error:
                raise BadRequest(f"text captions need the Gemma-2-2B-it encoder on the server ({error}); "
                                 "send 'caption_embeds' instead") from None
        embeds, mask = self._caption_encoder([request.caption_text])
        request.captions = embeds.float().cpu()
        request.caption_mask = None

    async def __call__(self, http_request):
        path = http_request.url.path.rstrip("/")
        if path.endswith("/health"):
            return JSONResponse({"status": "ok", "device": str(self.device), "replica_pid": os.getpid()})
        if not path.endswith("/decode") or http_request.method != "POST":
            return JSONResponse({"error": "routes: POST /decode, GET /health"}, status_code=404)
        try:
            request = parse_decode(await http_request.body(), dict(http_request.query_params))
            if request.captions is None:
                await asyncio.to_thread(self._text_captions, request)
            image, batch = await self._queue(request.bucket)(request)
        except (BadRequest, ValueError) as error:  # ValueError: the decoder's input checks
            return JSONResponse({"error": str(error)}, status_code=400)
        body, media_type = encode_image(image, request.format)
        return Response(body, media_type=media_type, headers={"X-PiD-Batch-Size": str(batch)})


def build_app(
    checkpoint: str,
    dtype: str = "bf16",
    replicas: int = 1,
    gpus_per_replica: Optional[int] = None,
    cpus_per_replica: float = 1.0,
    max_batch_size: int = DEFAULT_MAX_BATCH,
    batch_wait_timeout_s: float = DEFAULT_BATCH_WAIT_S,
    max_queued_requests: int = DEFAULT_MAX_QUEUED,
    compile: bool = False,
):
    """The bound application (pass to `serve.run`). gpus_per_replica defaults to 1 when a GPU
    is visible, else 0 (CPU replicas)."""
    if gpus_per_replica is None:
        gpus_per_replica = 1 if torch.cuda.is_available() else 0
    options = deployment_options(replicas, gpus_per_replica, cpus_per_replica, max_batch_size, max_queued_requests)
    return PiDDecoder.options(**options).bind(checkpoint, dtype, max_batch_size, batch_wait_timeout_s, compile)
