"""Roofline floors of the PiD decode, op by op, on a named GPU: `pid bench --predict GPU`.

For every op of `pid.bench.flops.forward_ops` (the fused seams of `pid.seams` and the
plain GEMMs and convs), the floor of one call is max(FLOPs / tensor rate, bytes / memory
bandwidth); the decode floor is the sum over every call of a `steps`-step decode. The
FLOPs are `pid.bench.flops`'s, so the total equals `flops.decode_flops`. What the model
assumes:
- bytes are the fewest one call can move: each weight read once per call (whatever the
  batch), each activation read once and written once at the op's boundary; nothing stays
  in cache between ops, and the element-wise work the network does outside the seams
  (SiLU, casts, the noise draw, the LQ adapter's GroupNorms) is taken as fused into its
  neighbours, so it moves nothing;
- work is counted as our decoder runs it (`pid.Decoder`): LQ adapter and caption projection
  once per decode, the timestep embedding and every patch block's adaLN in one call for
  all steps (its weights read once), the rest once per step, the last block's discarded
  text branch not at all, the noise of the re-noising step read by every step but the last;
- activations are bf16 (the model dtype) in both precisions, the sampler's images float32;
  under fp8 the layers `pid.quant.policy` (default policy) puts in fp8 read 1-byte weights
  and run at the fp8 rate (attention: the fp8/int8 QK^T and PV of its recipe), "fp8_weight"
  layers read 1-byte weights at the bf16 rate, every other op stays bf16; the per-token
  quantization of fp8 activations moves nothing (on a GPU `pid.quant.switch` keeps attention
  in bf16 for now: pass a policy with its rules to predict that);
- rates are dense tensor-core peaks (no sparsity), bandwidth the memory's peak: no op reaches
  either, so a measured time is always above its floor. Ops without FLOPs are memory-bound.
These are floors derived from datasheets (or from ceilings a device run measured), never
measurements.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from pid.bench.flops import DISCARDED_TERMS, STEP_INVARIANT_TERMS, forward_ops
from pid.configs import resolve_config

# Computed once per decode for all steps (`Decoder.sample` batches the timestep conditioning).
BATCHED_OVER_STEPS_TERMS = ("timestep_and_adaln",)
# Ops whose layer the fp8 policy decides; the other seams read raw weights and have no fp8 variant.
POLICY_OPS = ("gemm", "conv", "swiglu", "attention")
PRECISIONS = ("bf16", "fp8")
BYTES = {"bf16": 2, "fp8": 1, "float32": 4}
LABELLED = 8  # ops named in the chart's legend, by floor


@dataclass(frozen=True)
class Ceilings:
    """Peak rates of one GPU: dense tensor TFLOP/s in bf16 and fp8 (None: unknown), memory GB/s."""

    name: str
    bf16_tflops: float
    fp8_tflops: Optional[float]
    bandwidth_gbps: float
    source: str

    def rate(self, precision: str) -> float:
        if precision != "fp8":
            return self.bf16_tflops
        if self.fp8_tflops is None:
            raise ValueError(f"the ceilings of {self.name} ({self.source}) have no fp8 matmul rate; "
                             f"predict --precision bf16 or give ceilings with one (a device run's suite.json)")
        return self.fp8_tflops


# Datasheet numbers, dense (the datasheets print most rates with 2:4 sparsity, twice these).
# GeForce cards: the rates with FP32 accumulate, as our kernels accumulate.
GPUS: dict[str, Ceilings] = {
    # NVIDIA H100 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h100), SXM: BF16 1,979 and
    # FP8 3,958 TFLOPS "shown with sparsity, 1/2 lower without", 3.35 TB/s HBM3. Checked against the
    # datasheet's table as quoted by archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html and the
    # dense 989.4 / 1978.9 of glennklockwood.com/garden/processors/h100.
    "H100": Ceilings("H100 SXM", 1979 / 2, 3958 / 2, 3350, "NVIDIA H100 datasheet (SXM), dense = sparse / 2"),
    # NVIDIA H200 Tensor Core GPU page (nvidia.com/en-us/data-center/h200), SXM: the H100's compute
    # (BF16 1,979, FP8 3,958 TFLOPS with sparsity) and 4.8 TB/s HBM3e; checked as quoted by
    # morphllm.com/nvidia-h200 ("per NVIDIA's H200 spec page") and lzwjava.github.io/nvidia-h200-gpu-specs-en.
    "H200": Ceilings("H200 SXM", 1979 / 2, 3958 / 2, 4800, "NVIDIA H200 spec page (SXM), dense = sparse / 2"),
    # NVIDIA HGX B200 (1,000 W) per GPU: dense BF16 2,250, FP8 4,500 TFLOPS, 8 TB/s HBM3e
    # (glennklockwood.com/garden/processors/B200, HGX table from NVIDIA's Blackwell datasheet;
    # docs.vultr.com/inference-cookbook/cuda/getting-started/hardware-overview: 8.0 TB/s, FP8 ~4.5 PF).
    # verda.com/blog/gb300-nvl72-architecture lists 7.7 TB/s: the higher figure keeps the floor a floor.
    "B200": Ceilings("B200 (HGX, 1000 W)", 2250, 4500, 8000, "NVIDIA HGX B200 datasheet figures, per GPU, dense"),
    # NVIDIA GB200 NVL72 (nvidia.com/en-us/data-center/gb200-nvl72): 360 PFLOPS FP16/BF16 and 720 PFLOPS FP8
    # with sparsity and 576 TB/s HBM3e for 72 GPUs: per GPU dense 2,500 / 5,000 TFLOPS, 8 TB/s
    # (rack FP8 720 PF: aiwiki.ai/wiki/nvidia_gb200_nvl72; per GPU dense 2,500 / 5,000: glennklockwood.com
    # B200 page, GB200 at 1,200 W). verda.com's table gives GB200 2.25 / 4.5 PF: not the NVL72 rack figures.
    "GB200": Ceilings("GB200 (NVL72, per GPU)", 2500, 5000, 8000, "NVIDIA GB200 NVL72 rack figures / 72, dense"),
    # NVIDIA Ada GPU Architecture whitepaper (RTX 4090): BF16 tensor with FP32 accumulate 165.2 dense
    # (330.3 sparse), FP8 with FP32 accumulate 330.3 dense, 1,008 GB/s GDDR6X; checked as quoted by
    # hmc-tech.com (RTX 4090 full specs: FP16-32 165.2, FP8-32 330.3) and waredb.com (BF16 165.15,
    # FP8 330.30, 1008 GB/s).
    "RTX4090": Ceilings("GeForce RTX 4090", 165.2, 330.3, 1008, "NVIDIA Ada whitepaper, FP32 accumulate, dense"),
    # GeForce RTX 5090: 1,792 GB/s GDDR7 (verified: spheron.network/blog/nvidia-rtx-5090-specs, Linux Format
    # 05/2025 review). Tensor rates NOT VERIFIED: the sources found give only 838 TFLOPS FP16 and 1,676 FP8
    # (sparse, FP16 accumulate); the FP32-accumulate rates here assume half of those dense figures
    # (209.5 / 419), as on the RTX 4090, not checked against the RTX Blackwell whitepaper.
    "RTX5090": Ceilings("GeForce RTX 5090", 209.5, 419.0, 1792,
                        "bandwidth: NVIDIA spec; tensor rates UNVERIFIED (assumed FP16-accumulate / 2)"),
}


def _key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name).upper()


def gpu(name: str) -> Ceilings:
    """The datasheet ceilings of a GPU named like the GPUS keys (case, spaces, dashes ignored)."""
    ceilings = GPUS.get(_key(name))
    if ceilings is None:
        raise ValueError(f"unknown GPU {name!r}; known GPUs: {', '.join(GPUS)}")
    return ceilings


def detect(device_name: str) -> Optional[Ceilings]:
    """The datasheet ceilings of the GPU torch.cuda.get_device_name() calls `device_name`, or None
    (a card not in GPUS, such as an H100 PCIe, whose rates differ from the SXM part's)."""
    key = _key(device_name)
    if "PCIE" in key or "NVL" in key.replace("NVL72", ""):
        return None
    for name in sorted(GPUS, key=len, reverse=True):  # GB200 before B200
        if name in key:
            return GPUS[name]
    return None


def from_measured(measured: Mapping[str, Any], source: str) -> Ceilings:
    """Ceilings from `pid.bench.measure.measure_ceilings`'s keys (copy_gbps counts read + write bytes)."""
    fp8 = measured.get("matmul_fp8_tflops")
    return Ceilings("measured", float(measured["matmul_bf16_tflops"]), float(fp8) if fp8 not in (None, "") else None,
                    float(measured["copy_gbps"]), source)


def read_ceilings(path: str | Path) -> Ceilings:
    """Measured ceilings of a device run: its suite.json or environment.json (bf16, fp8, copy),
    or its ops.csv (bf16 and copy, the columns of every timed row)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ceilings file not found: {path}")
    if path.suffix == ".csv":
        with path.open(newline="") as file:
            for row in csv.DictReader(file):
                if row.get("copy_gbps") and row.get("matmul_bf16_tflops"):
                    return from_measured(row, f"{path.name}: measured in the run")
        raise ValueError(f"{path} has no row with copy_gbps and matmul_bf16_tflops (an ops.csv of device_check.sh)")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"ceilings file {path} is neither a CSV nor valid JSON ({error})") from None
    measured = (data.get("environment", data) if isinstance(data, dict) else {}).get("ceilings")
    if not isinstance(measured, dict) or not {"copy_gbps", "matmul_bf16_tflops"} <= set(measured):
        raise ValueError(f"{path} holds no ceilings (expected a device run's suite.json or environment.json)")
    return from_measured(measured, f"{path.name}: measured in the run")


def floor_seconds(flops: float, moved_bytes: float, ceilings: Ceilings, precision: str = "bf16") -> tuple[float, str]:
    """(floor in seconds, "compute" or "memory") of one call: max(flops / rate, bytes / bandwidth)."""
    compute = flops / (ceilings.rate(precision) * 1e12) if flops else 0.0
    memory = moved_bytes / (ceilings.bandwidth_gbps * 1e9)
    return (compute, "compute") if compute > memory else (memory, "memory")


@dataclass
class OpRow:
    """The calls of one op on one layer pattern in a decode (blocks folded: `layer` has * for the index)."""

    op: str
    layer: str
    precision: str
    calls: int = 0
    flops: float = 0.0
    bytes: float = 0.0
    floor_s: float = 0.0
    bound: str = ""

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")


@dataclass
class Roofline:
    config: str
    image_hw: tuple[int, int]
    batch: int
    precision: str
    steps: int
    caption_tokens: int
    ceilings: Ceilings
    rows: list

    @property
    def flops(self) -> float:
        return sum(row.flops for row in self.rows)

    @property
    def bytes(self) -> float:
        return sum(row.bytes for row in self.rows)

    @property
    def floor_s(self) -> float:
        return sum(row.floor_s for row in self.rows)


def _op_precision(op, precision: str, policy) -> str:
    if precision == "bf16" or op.op not in POLICY_OPS:
        return "bf16"
    return policy.decide(op.layer).precision


def decode_roofline(config: str | Mapping[str, Any], image_hw: tuple[int, int], ceilings: Ceilings,
                    precision: str = "bf16", batch: int = 1, caption_tokens: int = 300, steps: int = 4,
                    policy=None) -> Roofline:
    """The floor of every op of a `steps`-step decode, grouped by (op, layer pattern, precision),
    largest floor first. policy: a `pid.quant.policy.Policy` for fp8 (default: its defaults)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    if precision == "fp8" and policy is None:
        from pid.quant.policy import Policy

        policy = Policy()
    rows: dict[tuple, OpRow] = {}
    for op in forward_ops(config, image_hw, caption_tokens, batch):
        if op.term in DISCARDED_TERMS:
            continue
        chosen = _op_precision(op, precision, policy)
        weight_bytes = op.weights * (BYTES["fp8"] if chosen in ("fp8", "fp8_weight") else BYTES["bf16"])
        rate_precision = "fp8" if chosen == "fp8" else "bf16"
        moved = weight_bytes + op.activations * BYTES["bf16"] + op.float32 * BYTES["float32"]
        if op.term in STEP_INVARIANT_TERMS:
            calls = [(op.flops, moved)]
        elif op.term in BATCHED_OVER_STEPS_TERMS:  # one call with `steps` times the rows, the weights once
            calls = [(steps * op.flops, weight_bytes + steps * (moved - weight_bytes))]
        else:  # unembed_update also reads the noise (an image: half its float32) on all steps but the last
            noise = op.float32 // 2 * BYTES["float32"] if op.op == "unembed_update" else 0
            calls = [(op.flops, moved + noise * (step < steps - 1)) for step in range(steps)]
        layer = re.sub(r"\.\d+", ".*", op.layer)
        row = rows.setdefault((op.op, layer, chosen), OpRow(op.op, layer, chosen))
        for flops, call_bytes in calls:
            seconds, bound = floor_seconds(flops, call_bytes, ceilings, rate_precision)
            row.calls += 1
            row.flops += flops
            row.bytes += call_bytes
            row.floor_s += seconds
            row.bound = bound if row.bound in ("", bound) else "mixed"
    name = config if isinstance(config, str) else "config dict"
    return Roofline(name, tuple(image_hw), batch, precision, steps, caption_tokens, ceilings,
                    sorted(rows.values(), key=lambda row: -row.floor_s))


def format_table(roofline: Roofline) -> str:
    c = roofline.ceilings
    fp8 = f", fp8 {c.fp8_tflops:.0f}" if c.fp8_tflops else ""
    height, width = roofline.image_hw
    lines = [f"roofline of the {roofline.steps}-step decode: {roofline.config} at {width}x{height}, batch "
             f"{roofline.batch}, {roofline.caption_tokens} caption tokens, {roofline.precision}",
             f"on {c.name}: bf16 {c.bf16_tflops:.0f}{fp8} TFLOP/s dense, {c.bandwidth_gbps:.0f} GB/s ({c.source})",
             "",
             f"{'op':<33}{'layer':<40}{'prec':<11}{'calls':>6}{'GFLOP':>10}{'MB':>10}{'FLOP/B':>8}"
             f"{'floor ms':>10}  {'bound':<8}{'share':>6}"]
    total = roofline.floor_s
    for row in roofline.rows:
        intensity = f"{row.intensity:.0f}" if row.flops else "-"
        lines.append(f"{row.op:<33}{row.layer:<40}{row.precision:<11}{row.calls:>6}{row.flops / 1e9:>10.1f}"
                     f"{row.bytes / 1e6:>10.1f}{intensity:>8}{row.floor_s * 1e3:>10.3f}  {row.bound:<8}"
                     f"{row.floor_s / total:>6.1%}")
    compute = sum(row.flops / (c.rate('fp8' if row.precision == 'fp8' else 'bf16') * 1e12) for row in roofline.rows)
    lines += ["",
              f"decode floor: {total * 1e3:.2f} ms ({roofline.flops / 1e12:.1f} TFLOP = pid.bench.flops.decode_flops, "
              f"{roofline.bytes / 1e9:.2f} GB; compute alone {compute * 1e3:.2f} ms, memory alone "
              f"{roofline.bytes / (c.bandwidth_gbps * 1e9) * 1e3:.2f} ms)",
              "FLOORS from peak rates (datasheet or measured ceilings), not measurements: see pid.bench.roofline."]
    return "\n".join(lines)


def to_json(roofline: Roofline) -> dict:
    return {"config": roofline.config, "image_hw": list(roofline.image_hw), "batch": roofline.batch,
            "precision": roofline.precision, "steps": roofline.steps, "caption_tokens": roofline.caption_tokens,
            "ceilings": asdict(roofline.ceilings),
            "ops": [{**asdict(row), "floor_ms": row.floor_s * 1e3} for row in roofline.rows],
            "decode": {"flops": roofline.flops, "bytes": roofline.bytes, "floor_ms": roofline.floor_s * 1e3},
            "note": "floors from peak rates, not measurements (pid.bench.roofline)"}


def plot(roofline: Roofline, path: str | Path) -> None:
    """Roofline chart: arithmetic intensity vs attainable TFLOP/s, the roofs and each op with FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = roofline.ceilings
    figure, axes = plt.subplots(figsize=(9, 6))
    intensities = [1e-1, 1e4]
    for precision in ("bf16", "fp8") if roofline.precision == "fp8" else ("bf16",):
        rate = c.rate(precision)
        ridge = rate * 1e3 / c.bandwidth_gbps
        axes.plot([intensities[0], ridge, intensities[1]], [intensities[0] * c.bandwidth_gbps / 1e3, rate, rate],
                  label=f"{precision} roof ({rate:.0f} TFLOP/s, {c.bandwidth_gbps:.0f} GB/s)")
    for rank, row in enumerate(roofline.rows):  # largest floor first: the LABELLED first go in the legend
        if row.flops:
            label = f"{row.op} {row.layer} ({row.floor_s / roofline.floor_s:.0%})" if rank < LABELLED else None
            axes.scatter(row.intensity, row.flops / row.floor_s / 1e12, s=14, label=label)
    axes.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte)", ylabel="attainable TFLOP/s",
             title=f"{roofline.config} {roofline.image_hw[1]}x{roofline.image_hw[0]} b{roofline.batch} "
                   f"{roofline.precision} on {c.name}: floors, not measurements")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def report_from_args(args) -> str:
    """`pid bench --predict GPU`: the table (or JSON) of every size and batch asked; --plot draws the first."""
    ceilings = read_ceilings(args.ceilings) if args.ceilings else gpu(args.predict)
    config = args.config or args.checkpoint
    resolve_config(config)  # a bad name fails here, with the known ones
    cases = [(size, batch) for size in (args.sizes or [2048]) for batch in (args.batches or [1])]
    rooflines = [decode_roofline(config, (size, size), ceilings, args.precision or "bf16", batch,
                                 args.caption_tokens or 300, args.steps) for size, batch in cases]
    if args.plot:
        try:
            plot(rooflines[0], args.plot)
        except ImportError:
            raise ValueError("--plot needs matplotlib (pip install 'pid-kernels[plot]')") from None
    if args.json:
        return json.dumps([to_json(roofline) for roofline in rooflines], indent=1)
    return "\n\n".join(format_table(roofline) for roofline in rooflines) + (f"\nwrote {args.plot}" if args.plot else "")


__all__ = ["Ceilings", "GPUS", "OpRow", "Roofline", "decode_roofline", "detect", "floor_seconds",
           "format_table", "from_measured", "gpu", "plot", "read_ceilings", "report_from_args", "to_json"]
