"""Times NVIDIA's official PiD network in its own process, for `pid bench` paths (e) and (f);
with --memory, traces its peak memory on the meta device instead (`pid bench --memory`).

A standalone script, never imported by our package: the official code's package
is also named `pid`, so this process drops our checkout from sys.path, puts the
official checkout first, and checks that `import pid` found the official one.

    python official_runner.py --official-path DIR --job job.json

job.json (written by `pid.bench`) names a .safetensors of weights under the
release's `net.` keys, a .safetensors of inputs (`<case>.latent`,
`<case>.captions`, `<case>.sigma`), the network's constructor kwargs, the cases,
the paths ("eager", "compile"), timing counts, the seed and the t schedule. The
results go to the job's `results` JSON and the last decoded images to its
`images` .safetensors (`<case>.<path>`).

The decode loop follows the documented semantics of the release's distilled
sampler (shared/golden/README.md): noise and each fresh eps drawn in that order
from one generator on the device seeded with the seed; v = net(x, t * 1000, y,
lq_latent=..., degrade_sigma=...); x0 = x - t v in float64; re-noise to the next t;
clamp the last x0 to [-1, 1]. As the release runs it: float32 weights, the loop
under CUDA bfloat16 autocast. On a CPU (for testing this script) it runs in
float32 without autocast, and "compile" is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

STAGES = ("adapter", "patch blocks", "pixel blocks", "network")


def _isolate_from_our_checkout(official: Path) -> None:
    """Drop every sys.path entry that would import our `pid` (or this script's folder)."""
    here = Path(__file__).resolve().parent

    def ours(entry: str) -> bool:
        # Our source checkouts only: an installed copy in site-packages sits behind the
        # official checkout inserted first, and dropping site-packages would lose torch.
        folder = Path(entry or os.getcwd()).resolve()
        return folder == here or (
            (folder / "pid" / "bench" / "official_runner.py").exists() and (folder / "pyproject.toml").exists()
        )

    sys.path[:] = [entry for entry in sys.path if not ours(entry)]
    sys.path.insert(0, str(official))


def _import_official(official: Path):
    _isolate_from_our_checkout(official)
    import pid  # the official package

    found = Path(pid.__file__).resolve()
    if official.resolve() not in found.parents:
        raise RuntimeError(f"`import pid` found {found}, not the official checkout at {official}")
    from pid._src.networks.pid_net import PidNet

    return PidNet


def _build(PidNet, config: dict, weights_path: str, device):
    """The official network in float32 on `device` with the given weights (strict load)."""
    import torch
    from safetensors.torch import load_file

    state = {key[len("net."):]: value.float() for key, value in load_file(weights_path).items() if key.startswith("net.")}
    try:
        with torch.device("meta"):
            net = PidNet(**config)
        net.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in list(net.parameters()) + list(net.buffers())):
            raise RuntimeError("tensors left on the meta device")
    except (RuntimeError, NotImplementedError):  # construction that needs real tensors
        net = PidNet(**config)
        net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def _decoder(net, t_list, steps: int, seed: int, device, autocast: bool, amp=None):
    """The release's 4-step loop; `amp` replaces torch.autocast (the memory trace's emulation)."""
    import torch

    t_fracs = torch.tensor(t_list, dtype=torch.float32)
    amp = amp or torch.autocast

    @torch.no_grad()
    def decode(latent, captions, sigma):
        batch = latent.shape[0]
        height, width = decode.image_hw
        # The meta device has no generator; its noise has no values anyway.
        generator = None if device.type == "meta" else torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(batch, 3, height, width, generator=generator, device=device, dtype=torch.float32)
        for step in range(steps):
            t_now, t_next = t_fracs[step], t_fracs[step + 1]
            t_scaled = (t_now * 1000.0).expand(batch).to(device)
            with amp("cuda", dtype=torch.bfloat16, enabled=autocast):
                velocity = decode.net(x, t_scaled, captions, lq_latent=latent, degrade_sigma=sigma)
            x0 = (x.double() - t_now.double().to(device) * velocity.double()).float()
            if t_next > 0:
                eps = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
                x = (1.0 - t_next.to(device)) * x0 + t_next.to(device) * eps
            else:
                x = x0
        return x.clamp(-1, 1)

    decode.net = net
    decode.image_hw = None
    return decode


def _load_ours(name: str):
    """pid/bench/<name>.py of our checkout, loaded by path: here `import pid` is the official
    package, and these modules import nothing of ours but torch."""
    spec = importlib.util.spec_from_file_location(f"_pid_bench_{name}", Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _profile_stages(profiling, decode, net, args, device, eager: bool) -> dict:
    """Per-stage time of one decode (device time of the kernels launched in each range)."""
    ranges = profiling.Ranges()
    if eager:
        ranges.wrap(net.lq_proj, "forward", "adapter")
        ranges.wrap(net.lq_proj, "gate", "patch blocks")
        for block in net.patch_blocks:
            ranges.wrap(block, "forward", "patch blocks")
        for block in net.pixel_blocks:
            ranges.wrap(block, "forward", "pixel blocks")
    ranges.wrap(decode, "net", "network")
    totals = profiling.range_totals(lambda: decode(*args), device, ranges, set(STAGES))
    stages = {"total": totals.get("decode")}
    if eager:
        stages["adapter"] = totals.get("adapter")
        stages["patch_blocks"] = totals.get("patch blocks")
        stages["pixel_blocks"] = totals.get("pixel blocks")
    if totals.get("decode") is not None and totals.get("network") is not None:
        stages["sampler"] = totals["decode"] - totals["network"]
    return stages


def run(job: dict, official: Path) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    PidNet = _import_official(official)
    timing, profiling = _load_ours("timing"), _load_ours("profiling")
    device = torch.device(job["device"])
    on_gpu = device.type == "cuda"
    if on_gpu:  # the release's loader turns TF32 on; bf16 autocast does not use it for matmuls anyway
        torch.backends.cuda.matmul.allow_tf32 = job.get("allow_tf32", True)
        torch.backends.cudnn.allow_tf32 = job.get("allow_tf32", True)
    net = _build(PidNet, job["config"], job["weights"], device)
    inputs = load_file(job["inputs"])
    decode = _decoder(net, job["t_list"], job["steps"], job["seed"], device, autocast=on_gpu)
    compiled = None
    results, images = {"cases": {}}, {}
    for case in job["cases"]:
        name = case["name"]
        args = tuple(inputs[f"{name}.{key}"].to(device) for key in ("latent", "captions", "sigma"))
        decode.image_hw = tuple(case["image_hw"])
        case_results = results["cases"].setdefault(name, {})
        for path in job["paths"]:
            row = {}
            try:
                if path == "compile":
                    if not on_gpu:
                        raise RuntimeError("skipped: torch.compile of the official network is timed on a GPU only")
                    compiled = compiled or torch.compile(net, dynamic=False, **job["compile_options"])
                    decode.net = compiled
                else:
                    decode.net = net
                if on_gpu:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                timed = timing.time_calls(lambda: decode(*args), device, job["warmup"], job["runs"])
                row.update({k: v for k, v in timed.items() if k != "output"})
                images[f"{name}.{path}"] = timed["output"].float().cpu().contiguous()
                if on_gpu:
                    row["peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
                    row["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
                    row["nvml_used_bytes"], row["nvml_scope"] = profiling.nvml_used_bytes(device)
                if job.get("profile", True):
                    row["stages_ms"] = _profile_stages(profiling, decode, net, args, device, eager=path == "eager")
            except Exception as error:  # one failing path (OOM, a compile error) must not lose the others
                row["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                if not str(error).startswith("skipped"):
                    traceback.print_exc()
            finally:
                decode.net = net
            case_results[path] = row
            print(f"official {path} {name}: " + (row.get("error") or f"{row['median_ms']:.1f} ms"), flush=True)
    save_file(images, job["images"])
    results["environment"] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "autocast": "cuda bfloat16" if on_gpu else "none (cpu, float32)",
        "official_module": str(Path(sys.modules["pid"].__file__).resolve().parent),
    }
    return results


def trace_memory(job: dict, official: Path) -> dict:
    """Peak memory of the official 4-step loop, device-free: the network built on the meta device
    in float32, each step under bfloat16 autocast (emulated by pid/bench/memory.py's tracker),
    attention as a fused kernel. job: config, cases (name, image_hw, batch), caption_tokens,
    steps, t_list."""
    import torch

    PidNet = _import_official(official)
    memory = _load_ours("memory")
    with torch.device("meta"):
        net = PidNet(**job["config"]).eval()
    weights = memory.storage_bytes(list(net.parameters()) + list(net.buffers()))
    autocast = memory.Autocast(list(net.parameters()))
    device = torch.device("meta")
    decode = _decoder(net, job["t_list"], job["steps"], 0, device, autocast=True, amp=autocast)
    results = {"weights_bytes": weights, "cases": {}}
    for case in job["cases"]:
        decode.image_hw = tuple(case["image_hw"])
        batch, (height, width) = case["batch"], case["image_hw"]
        latent_shape = case["latent_shape"]
        with memory.LiveBytes() as tracker, memory.fused_attention(autocast):
            latent = torch.randn(batch, *latent_shape, device=device)
            captions = torch.randn(batch, job["caption_tokens"], job["config"]["txt_embed_dim"], device=device)
            sigma = torch.zeros(batch, device=device)
            images = decode(latent, captions, sigma)
            del images, latent, captions, sigma
        results["cases"][case["name"]] = {
            "activation_peak_bytes": tracker.peak,
            "at_peak": [vars(allocation) for allocation in tracker.at_peak(12)],
        }
        print(f"official memory {case['name']}: activation peak {tracker.peak / 2**30:.2f} GiB", flush=True)
    results["environment"] = {"torch": torch.__version__, "autocast": "cuda bfloat16 (emulated on meta)"}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-path", required=True, help="a checkout of nv-tlabs/PiD")
    parser.add_argument("--job", required=True, help="job JSON written by pid.bench")
    parser.add_argument("--memory", action="store_true", help="trace peak memory on the meta device instead of timing")
    args = parser.parse_args(argv)
    job = json.loads(Path(args.job).read_text())
    results = (trace_memory if args.memory else run)(job, Path(args.official_path))
    Path(job["results"]).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
