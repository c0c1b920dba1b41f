"""The `pid` command: decode, quantize, info, demo, bench."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from pid.configs import RELEASED_CHECKPOINTS

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def _parse_size(text: str) -> tuple[int, int]:
    """'WxH' or 'N' -> (H, W)."""
    try:
        if "x" in text.lower():
            width, height = (int(v) for v in text.lower().split("x"))
        else:
            width = height = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH or N, got {text!r}") from None
    return height, width


def _dtype(name: str) -> torch.dtype:
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def load_latent(path: Path) -> torch.Tensor:
    """A latent [B, C, h, w] (or [C, h, w]) from .safetensors (key 'latent' or the only tensor) or .pt."""
    if not path.is_file():
        raise CliError(f"latent file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "latent" in tensors:
            latent = tensors["latent"]
        elif len(tensors) == 1:
            latent = next(iter(tensors.values()))
        else:
            raise CliError(f"{path} holds {sorted(tensors)}; name the latent tensor 'latent'")
    elif path.suffix in (".pt", ".pth"):
        latent = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(latent, dict):
            if "latent" not in latent:
                raise CliError(f"{path} holds a dict without a 'latent' entry")
            latent = latent["latent"]
    else:
        raise CliError(f"latent file must be .safetensors or .pt, got {path.name}")
    if not isinstance(latent, torch.Tensor) or latent.dim() not in (3, 4):
        raise CliError(f"{path}: expected a latent tensor [B, C, h, w] or [C, h, w]")
    return latent.unsqueeze(0) if latent.dim() == 3 else latent


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
        embeds, _ = captions.load_caption_embeds(args.negative_embeds, embed_dim=embed_dim)
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


def cmd_decode(args) -> int:
    import pid
    from pid.latents.backbones import check_latent_for, get_backbone

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    latent = load_latent(Path(args.latent))
    net = pid.load(_resolve_checkpoint(args), dtype=_dtype(args.dtype), device=device, precision=args.precision)
    if args.backbone:
        spec = get_backbone(args.backbone)
        if spec.lq_latent_channels != net.latent_channels:
            raise CliError(
                f"backbone {spec.name} gives {spec.lq_latent_channels}-channel latents but this checkpoint "
                f"takes {net.latent_channels}"
            )
        check_latent_for(spec, latent, args.size)
    embeds, mask = _captions(args, latent.shape[0], device, net.config["txt_embed_dim"])
    start = time.perf_counter()
    if args.sampler == "cfg":
        from pid.sampling.cfg import DEFAULT_STEPS, sample_cfg

        negative = _negative_captions(args, latent.shape[0], device, net.config["txt_embed_dim"])
        generator = torch.Generator(device=device).manual_seed(args.seed)
        images = sample_cfg(
            net, latent.to(device), args.sigma, embeds.to(device), None if negative is None else negative.to(device),
            steps=args.steps or DEFAULT_STEPS, cfg_scale=args.cfg_scale, generator=generator,
            image_size=args.size or net.image_size_for_latent(tuple(latent.shape[-2:])),
        )
    else:
        images = pid.Decoder(net).decode(
            latent,
            args.sigma,
            embeds,
            caption_mask=mask if args.caption_mask else None,
            image_size=args.size,
            seed=args.seed,
            steps=args.steps or 4,
            progress=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pictures = pid.to_pil(images)
    paths = [out] if len(pictures) == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix}") for i in range(len(pictures))]
    for picture, path in zip(pictures, paths):
        picture.save(path)
    print(f"decoded {tuple(latent.shape)} -> {images.shape[-2]}x{images.shape[-1]} in {time.perf_counter() - start:.2f} s")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def cmd_info(args) -> int:
    from pid.cli.info import report

    print(report())
    return 0


def cmd_demo(args) -> int:
    from pid.cli import demo

    print(demo.main(Path(args.out), args.checkpoint, args.size, args.device, args.seed))
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

    bench.run(bench.settings_from_args(args, " ".join(["pid", *args.raw_argv])))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pid", description="PiD pixel-diffusion decoder")
    commands = parser.add_subparsers(dest="command", required=True)

    decode = commands.add_parser("decode", help="decode a latent file to an image")
    decode.add_argument("--checkpoint", help="model_ema_bf16.pth / .safetensors path, or a released checkpoint name")
    decode.add_argument("--backbone", help="flux, flux2, sd3, sdxl, qwenimage, zimage, dinov2, siglip, ...")
    decode.add_argument("--ckpt-type", help="with --backbone and no --checkpoint: 2k, 2kto4k or 2kto4k_v1pt5")
    decode.add_argument("--latent", required=True,
                        help="latent .safetensors or .pt, [B, C, h, w], in PiD's latent space (docs/latents.md)")
    decode.add_argument("--sigma", type=float, default=0.0, help="noise level left in the latent (0 = clean)")
    decode.add_argument("--caption", help="caption text (needs transformers and a local Gemma-2-2B-it)")
    decode.add_argument("--caption-embeds", help="caption embeddings .safetensors/.pt [B, L, 2304]")
    decode.add_argument("--caption-mask", action="store_true", help="hide padded caption tokens (the release does not)")
    decode.add_argument("--size", type=_parse_size, help="output WxH (default: latent size x sr_scale x down factor)")
    decode.add_argument("--seed", type=int, default=0)
    decode.add_argument("--steps", type=int, help="sampler steps (default: 4 distilled, 25 cfg)")
    decode.add_argument("--sampler", choices=("distilled", "cfg"), default="distilled",
                        help="distilled 4-step (released students) or cfg (undistilled v1.5 teachers)")
    decode.add_argument("--cfg-scale", type=float, default=5.0, help="cfg sampler guidance (1 = off)")
    decode.add_argument("--negative-embeds", help="cfg sampler: negative-prompt embeddings file")
    decode.add_argument("--dtype", choices=("bf16", "fp32", "fp16"), default="bf16")
    decode.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    decode.add_argument("--precision", choices=("fp8",),
                        help="fp8: quantize at load by the pid.quant policy (a `pid quantize` export is fp8 anyway)")
    decode.add_argument("--out", required=True, help="output image (.png, .jpg); batches get _0, _1, ...")
    decode.set_defaults(run=cmd_decode)

    info = commands.add_parser("info", help="versions, GPU, and which accelerated paths are usable")
    info.set_defaults(run=cmd_info)

    demo = commands.add_parser("demo", help="run the full decode on seeded random weights and time each stage")
    demo.add_argument("--checkpoint", default="PiD_res2k_sr4x_official_flux_distill_4step",
                      choices=sorted(RELEASED_CHECKPOINTS), help="architecture to build")
    demo.add_argument("--size", type=int, help="output size (default: 256 on CPU, 2048 on a GPU)")
    demo.add_argument("--device", help="default: cuda when available")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="out/demo.png")
    demo.set_defaults(run=cmd_demo)

    quantize = commands.add_parser("quantize", help="write an fp8 (e4m3) export of a checkpoint")
    quantize.add_argument("--checkpoint", required=True, help="model_ema_bf16.pth / .safetensors path or a released name")
    quantize.add_argument("--out", required=True, help="output .safetensors (e4m3 weights, scales, config, layout)")
    quantize.add_argument("--policy", help="JSON policy file whose rules go before the defaults (pid.quant.policy)")
    quantize.set_defaults(run=cmd_quantize)

    from pid.bench.decode import add_arguments

    bench = commands.add_parser("bench", help="time every decode path (eager, compiled, graphs, official) end to end")
    add_arguments(bench)
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.raw_argv = argv
    try:
        return args.run(args)
    except (CliError, ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"pid {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
