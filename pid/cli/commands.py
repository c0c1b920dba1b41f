"""The `pid` command: decode, export, quantize, info, demo, bench, serve.

Every user error (a missing, empty, truncated or refused file, a bad flag value, a device
that is not there, a shape that does not fit) prints one line,
`pid <command>: error: <what> <how to fix>`, and exits with status 2; `PID_DEBUG=1`
shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from pid.configs import DEFAULT_CHECKPOINT, RELEASED_CHECKPOINTS
from pid.sampling.checks import CLI_DTYPES, NonFiniteError, as_device, as_dtype, default_dtype
from pid.sampling.geometry import parse_size_text

EXIT_USAGE = 2
DEBUG_ENV = "PID_DEBUG"
# Errors that come from what the user passed, reported in one line. Anything else is a bug
# and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, OSError, NotImplementedError, NonFiniteError, torch.OutOfMemoryError)


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (no usage dump) that points at --help."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _size(text: str) -> tuple[int, int]:
    """'WxH' or 'N' -> (H, W)."""
    try:
        return parse_size_text(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(kind, low=None, high=None):
    """An argparse type: a finite int/float within [low, high]."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            bounds = f"in [{low}, {high}]" if high is not None else f">= {low}" if low is not None else "finite"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
        return value

    return parse


def _output_path(text: str) -> Path:
    """The --out image path; its format is checked before any work is done."""
    from PIL import Image

    Image.init()
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name such as {path / 'out.png'}")
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format not in Image.SAVE:
        raise argparse.ArgumentTypeError(
            f"cannot write {path.name!r}: the extension {path.suffix or '(none)'} is not an image format; "
            f"use .png (lossless), .jpg or .webp"
        )
    return path


def _parse_tile(text: str) -> tuple[int, int] | int:
    """'SIZE' or 'SIZE:OVERLAP' in output pixels -> Decoder.decode's tiles argument."""
    try:
        parts = [int(v) for v in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"--tile must be SIZE or SIZE:OVERLAP in output pixels, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def load_latent(path: Path) -> torch.Tensor:
    """A latent [B, C, h, w] (or [C, h, w]) from .safetensors (key 'latent' or the only tensor) or .pt."""
    from pid.io.files import read_tensor_file

    data, _ = read_tensor_file(path, "latent file")
    if isinstance(data, dict):
        if "latent" in data:
            data = data["latent"]
        elif len(data) == 1:
            data = next(iter(data.values()))
        else:
            raise CliError(f"latent file {path} holds {sorted(map(str, data))}; name the latent tensor 'latent'")
    if not isinstance(data, torch.Tensor) or data.dim() not in (3, 4) or not data.is_floating_point():
        got = f"shape {list(data.shape)}, {data.dtype}" if isinstance(data, torch.Tensor) else type(data).__name__
        raise CliError(f"latent file {path}: expected a float latent tensor [B, C, h, w] or [C, h, w], got {got}")
    return data.unsqueeze(0) if data.dim() == 3 else data


def _caption_encoder(device):
    from pid.io import captions

    try:
        return captions.CaptionEncoder(device=device)
    except (ImportError, FileNotFoundError) as error:
        raise CliError(f"--caption needs the Gemma-2-2B-it text encoder: {error}") from None


def _expand(embeds: torch.Tensor, mask: Optional[torch.Tensor], batch: int):
    if embeds.shape[0] == 1 and batch > 1:
        embeds = embeds.expand(batch, -1, -1)
        mask = None if mask is None else mask.expand(batch, -1)
    return embeds.float(), mask


def _captions(args, batch: int, device, embed_dim: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    from pid.io import captions

    if args.caption_embeds:
        embeds, mask = captions.load_caption_embeds(args.caption_embeds, embed_dim=embed_dim)
    elif args.caption is not None:
        embeds, mask = _caption_encoder(device)([args.caption])
    else:
        raise CliError(
            "PiD needs caption embeddings: pass --caption TEXT (needs `pip install transformers` and a local "
            "Gemma-2-2B-it; see `pid.io.captions.find_gemma`) or --caption-embeds FILE (a .safetensors with "
            "'caption_embeds' [B, L, 2304], e.g. written by pid.io.captions.save_caption_embeds)"
        )
    return _expand(embeds, mask, batch)


def _negative_captions(args, batch: int, device, embed_dim: int) -> Optional[torch.Tensor]:
    """The unconditional branch's embeddings for the CFG sampler (None when guidance is off)."""
    from pid.io import captions

    if args.cfg_scale == 1.0:
        return None
    if args.negative_embeds:
        embeds, _ = captions.load_caption_embeds(args.negative_embeds, embed_dim=embed_dim, what="negative embeddings file")
    elif args.caption is not None:
        embeds = _caption_encoder(device).negative()
    else:
        raise CliError("--sampler cfg with --cfg-scale != 1 needs --negative-embeds FILE (or --caption TEXT, "
                       "which also encodes the release's negative prompt)")
    return _expand(embeds, None, batch)[0]


def _resolve_checkpoint(args) -> str:
    if args.checkpoint:
        return args.checkpoint
    if not args.backbone:
        raise CliError("pass --checkpoint PATH (or --backbone NAME to use its released checkpoint from the HF cache)")
    from pid.latents.backbones import get_backbone

    spec = get_backbone(args.backbone)
    return spec.checkpoint(args.ckpt_type or spec.ckpt_types[0]).name


def _check_steps(args) -> None:
    """--steps: 1..4 for the distilled students, >= 1 for the cfg sampler."""
    if args.steps is not None and args.sampler == "distilled" and not 1 <= args.steps <= 4:
        raise CliError(f"--steps {args.steps}: the distilled sampler runs 1 to 4 steps (default 4)")


def cmd_decode(args) -> int:
    import pid
    from pid.latents.backbones import check_latent_for, get_backbone
    from pid.sampling.distilled import fresh_seed

    _check_steps(args)
    if args.parallel:
        from pid.parallel.launch import init_from_env

        device = init_from_env(str(as_device(args.device, "--device")) if args.device else None)
    else:
        device = as_device(args.device, "--device")
    # fp8 keeps its non-fp8 layers in bf16 unless --dtype says otherwise, as pid.load does.
    dtype = as_dtype(args.dtype) if args.dtype else None if args.precision else default_dtype(device)
    latent = load_latent(Path(args.latent))
    net = pid.load(_resolve_checkpoint(args), config=args.config, dtype=dtype, device=device,
                   precision=args.precision)
    if args.size:
        net.geometry.check_image_hw(args.size, "--size")
    if args.backbone:
        spec = get_backbone(args.backbone)
        if spec.lq_latent_channels != net.latent_channels:
            raise CliError(
                f"backbone {spec.name} gives {spec.lq_latent_channels}-channel latents but this checkpoint "
                f"takes {net.latent_channels}; pass the matching --backbone or --checkpoint"
            )
        check_latent_for(spec, latent, args.size)
    embeds, mask = _captions(args, latent.shape[0], device, net.config["txt_embed_dim"])
    seed = fresh_seed() if args.seed is None else args.seed
    start = time.perf_counter()
    if args.sampler == "cfg" and args.tile:
        raise CliError("--tile works with the distilled sampler only")
    if args.sampler == "cfg":
        from pid.sampling.cfg import DEFAULT_STEPS, sample_cfg

        negative = _negative_captions(args, latent.shape[0], device, net.config["txt_embed_dim"])
        generator = torch.Generator(device=device).manual_seed(seed)
        if args.parallel:  # CFG-parallel: the two guidance branches over the ranks
            from pid.parallel import cfg_parallel

            net = cfg_parallel(net)
        images = sample_cfg(
            net, latent.to(device), args.sigma, embeds.to(device), None if negative is None else negative.to(device),
            steps=args.steps or DEFAULT_STEPS, cfg_scale=args.cfg_scale, generator=generator,
            image_size=args.size or net.image_size_for_latent(tuple(latent.shape[-2:])),
            batch_cfg=bool(args.parallel),
        )
    else:
        decoder = pid.Decoder(net)
        if args.parallel:
            from pid.parallel import sequence_parallel

            decoder = sequence_parallel(decoder, mode=args.parallel)
        images = decoder.decode(
            latent,
            args.sigma,
            embeds,
            caption_mask=mask if args.caption_mask else None,
            image_size=args.size,
            seed=seed,
            steps=args.steps or 4,
            progress=True,
            tiles=args.tile,
        )
    if args.parallel:
        from pid.parallel.launch import is_main_rank

        if not is_main_rank():  # every rank holds the whole image; rank 0 writes it
            return 0
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures = pid.to_pil(images)
    paths = [out] if len(pictures) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(pictures))]
    for picture, path in zip(pictures, paths):
        picture.save(path)
    print(f"decoded {tuple(latent.shape)} -> {images.shape[-2]}x{images.shape[-1]} in {time.perf_counter() - start:.2f} s "
          f"({str(net.dtype).replace('torch.', '')} on {device}, seed {seed}; --seed {seed} reproduces it)")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_export(args) -> int:
    import pid
    from pid.integrations import export

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = pid.load(args.checkpoint, dtype=as_dtype(args.dtype), device=device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "aoti":
        export.export_aoti(net, out, args.size, args.caption_length, args.max_batch)
        what = "AOTInductor package of the per-step network"
    else:
        program = export.export_decode_loop(pid.Decoder(net), args.size, args.caption_length, max_batch=args.max_batch)
        torch.export.save(program, str(out))
        what = "torch.export program of the decode loop"
    height, width = args.size
    print(f"wrote {out}: {what}, {height}x{width}, {args.caption_length} caption tokens, batch 1..{args.max_batch}, "
          f"{args.dtype} on {device.type}")
    return 0


def cmd_info(args) -> int:
    from pid.cli.info import report

    print(report())
    return 0


def cmd_demo(args) -> int:
    from pid.cli import demo

    print(demo.main(args.out, args.checkpoint, args.size, as_device(args.device, "--device"), args.seed))
    return 0


def cmd_quantize(args) -> int:
    from pid.quant.export import quantize_checkpoint
    from pid.quant.policy import Policy, load_policy

    policy = load_policy(args.policy) if args.policy else Policy()
    print(quantize_checkpoint(args.checkpoint, args.out, policy))
    print(f"wrote {args.out}")
    return 0


def cmd_bench(args) -> int:
    from pid.bench import decode as bench

    command = " ".join(["pid", *args.raw_argv])
    if args.predict:
        from pid.bench.roofline import report_from_args

        print(report_from_args(args))
        return 0
    if args.memory:
        from pid.bench import memory_report

        return memory_report.run(args, command)
    bench.run(bench.settings_from_args(args, command))
    return 0


def cmd_serve(args) -> int:
    try:
        from pid.serve.main import serve_forever
    except ImportError as error:
        raise CliError(f"{error} (pip install 'pid-kernels[serve]')") from None
    serve_forever(args.checkpoint, args.host, args.port, dtype=args.dtype, replicas=args.replicas,
                  gpus_per_replica=args.gpus_per_replica, max_batch_size=args.max_batch,
                  max_queued_requests=args.max_queued, compile=args.compile)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pid", description="PiD pixel-diffusion decoder")
    commands = parser.add_subparsers(dest="command", required=True)

    decode = commands.add_parser("decode", help="decode a latent file to an image")
    decode.add_argument("--checkpoint", help="model_ema_bf16.pth / .safetensors path, or a released checkpoint name")
    decode.add_argument("--backbone", help="flux, flux2, sd3, sdxl, qwenimage, zimage, dinov2, siglip, ...")
    decode.add_argument("--ckpt-type", help="with --backbone and no --checkpoint: 2k, 2kto4k or 2kto4k_v1pt5")
    decode.add_argument("--config", help="the checkpoint's config, when its weights do not determine it: a JSON file "
                        "of constructor kwargs or a released checkpoint name")
    decode.add_argument("--latent", required=True,
                        help="latent .safetensors or .pt, [B, C, h, w], in PiD's latent space (docs/latents.md)")
    decode.add_argument("--sigma", type=_number(float, 0.0, 1.0), default=0.0,
                        help="noise level left in the latent, in [0, 1] (0 = clean)")
    decode.add_argument("--caption", help="caption text (needs transformers and a local Gemma-2-2B-it)")
    decode.add_argument("--caption-embeds", help="caption embeddings .safetensors/.pt [B, L, 2304]")
    decode.add_argument("--caption-mask", action="store_true", help="hide padded caption tokens (the release does not)")
    decode.add_argument("--size", type=_size, help="output WxH (default: latent size x sr_scale x down factor)")
    decode.add_argument("--seed", type=_number(int, 0, 2**63 - 1),
                        help="noise seed (default: a fresh one, printed so the run can be repeated)")
    decode.add_argument("--steps", type=_number(int, 1), help="sampler steps (default: 4 distilled, 25 cfg)")
    decode.add_argument("--sampler", choices=("distilled", "cfg"), default="distilled",
                        help="distilled 4-step (released students) or cfg (undistilled v1.5 teachers)")
    decode.add_argument("--cfg-scale", type=_number(float), default=5.0, help="cfg sampler guidance (1 = off)")
    decode.add_argument("--negative-embeds", help="cfg sampler: negative-prompt embeddings file")
    decode.add_argument("--tile", type=_parse_tile,
                        help="decode as overlapping tiles: SIZE[:OVERLAP] output pixels, multiples of the latent cell")
    decode.add_argument("--dtype", choices=CLI_DTYPES, help="default: bf16 on a GPU, fp32 on the CPU")
    decode.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    decode.add_argument("--precision", choices=("fp8",),
                        help="fp8: quantize at load by the pid.quant policy (a `pid quantize` export is fp8 anyway)")
    decode.add_argument("--out", required=True, type=_output_path,
                        help="output image (.png, .jpg, .webp); batches get _0, _1, ...")
    decode.add_argument("--parallel", choices=("auto", "ulysses", "ring", "usp"),
                        help="under torchrun: split the image over the ranks (pid.parallel.sequence_parallel); "
                             "with --sampler cfg, the two guidance branches (pid.parallel.cfg_parallel)")
    decode.set_defaults(run=cmd_decode)

    from pid.integrations.export import DEFAULT_MAX_BATCH

    export = commands.add_parser("export", help="export the decoder for other engines (AOTInductor, torch.export)")
    export.add_argument("--checkpoint", required=True, help="model_ema_bf16.pth / .safetensors path, or a released name")
    export.add_argument("--format", choices=("aoti", "program"), default="aoti",
                        help="aoti: .pt2 AOTInductor package of the per-step network; "
                             "program: torch.export .pt2 of the whole decode loop (noise as inputs)")
    export.add_argument("--size", type=_size, required=True, help="output WxH the export is fixed to")
    export.add_argument("--caption-length", type=_number(int, 1), default=300, help="caption tokens (the release sends 300)")
    export.add_argument("--max-batch", type=_number(int, 1), default=DEFAULT_MAX_BATCH, help="largest batch the dynamic batch dimension admits")
    export.add_argument("--dtype", choices=CLI_DTYPES, default="bf16")
    export.add_argument("--device", help="device to compile for (default: cuda when available)")
    export.add_argument("--out", required=True, help="output .pt2")
    export.set_defaults(run=cmd_export)

    info = commands.add_parser("info", help="versions, GPU, and which accelerated paths are usable")
    info.set_defaults(run=cmd_info)

    demo = commands.add_parser("demo", help="run the full decode on seeded random weights and time each stage")
    demo.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, choices=sorted(RELEASED_CHECKPOINTS),
                      metavar="NAME", help=f"architecture to build (default {DEFAULT_CHECKPOINT})")
    demo.add_argument("--size", type=_number(int, 1), help="output size (default: 256 on CPU, 2048 on a GPU)")
    demo.add_argument("--device", help="default: cuda when available")
    demo.add_argument("--seed", type=_number(int, 0, 2**63 - 1), default=0)
    demo.add_argument("--out", default="out/demo.png", type=_output_path)
    demo.set_defaults(run=cmd_demo)

    serve = commands.add_parser("serve", help="decode over HTTP with Ray Serve (extra: serve; see README)")
    serve.add_argument("--checkpoint", required=True, help="checkpoint every replica loads")
    serve.add_argument("--dtype", choices=("bf16", "fp32", "fp16"), default="bf16")
    serve.add_argument("--replicas", type=int, default=1, help="replicas (one per GPU)")
    serve.add_argument("--gpus-per-replica", type=int, help="default 1 with a GPU, 0 (CPU) without")
    serve.add_argument("--max-batch", type=int, default=4, help="largest batch of one output-size bucket")
    serve.add_argument("--max-queued", type=int, default=64, help="requests waiting beyond this get 503")
    serve.add_argument("--compile", action="store_true", help="pid.compile every replica's decoder")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(run=cmd_serve)

    quantize = commands.add_parser("quantize", help="write an fp8 (e4m3) export of a checkpoint")
    quantize.add_argument("--checkpoint", required=True, help="model_ema_bf16.pth / .safetensors path or a released name")
    quantize.add_argument("--out", required=True, help="output .safetensors (e4m3 weights, scales, config, layout)")
    quantize.add_argument("--policy", help="JSON policy file whose rules go before the defaults (pid.quant.policy)")
    quantize.set_defaults(run=cmd_quantize)

    from pid.bench.decode import add_arguments

    bench = commands.add_parser("bench", help="time every decode path (eager, compiled, graphs, official) end to end; "
                                 "--predict GPU: roofline floors instead")
    add_arguments(bench)
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.raw_argv = argv
    try:
        return args.run(args)
    except (CliError, *USER_ERRORS) as error:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        message = " ".join(str(message).split())  # one line, whatever the exception held
        print(f"pid {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
