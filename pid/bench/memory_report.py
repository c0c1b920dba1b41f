"""`pid bench --memory`: device-free peak memory of a whole decode, ours and the official loop.

Ours: the released architecture built on the meta device in the decode dtype, and
`Decoder.sample` (the loop a GPU decode runs, after the input checks that read values) plus
the final clamp, traced by `pid.bench.memory.LiveBytes` with attention as a fused kernel.
The official network: its own process (`official_runner.py --memory`), float32 weights,
each step under (emulated) CUDA bfloat16 autocast, as the release runs it.

Reported: weights, the activation peak (everything the decode allocates, cached tables
included), total = weights + activation peak, and the largest live tensors at the peak with
the op and the Python line that made them. `--memory-table FILE` writes the 2048² / 4096²
comparison as markdown (benchmarks/MEMORY.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

from pid.bench.memory import GIB, LiveBytes, fused_attention, storage_bytes
from pid.configs import CAPTION_TOKENS, resolve_config

TABLE_SIZES = (2048, 4096)
TOP_TENSORS = 8
DEFAULT_OFFICIAL = Path(__file__).resolve().parents[2] / "third_party" / "PiD"
# The targets of issue 11 (bf16, batch 1, 300 caption tokens): total peak ceilings in GiB and
# the largest allowed fraction of the official loop's peak.
TARGET_TOTAL_GIB = {2048: 3.5, 4096: 5.5}
TARGET_FRACTION_OF_OFFICIAL = 0.35


def _one(values, default: int, flag: str) -> int:
    if not values:
        return default
    if len(values) > 1 or values[0] <= 0:
        raise ValueError(f"--memory traces one decode: give one positive {flag}, got {','.join(map(str, values))}")
    return values[0]


@torch.no_grad()
def trace_ours(config: dict, size: int, batch: int = 1, caption_tokens: int = CAPTION_TOKENS, steps: int = 4,
               dtype: torch.dtype = torch.bfloat16, top: int = TOP_TENSORS) -> dict:
    """Peak memory of our eager decode at size² on the meta device (see the module docstring)."""
    from pid.model.network import build_model
    from pid.sampling.distilled import DecodeInputs, Decoder, distilled_t_list

    meta = torch.device("meta")
    with meta:
        net = build_model(config).to(dtype).eval()
    weights = storage_bytes(list(net.parameters()) + list(net.buffers()))
    decoder = Decoder(net)
    image_hw = (size, size)
    with LiveBytes() as tracker, fused_attention():
        # What Decoder.prepare_inputs hands the loop: float32 inputs on the device.
        inputs = DecodeInputs(
            latent=torch.randn(batch, *net.expected_latent_shape(image_hw), device=meta),
            sigma=torch.zeros(batch, device=meta),
            captions=torch.randn(batch, caption_tokens, net.config["txt_embed_dim"], device=meta),
            caption_mask=None,
            image_hw=image_hw,
        )
        images = decoder.sample(inputs, distilled_t_list(steps), lambda _: torch.randn(inputs.noise_shape, device=meta))
        images = images.clamp(-1, 1)
        del images, inputs
    return _summary(weights, tracker.peak, [vars(a) for a in tracker.at_peak(top)], allocations=tracker.allocations)


def _summary(weights: int, activation_peak: int, at_peak: list, **extra) -> dict:
    return {
        "weights_gib": weights / GIB,
        "activation_peak_gib": activation_peak / GIB,
        "total_peak_gib": (weights + activation_peak) / GIB,
        "at_peak": at_peak,
        **extra,
    }


def trace_official(official: Optional[Path], config: dict, sizes, batch: int = 1, caption_tokens: int = CAPTION_TOKENS,
                   steps: int = 4, python: str = sys.executable) -> dict:
    """{size: summary} of the official loop, or {"error": why} when it cannot run."""
    if official is None or not (Path(official) / "pid" / "_src" / "networks" / "pid_net.py").is_file():
        return {"error": f"official source absent ({official or DEFAULT_OFFICIAL}: see scripts/prepare_device_carry.sh)"}
    from pid.model.network import build_model
    from pid.sampling.distilled import distilled_t_list

    with torch.device("meta"):
        geometry = build_model(config).geometry
    runner = Path(__file__).resolve().parent / "official_runner.py"
    with tempfile.TemporaryDirectory(prefix="pid_memory_") as tmp:
        job = {
            "config": config,
            "cases": [{"name": str(size), "image_hw": [size, size], "batch": batch,
                       "latent_shape": list(geometry.latent_shape((size, size)))} for size in sizes],
            "caption_tokens": caption_tokens,
            "steps": steps,
            "t_list": distilled_t_list(steps).tolist(),
            "results": str(Path(tmp) / "results.json"),
        }
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        status = subprocess.run([python, str(runner), "--memory", "--official-path", str(official),
                                 "--job", str(Path(tmp) / "job.json")]).returncode
        if status != 0:
            return {"error": f"official memory trace failed (exit status {status}; its output is above)"}
        results = json.loads((Path(tmp) / "results.json").read_text())
    return {
        int(name): _summary(results["weights_bytes"], case["activation_peak_bytes"], case["at_peak"])
        for name, case in results["cases"].items()
    }


def format_report(name: str, size: int, report: dict) -> str:
    lines = [
        f"{name} at {size}²: weights {report['weights_gib']:.2f} GiB, activation peak "
        f"{report['activation_peak_gib']:.2f} GiB, total peak {report['total_peak_gib']:.2f} GiB",
        "largest live tensors at the peak:",
    ]
    for allocation in report["at_peak"]:
        shape = "x".join(map(str, allocation["shape"]))
        lines.append(f"  {allocation['nbytes'] / 2**20:8.1f} MiB  [{shape}] {allocation['dtype']}  "
                     f"{allocation['op']}  {allocation['frame']}")
    return "\n".join(lines)


def _verdict(size: int, ours: dict, official) -> str:
    limit = TARGET_TOTAL_GIB.get(size)
    parts = []
    if limit is not None:
        total = ours["total_peak_gib"]
        parts.append(f"≤ {limit} GiB: " + ("met" if total <= limit else f"missed by {total - limit:.2f} GiB"))
    if isinstance(official, dict) and "total_peak_gib" in official:
        ratio = ours["total_peak_gib"] / official["total_peak_gib"]
        parts.append(f"{ratio:.2f}x official (≤ {TARGET_FRACTION_OF_OFFICIAL}x: "
                     + ("met" if ratio <= TARGET_FRACTION_OF_OFFICIAL else "missed") + ")")
    return "; ".join(parts)


def memory_table(checkpoint: str, ours: dict, official: dict, command: str, batch: int, caption_tokens: int,
                 steps: int, dtype: torch.dtype) -> str:
    """The markdown of benchmarks/MEMORY.md."""
    dtype_name = str(dtype).replace("torch.", "")
    error = official.get("error")
    rows = []
    for size, report in ours.items():
        theirs = official.get(size)
        their_cells = (f"{theirs['weights_gib']:.2f} | {theirs['activation_peak_gib']:.2f} | {theirs['total_peak_gib']:.2f}"
                       if theirs else " | ".join(["absent"] * 3))
        rows.append(f"| {size}² | {report['weights_gib']:.2f} | {report['activation_peak_gib']:.2f} | "
                    f"{report['total_peak_gib']:.2f} | {their_cells} | {_verdict(size, report, theirs)} |")
    lines = [
        "# Peak device memory of a decode",
        "",
        f"Generated by `{command}`; do not edit by hand. Device-free: traced on the meta device by",
        "`pid.bench.memory.LiveBytes` (tensor storages from allocation to release, attention as a fused",
        "kernel with no N×N buffer), not measured on a GPU; a GPU adds the CUDA context, allocator",
        "rounding and library workspaces.",
        "",
        f"{checkpoint}, batch {batch}, {caption_tokens} caption tokens, {steps} steps. Ours: {dtype_name} weights,",
        "the eager reference decoder (`Decoder.sample` + clamp). Official: its network and 4-step loop as",
        "the release runs them, float32 weights with each step under CUDA bfloat16 autocast (emulated",
        "by the tracker: matmul-class inputs cast to bfloat16, weight casts cached for the step).",
        "",
        "| size | ours weights GiB | ours activations GiB | **ours total GiB** | official weights GiB | "
        "official activations GiB | **official total GiB** | targets |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    if error:
        lines += ["", f"Official column: {error}."]
    for size, report in ours.items():
        lines += ["", f"Largest live tensors at our {size}² peak:", "", "```", format_report("ours", size, report), "```"]
        theirs = official.get(size)
        if theirs:
            lines += ["", f"At the official {size}² peak:", "", "```", format_report("official", size, theirs), "```"]
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    """The memory flags of `pid bench` (the rest of its flags belong to the timing benchmark; --sizes
    (--size), --batches (--batch), --config, --json, --steps, --caption-tokens, --dtype, --official-path
    and --official-python are shared: one size and one batch, default 2048 and 1)."""
    group = parser.add_argument_group("memory (--memory): device-free peak memory, no GPU needed")
    group.add_argument("--memory", action="store_true", help="trace the peak memory of one decode on the meta device")
    group.add_argument("--memory-table", type=Path, metavar="FILE",
                       help=f"write the markdown table of ours vs the official loop at {' and '.join(map(str, TABLE_SIZES))}²")


def run(args, command: str) -> int:
    from pid.sampling.checks import as_dtype

    checkpoint = args.config or args.checkpoint
    config = resolve_config(checkpoint)
    dtype = as_dtype(args.dtype or "bf16")
    tokens = args.caption_tokens or CAPTION_TOKENS
    size, batch = _one(args.sizes, 2048, "--size"), _one(args.batches, 1, "--batch")
    official_path = args.official_path or (DEFAULT_OFFICIAL if DEFAULT_OFFICIAL.is_dir() else None)
    if args.memory_table:
        ours = {size: trace_ours(config, size, batch, tokens, args.steps, dtype) for size in TABLE_SIZES}
        official = trace_official(official_path, config, TABLE_SIZES, batch, tokens, args.steps, args.official_python)
        args.memory_table.write_text(memory_table(checkpoint, ours, official, command, batch, tokens, args.steps, dtype))
        print(f"wrote {args.memory_table}")
        return 0
    report = trace_ours(config, size, batch, tokens, args.steps, dtype)
    if args.json:
        print(json.dumps({"config": checkpoint, "size": size, "batch": batch, "caption_tokens": tokens,
                          "steps": args.steps, "dtype": str(dtype).replace("torch.", ""), **report}))
    else:
        print(format_report(f"{checkpoint} ({str(dtype).replace('torch.', '')}, batch {batch})", size, report))
    return 0
