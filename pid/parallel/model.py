"""Roofline model of a sequence-parallel decode step: compute vs communication per rank.

`python -m pid.parallel.model` prints the table of docs/parallel.md. Nothing here is
measured: FLOPs come from `pid.bench.flops`, speeds from datasheets, and the two
efficiencies are stated assumptions (change them with --mfu / --link-efficiency).

Per network call (one sampler step) on P ranks with n = Li / P image tokens each, b bytes
per element (bf16: 2), width W of an attention (MM-DiT: hidden, PiT: pixel_attn_hidden_size):
- Ulysses sends (P-1)/P of its qkv (3 n W b) before and of its output (n W b) after every
  attention, plus the text output's heads (Lt W b (P-1)/P) in the MM-DiT blocks; it sits on
  the critical path (nothing to overlap it with).
- Ring sends its K/V block (2 n W b) P-1 times per attention; it overlaps with the attention
  of the block at hand, so only the excess over that attention's compute is exposed.
- Compute: every image-token term splits P ways; the text stream's GEMMs and the adaLN
  vectors are replicated. The final all-gather (once per decode) and the LQ adapter (once
  per decode, replicated) are left out of the per-step time.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pid.bench.flops import DISCARDED_TERMS, STEP_INVARIANT_TERMS, forward_flops
from pid.configs import resolve_config

ARCHITECTURE = "PiD_res2k_sr4x_official_flux_distill_4step"
# NVIDIA H100 SXM5 datasheet: 989 TFLOP/s dense BF16 tensor core; NVLink 4 900 GB/s total
# (450 GB/s each way); one ConnectX-7 NDR InfiniBand port per GPU, 400 Gb/s = 50 GB/s each way.
H100_BF16_FLOPS = 989e12
LINKS = {"NVLink (900 GB/s)": 450e9, "IB 400 Gb/s": 50e9}
# Assumptions, not measurements: the fraction of peak a step's GEMMs/attention reach, the
# fraction of link bandwidth a collective reaches, and a fixed cost per collective launch.
ASSUMED_MFU = 0.5
ASSUMED_LINK_EFFICIENCY = 0.8
COLLECTIVE_LATENCY_S = {"NVLink (900 GB/s)": 15e-6, "IB 400 Gb/s": 30e-6}
REPLICATED_TERMS = ("patch_blocks_text_gemms", "timestep_and_adaln")
BYTES_PER_ELEMENT = 2


@dataclass(frozen=True)
class StepEstimate:
    side: int
    ranks: int
    link: str
    mode: str
    flops_per_rank: float
    compute_s: float
    bytes_per_rank: float
    exposed_comm_s: float
    single_s: float

    @property
    def step_s(self) -> float:
        return self.compute_s + self.exposed_comm_s

    @property
    def speedup(self) -> float:
        return self.single_s / self.step_s


def per_step_terms(config, side: int, caption_tokens: int = 300) -> dict[str, float]:
    terms = forward_flops(config, (side, side), caption_tokens)
    skipped = set(STEP_INVARIANT_TERMS) | set(DISCARDED_TERMS) | {"total"}
    return {name: value for name, value in terms.items() if name not in skipped}


def estimate(
    side: int,
    ranks: int,
    link: str,
    config=ARCHITECTURE,
    caption_tokens: int = 300,
    mfu: float = ASSUMED_MFU,
    link_efficiency: float = ASSUMED_LINK_EFFICIENCY,
    mode: str = "auto",
) -> StepEstimate:
    """One step of a `side`² decode on `ranks` H100s joined by `link` (a key of LINKS), each
    attention by "ulysses" or "ring". "auto" picks as `sequence_parallel` does: Ulysses over
    NVLink (the released head counts, 24 and 16, both divide 2, 4 and 8), ring over InfiniBand
    (one GPU per node)."""
    cfg = resolve_config(config)
    terms = per_step_terms(cfg, side, caption_tokens)
    flop_rate = H100_BF16_FLOPS * mfu
    replicated = sum(terms[name] for name in REPLICATED_TERMS)
    split = sum(terms.values()) - replicated
    single_s = (split + replicated) / flop_rate
    flops_per_rank = split / ranks + replicated
    compute_s = flops_per_rank / flop_rate
    tokens = (side // cfg["patch_size"]) ** 2 / ranks
    text = min(caption_tokens, cfg["txt_max_length"])
    widths = [cfg["hidden_size"]] * cfg["patch_depth"] + [cfg["pixel_attn_hidden_size"]] * cfg["pixel_depth"]
    attention_terms = {cfg["hidden_size"]: "patch_blocks_attention", cfg["pixel_attn_hidden_size"]: "pixel_blocks_attention"}
    depths = {cfg["hidden_size"]: cfg["patch_depth"], cfg["pixel_attn_hidden_size"]: cfg["pixel_depth"]}
    bandwidth = LINKS[link] * link_efficiency
    latency = COLLECTIVE_LATENCY_S[link]
    if mode == "auto":
        mode = "ulysses" if link.startswith("NVLink") else "ring"
    sent = exposed = 0.0
    if ranks > 1:
        for index, width in enumerate(widths):
            with_text = index < cfg["patch_depth"]
            if mode == "ulysses":
                volume = (4 * tokens * width + (text * width if with_text else 0)) * (ranks - 1) / ranks
                volume *= BYTES_PER_ELEMENT
                sent += volume
                exposed += volume / bandwidth + (3 if with_text else 2) * latency
            else:
                volume = 2 * tokens * width * BYTES_PER_ELEMENT * (ranks - 1)
                sent += volume
                attention_s = terms[attention_terms[width]] / depths[width] / ranks / flop_rate
                exposed += max(0.0, volume / bandwidth + (ranks - 1) * latency - attention_s)
    return StepEstimate(side, ranks, link, mode, flops_per_rank, compute_s, sent, exposed, single_s)


def table(sides=(2048, 4096, 8192), ranks=(2, 4, 8), **options) -> str:
    """The markdown table of docs/parallel.md."""
    rows = [
        "| image | GPUs | link | mode | TFLOP/rank/step | compute ms | GB sent/rank/step | exposed comm ms | step ms | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        single = estimate(side, 1, next(iter(LINKS)), **options)
        rows.append(f"| {side}² | 1 | - | - | {single.flops_per_rank / 1e12:.1f} | {single.compute_s * 1e3:.1f} | 0 | 0 | "
                    f"{single.step_s * 1e3:.1f} | 1.00 |")
        for link, mode in (("NVLink (900 GB/s)", "ulysses"), ("IB 400 Gb/s", "ring"), ("IB 400 Gb/s", "ulysses")):
            for count in ranks:
                e = estimate(side, count, link, mode=mode, **options)
                rows.append(
                    f"| {side}² | {count} | {link} | {e.mode} | {e.flops_per_rank / 1e12:.1f} | {e.compute_s * 1e3:.1f} | "
                    f"{e.bytes_per_rank / 1e9:.2f} | {e.exposed_comm_s * 1e3:.2f} | {e.step_s * 1e3:.1f} | {e.speedup:.2f} |"
                )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pid.parallel.model", description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=ASSUMED_MFU, help="fraction of the BF16 peak reached")
    parser.add_argument("--link-efficiency", type=float, default=ASSUMED_LINK_EFFICIENCY)
    args = parser.parse_args(argv)
    print(table(mfu=args.mfu, link_efficiency=args.link_efficiency))


if __name__ == "__main__":
    main()
