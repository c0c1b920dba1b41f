"""Sequence-parallel decoding on CPU gloo ranks (spawned, bounded in time) against one process.

Every case goes through `pid.parallel.sequence_parallel` on the tiny golden architectures
(MM-DiT heads 3 or 2, PiT heads 2, so 2, 3 and 4 ranks take every path: pure Ulysses, pure
ring, Ulysses for one attention and ring for the other, and the USP 2 x 2 mesh). Where every
attention is Ulysses the image must equal one process bit for bit in fp32; with any ring,
within 1e-6 relative L2. The golden sampler cases also meet the golden tolerance.
"""

from __future__ import annotations

import json

import pytest
import torch

import pid
import pid.parallel
from conftest import GOLDEN_DIR, assert_golden_close, require_golden
from spawn_ranks import run_on_ranks
from tiny import TINY_V15, tiny_inputs, tiny_net

RING_REL_L2 = 1e-6
TIMEOUT_S = 180


def _triton_ops():
    import pid_kernels

    # The fp8 ops serve quantized networks only (tests/pid/quant/test_fused_fp8.py); these are not.
    return sorted(name for name, op in pid_kernels.REGISTRY.items()
                  if op.backend == "triton" and not name.endswith("_fp8"))


TRITON_OPS = _triton_ops()


def _golden_inputs(case: str):
    from safetensors.torch import load_file

    meta = json.loads((GOLDEN_DIR / f"{case}.json").read_text())
    tensors = load_file(str(GOLDEN_DIR / f"{case}.safetensors"))
    net = pid.load({k: v for k, v in tensors.items() if k.startswith("net.")}, config=meta["config"])
    prefix = "sampler." if "sampler.noise" in tensors else ""
    inputs = tuple(tensors[f"{prefix}inputs.{name}"] for name in ("lq_latent", "degrade_sigma", "y"))
    noise = [tensors["sampler.noise"]] + [tensors[f"sampler.eps.{i}"] for i in range(3)] if prefix else None
    return net, inputs, noise, tensors.get("sampler.x0")


def _decode_cases(cases, group, steps=4):
    """Each (case, mode) decoded over `group`; its first rank also decodes in one process.
    Returns {(case, mode): (parallel, single, golden x0 or None, describe())} there, else {}."""
    import torch.distributed as dist

    results = {}
    for case, mode in cases:
        mask = None
        if case.startswith("tiny:"):
            net = tiny_net(json.loads(case[5:]))
            inputs, noise, golden_x0 = tiny_inputs(net), None, None
        elif case == MASKED_CASE:  # caption mask: padded tokens hidden in the text block
            net = tiny_net()
            inputs, noise, golden_x0 = tiny_inputs(net), None, None
            mask = torch.ones(2, inputs[2].shape[1], dtype=torch.bool)
            mask[0, -3:] = False
        else:
            net, inputs, noise, golden_x0 = _golden_inputs(case)
        golden_x0 = golden_x0 if steps == 4 else None
        options = dict(caption_mask=mask, noise=noise, seed=5, steps=steps, clamp=False)
        parallel = pid.parallel.sequence_parallel(pid.Decoder(net), group=group, mode=mode)
        image = parallel.decode(*inputs, **options)
        if dist.get_rank() == 0:
            single = pid.Decoder(net).decode(*inputs, **options)
            results[(case, mode)] = (image, single, golden_x0, parallel.describe())
    return results


def _cfg_case(group):
    """The CFG sampler with one guidance branch per rank vs the release's two calls in one process."""
    import torch.distributed as dist

    from pid.sampling.cfg import sample_cfg

    net = tiny_net(TINY_V15)
    latent, sigma, captions = tiny_inputs(net)
    uncond = torch.randn(1, *captions.shape[1:], generator=torch.Generator().manual_seed(2))

    def run(model, batch_cfg):
        return sample_cfg(model, latent, sigma, captions, uncond, steps=3, cfg_scale=4.0, clamp=False,
                          generator=torch.Generator().manual_seed(0), image_size=(64, 96), batch_cfg=batch_cfg)

    image = run(pid.parallel.cfg_parallel(net, group), batch_cfg=True)
    return (image, run(net, batch_cfg=False)) if dist.get_rank() == 0 else None


def _every_case():
    """On 4 spawned ranks: the cases of each group size on the first `world` ranks, then the
    fused-op case on 2 ranks (last: it switches the Triton ops on for the process)."""
    import torch.distributed as dist
    import pid_kernels

    rank = dist.get_rank()
    groups = {world: dist.new_group(list(range(world))) for world in sorted(WORLD_CASES)}
    results = {}
    for world, (cases, _) in sorted(WORLD_CASES.items()):
        if rank < world:
            results[world] = _decode_cases(cases, groups[world])
    if rank < 2:
        results["cfg"] = _cfg_case(groups[2])
        pid_kernels.enable(TRITON_OPS, strict=True)
        results["fused"] = _decode_cases([FUSED_CASE], groups[2], steps=1)
        results["calls"] = {name: dict(pid_kernels.CALLS[name]) for name in TRITON_OPS}
    return results


def _rel_l2(ours, ref):
    return ((ours.double() - ref.double()).norm() / ref.double().norm()).item()


def _check(results, bitwise_cases):
    for key, (image, single, golden_x0, layout) in results.items():
        if key in bitwise_cases:
            assert torch.equal(image, single), f"{key} ({layout}) differs from one process"
        else:
            assert _rel_l2(image, single) <= RING_REL_L2, (key, layout, _rel_l2(image, single))
        if golden_x0 is not None:
            assert_golden_close(image, golden_x0, f"{key} sampler x0")


MASKED_CASE = "tiny with a caption mask"
# MM-DiT/PiT heads: v1_tiny and v15_tiny 3/2, sr8_tiny and v1_flux2_tiny 2/2.
WORLD_CASES = {
    2: (
        [("v1_tiny", "auto"), ("v15_tiny", "auto"), ("sr8_tiny", "ulysses"), ("v1_flux2_tiny", "auto"),
         ("v15_tiny", "ring"), (MASKED_CASE, "auto")],
        [("sr8_tiny", "ulysses"), ("v1_flux2_tiny", "auto")],
    ),
    3: (
        [("v1_tiny", "auto"), ("v15_tiny", "auto"), ("sr8_tiny", "auto"), (MASKED_CASE, "auto")],
        [],
    ),
    4: (
        [("v1_tiny", "auto"), ("v15_tiny", "usp"), ("sr8_tiny", "usp"),
         ('tiny:{"num_groups": 4, "hidden_size": 48, "pixel_num_groups": 4}', "ulysses")],
        [('tiny:{"num_groups": 4, "hidden_size": 48, "pixel_num_groups": 4}', "ulysses")],
    ),
}


FUSED_CASE = ("sr8_tiny", "ulysses")


@pytest.fixture(scope="module")
def rank_results():
    """Every case, run once on one group of 4 spawned gloo ranks (rank 0's results)."""
    require_golden()
    return run_on_ranks(4, _every_case, timeout=TIMEOUT_S)[0]


@pytest.mark.parametrize("world", sorted(WORLD_CASES))
def test_parallel_decode_matches_one_process(rank_results, world):
    cases, bitwise = WORLD_CASES[world]
    assert set(rank_results[world]) == set(cases)
    _check(rank_results[world], set(bitwise))


def test_fused_ops_stay_the_local_attention_on_two_ranks(rank_results):
    """Under the Triton interpreter, Ulysses hands each rank's heads to the fused attention."""
    for name, calls in rank_results["calls"].items():
        assert calls["fused"] > 0 and calls["fallback"] == 0, (name, calls)
    _check(rank_results["fused"], bitwise_cases=set())


def test_cfg_parallel_equals_the_two_branch_calls_of_one_process(rank_results):
    image, single = rank_results["cfg"]
    assert torch.equal(image, single)
