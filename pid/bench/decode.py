"""`pid bench`: end-to-end decode benchmark of every path, on one device in one run.

Paths (one CSV row per path, image size and batch):
  (a) a_eager            our reference `pid.Decoder`, eager;
  (b) b_torch_compile    the same under torch.compile (mode --compile-mode, default
                         max-autotune) of the per-step network (`PiDNet.pixel_features`);
  (c) c_pid_compile      `pid.compile(decoder, CompileConfig(cuda_graphs=False))`;
  (d) d_pid_graphs       `pid.compile(decoder)` with whole-decode CUDA graphs;
  (e) e_official_eager   NVIDIA's official PidNet, eager, fp32 weights under CUDA
                         bf16 autocast (needs --official-path);
  (f) f_official_compile the official network under torch.compile.
(e) and (f) run in a separate process (`pid/bench/official_runner.py`), because the
official package is also named `pid`; weights and inputs go there through a
temporary .safetensors file, results come back as JSON.

Every path decodes the same bf16-representable random weights (`pid.model.random_weights.randomize_`
of the released v1 Flux architecture), latents and captions, with the same seed, so
the noise is the same too. Reported per row: median (and min/max) of >= 10 CUDA-event
timed decodes after warm-up, peak memory (torch allocator, and NVML when importable),
achieved TFLOP/s from `pid.bench.flops.decode_flops` and its share of a bf16 matmul rate
measured in the same run, PSNR against our decoder run in float32 with TF32 off, and
a per-stage breakdown of one profiled decode (torch.profiler ranges wrapped around
the model's calls from outside).

`--predict GPU` times nothing: it prints the roofline floor of every op and of the decode
(`pid.bench.roofline`) and exits.

Without a GPU it runs a reduced configuration (a narrow network at 128², few
caption tokens, 1-2 timed runs of paths (a) and (c)) and says that its timings say
nothing about GPU performance; `--quick` makes that run short enough for the tests.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from pid.bench.flops import decode_flops
from pid.bench.measure import GIB, measure_ceilings, profile_stages, psnr
from pid.bench.profiling import nvml_used_bytes
from pid.bench.report import append_csv, plot, summary
from pid.bench.timing import time_calls
from pid.configs import CAPTION_TOKENS, DEFAULT_CHECKPOINT, RELEASED_CHECKPOINTS, released_config
from pid.model.network import PiDNet, build_model
from pid.model.random_weights import randomize_
from pid.sampling.checks import as_dtype
from pid.sampling.distilled import Decoder, distilled_t_list
from pid.sampling.geometry import geometry_from_config

PATHS = {
    "a": ("a_eager", "our reference Decoder, eager"),
    "b": ("b_torch_compile", "reference + torch.compile of the per-step network"),
    "c": ("c_pid_compile", "pid.compile without CUDA graphs"),
    "d": ("d_pid_graphs", "pid.compile with whole-decode CUDA graphs"),
    "e": ("e_official_eager", "official PidNet, eager (bf16 autocast)"),
    "f": ("f_official_compile", "official PidNet + torch.compile"),
}
OFFICIAL_PATHS = {"e": "eager", "f": "compile"}
OFFICIAL_DTYPE = "float32 weights, bfloat16 autocast"  # as the release runs
GPU_SIZES = (1024, 2048, 4096)  # output sizes: latents of 256², 512², 1024² images (sr 4x, 8x VAE)
GPU_BATCHES = (1, 4)
MIN_GPU_RUNS = 10
# The reduced network of a CPU run: the v1 structure (gates every 2 blocks, 2 pixel blocks,
# per-token-per-dim gates, patch 16, sr 4x on an 8x 16-channel latent), narrow and shallow.
CPU_ARCH = "v1-narrow (CPU run)"
CPU_OVERRIDES = {
    "hidden_size": 96, "num_groups": 2, "patch_depth": 4, "pixel_hidden_size": 8, "pixel_attn_hidden_size": 64,
    "pixel_num_groups": 2, "txt_embed_dim": 64, "txt_max_length": 16, "lq_hidden_dim": 32, "lq_num_res_blocks": 1,
}
CPU_SIZES = (128,)
CPU_CAPTION_TOKENS = 16
CPU_NOTICE = (
    "CPU RUN: no CUDA GPU is visible, so this ran a reduced network ({arch}) at {sizes} on the CPU.\n"
    "Its timings measure this CPU on a toy network and say NOTHING about GPU performance."
)


@dataclass(frozen=True)
class BenchCase:
    image_size: int
    batch: int

    @property
    def name(self) -> str:
        return f"{self.image_size}px_b{self.batch}"


@dataclass
class BenchSettings:
    config: dict = field(default_factory=dict)
    arch: str = ""
    cases: list = field(default_factory=list)
    paths: str = "abcd"
    steps: int = 4
    caption_tokens: int = CAPTION_TOKENS
    runs: int = MIN_GPU_RUNS
    warmup: int = 2
    dtype: torch.dtype = torch.bfloat16
    # "fp8": paths a-d decode the network quantized by pid.quant (impl names get "_fp8").
    precision: Optional[str] = None
    device: torch.device = torch.device("cpu")
    seed: int = 0
    compile_mode: str = "max-autotune"
    compile_backend: str = "inductor"
    disabled_ops: tuple = ()  # fused ops (c) and (d) leave off, e.g. those that failed a GPU check
    official_path: Optional[Path] = None
    official_python: str = sys.executable
    reference: bool = True
    profile: bool = True
    out_dir: Path = Path("benchmarks/results")
    tmp_dir: Optional[str] = None
    command: str = ""

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"


# ---- weights, inputs, paths --------------------------------------------------------------


@torch.no_grad()
def build_weights(config: dict, seed: int) -> PiDNet:
    """A float32 CPU PiDNet with seeded random weights rounded to bf16-representable values,
    so the float32 reference, our bf16 paths and the official fp32-under-autocast paths hold
    the same numbers (as the released bf16 checkpoints do)."""
    with torch.device("meta"):
        net = build_model(config)
    net = randomize_(net.to_empty(device="cpu"), seed).eval()
    for param in net.parameters():
        param.copy_(param.to(torch.bfloat16))
    return net


def make_inputs(net: PiDNet, case: BenchCase, caption_tokens: int, seed: int) -> dict[str, torch.Tensor]:
    """Latent, captions (bf16-representable, as the release feeds them) and sigma 0 (a clean latent)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + case.image_size * 17 + case.batch)
    latent_shape = net.expected_latent_shape((case.image_size, case.image_size))
    latent = torch.randn(case.batch, *latent_shape, generator=generator).bfloat16().float()
    captions = torch.randn(case.batch, caption_tokens, net.config["txt_embed_dim"], generator=generator)
    return {"latent": latent, "captions": captions.bfloat16().float(), "sigma": torch.zeros(case.batch)}


class PathSkipped(Exception):
    """A path that cannot run here (reason in the message)."""


def _release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextmanager
def our_path(letter: str, net: PiDNet, settings: BenchSettings):
    """(decoder, note) for path a-d on `net`; every change is undone on exit."""
    import pid
    import pid_kernels
    from pid_kernels.runtime import interpreting

    decoder = Decoder(net)
    note = ""
    try:
        if letter == "b":
            net.pixel_features = torch.compile(PiDNet.pixel_features.__get__(net), dynamic=False,
                                               **compile_options(settings))
            note = f"torch.compile(pixel_features, {compile_options(settings)})"
        elif letter in "cd":
            config = pid.CompileConfig(cuda_graphs=False if letter == "c" else None)
            if settings.disabled_ops:
                config.fused_ops = {name: False for name in settings.disabled_ops}
            interpreted = not settings.on_gpu and interpreting()
            if interpreted:  # timing Triton's interpreter would say nothing about anything
                config.fused_ops = {name: False for name, op in pid_kernels.REGISTRY.items() if op.backend == "triton"}
            report = pid.compile(decoder, config).pid_compile_report
            if letter == "d" and "CUDA graphs" not in report.applied:
                raise PathSkipped("skipped: " + "; ".join(report.skipped.get("CUDA graphs", ["CUDA graphs not applied"])))
            note = "applied: " + (", ".join(report.applied) or "nothing")
            if interpreted:
                note += " (Triton ops off: TRITON_INTERPRET=1 on a CPU)"
        yield decoder, note
    finally:
        if letter == "b":
            vars(net).pop("pixel_features", None)
        if letter in "cd":
            pid.revert(decoder)
        if letter in "bcd":
            torch._dynamo.reset()
        decoder.graphs = None
        del decoder
        _release_memory(settings.device)


def compile_options(settings: BenchSettings) -> dict:
    """torch.compile keywords of (b) and (f): a mode only where the backend is inductor."""
    if settings.compile_backend == "inductor":
        return {"mode": settings.compile_mode}
    return {"backend": settings.compile_backend}


def _decode_fn(decoder: Decoder, inputs: dict, settings: BenchSettings) -> Callable[[], torch.Tensor]:
    return lambda: decoder.decode(
        inputs["latent"], inputs["sigma"], inputs["captions"], seed=settings.seed, steps=settings.steps
    )


def run_our_path(letter: str, net: PiDNet, inputs: dict, settings: BenchSettings, reference) -> dict:
    """One row of path a-d: timings, memory, PSNR against `reference`, stages."""
    row: dict = {}
    device = settings.device
    _release_memory(device)
    if settings.on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    with our_path(letter, net, settings) as (decoder, note):
        fn = _decode_fn(decoder, inputs, settings)
        timed = time_calls(fn, device, settings.warmup, settings.runs)
        output = timed.pop("output")
        row.update(_timing_columns(timed), notes=note)
        if settings.on_gpu:
            row["peak_alloc_gib"] = torch.cuda.max_memory_allocated(device) / GIB
            row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
            used, scope = nvml_used_bytes(device)
            if used is not None:
                row["nvml_used_gib"], row["nvml_scope"] = used / GIB, scope
        if reference is not None:
            row["psnr_db"] = psnr(output, reference)
        del output
        if settings.profile:
            row.update({f"stage_{k}_ms": v for k, v in profile_stages(net, fn, device, letter).items()})
    return row


def _timing_columns(timed: dict) -> dict:
    """CSV columns of a `time_calls` result; first_call_s holds compilation and graph capture."""
    times = timed["times_ms"]
    return {
        "runs": len(times),
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "first_call_s": timed["first_s"],
    }


# ---- the official network, in its own process -------------------------------------------


def _official_commit(path: Path) -> str:
    """The checkout's commit: its git HEAD, or the COMMIT file scripts/prepare_device_carry.sh
    writes beside an extracted copy."""
    if (path / "COMMIT").is_file():
        return (path / "COMMIT").read_text().strip()
    try:
        result = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
        return result.stdout.strip() if result.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run_official(net32: PiDNet, case_inputs: dict, settings: BenchSettings, letters: str) -> dict:
    """{(case name, letter): row} for paths (e)/(f), with the decoded images under 'image'."""
    from safetensors.torch import load_file, save_file

    import pid

    official = settings.official_path
    if not (official / "pid" / "_src" / "networks" / "pid_net.py").is_file():
        raise ValueError(f"--official-path {official} is not a checkout of nv-tlabs/PiD (no pid/_src/networks/pid_net.py)")
    runner = Path(__file__).resolve().parent / "official_runner.py"
    with tempfile.TemporaryDirectory(prefix="pid_bench_", dir=settings.tmp_dir) as tmp:
        tmp = Path(tmp)
        pid.save_safetensors(net32, tmp / "weights.safetensors", dtype=torch.bfloat16)
        save_file(
            {f"{case.name}.{key}": value for case, inputs in case_inputs.items() for key, value in inputs.items()},
            str(tmp / "inputs.safetensors"),
        )
        job = {
            "weights": str(tmp / "weights.safetensors"),
            "inputs": str(tmp / "inputs.safetensors"),
            "images": str(tmp / "images.safetensors"),
            "results": str(tmp / "results.json"),
            "config": net32.config,
            "cases": [{"name": case.name, "image_hw": [case.image_size] * 2} for case in case_inputs],
            "paths": [OFFICIAL_PATHS[letter] for letter in letters],
            "steps": settings.steps,
            "t_list": distilled_t_list(settings.steps).tolist(),
            "seed": settings.seed,
            "runs": settings.runs,
            "warmup": settings.warmup,
            "device": str(settings.device),
            "compile_options": compile_options(settings),
            "profile": settings.profile,
        }
        (tmp / "job.json").write_text(json.dumps(job))
        print(f"running the official network in its own process ({runner.name}, checkout {official})", flush=True)
        status = subprocess.run(
            [settings.official_python, str(runner), "--official-path", str(official), "--job", str(tmp / "job.json")]
        ).returncode
        if status != 0 or not (tmp / "results.json").is_file():
            error = f"official runner failed (exit status {status}; its output is above)"
            return {(case.name, letter): {"error": error} for case in case_inputs for letter in letters}
        results = json.loads((tmp / "results.json").read_text())
        images = load_file(str(tmp / "images.safetensors"))
    commit = _official_commit(official)
    rows = {}
    for case in case_inputs:
        for letter in letters:
            path = OFFICIAL_PATHS[letter]
            result = results["cases"].get(case.name, {}).get(path, {"error": "no result"})
            row = {"official_commit": commit, "notes": f"official runner: autocast {results['environment']['autocast']}"}
            if "error" in result:
                row["error"] = result["error"]
            else:
                row.update(_timing_columns(result))
                if "peak_allocated_bytes" in result:
                    row["peak_alloc_gib"] = result["peak_allocated_bytes"] / GIB
                    row["peak_reserved_gib"] = result["peak_reserved_bytes"] / GIB
                if result.get("nvml_used_bytes"):
                    row["nvml_used_gib"], row["nvml_scope"] = result["nvml_used_bytes"] / GIB, result["nvml_scope"]
                row.update({f"stage_{k}_ms": v for k, v in (result.get("stages_ms") or {}).items()})
                row["image"] = images.get(f"{case.name}.{path}")
            rows[(case.name, letter)] = row
    return rows


# ---- the run ------------------------------------------------------------------------------


@torch.no_grad()
def reference_images(net32: PiDNet, case_inputs: dict, settings: BenchSettings, progress) -> dict:
    """Our eager decoder in float32 with TF32 off, per case (on the CPU afterwards)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    references = {}
    try:
        decoder = Decoder(net32)
        for case, inputs in case_inputs.items():
            progress.set_postfix_str(f"fp32 reference {case.name}")
            try:
                references[case] = _decode_fn(decoder, _to_device(inputs, settings.device), settings)().cpu()
            except Exception as error:  # an fp32 reference that does not fit leaves PSNR empty
                progress.write(f"fp32 reference {case.name}: {type(error).__name__}: {str(error)[:200]}")
                references[case] = None
            _release_memory(settings.device)
            progress.update()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return references


def _to_device(inputs: dict, device: torch.device) -> dict:
    return {key: value.to(device) for key, value in inputs.items()}


def run(settings: BenchSettings) -> list[dict]:
    """Run every case and path; returns the CSV rows (also appended to out_dir/decode.csv)."""
    from tqdm.auto import tqdm

    device = settings.device
    if not settings.on_gpu:
        print(CPU_NOTICE.format(arch=settings.arch, sizes=", ".join(f"{c.image_size}²" for c in settings.cases)))
    ours = [letter for letter in settings.paths if letter in "abcd"]
    official = [letter for letter in settings.paths if letter in OFFICIAL_PATHS]
    print(f"building {settings.arch} with seeded random weights", flush=True)
    net = build_weights(settings.config, settings.seed)
    case_inputs = {case: make_inputs(net, case, settings.caption_tokens, settings.seed) for case in settings.cases}
    official_rows = run_official(net, case_inputs, settings, "".join(official)) if official else {}

    total = len(settings.cases) * (len(ours) + (1 if settings.reference else 0))
    out_dir = Path(settings.out_dir)
    rows = []

    def record(row: dict) -> None:  # written at once, so a run cut short keeps what it measured
        rows.append(row)
        append_csv(out_dir / "decode.csv", [row], settings.command)

    with tqdm(total=total, desc="pid bench", unit="task") as progress:
        net = net.to(device)
        references = reference_images(net, case_inputs, settings, progress) if settings.reference else {}
        net = net.to(settings.dtype)
        if settings.precision is not None:
            from pid.quant.switch import quantize_for

            print(quantize_for(net, settings.precision))
        ceilings = measure_ceilings(device)
        matmul_tflops, matmul_probe = ceilings["matmul_bf16_tflops"], "bf16 " + ceilings["probe"]
        for case, cpu_inputs in case_inputs.items():
            inputs = _to_device(cpu_inputs, device)
            reference = references.get(case)
            for letter in ours:
                progress.set_postfix_str(f"{PATHS[letter][0]} {case.name}")
                try:
                    row = run_our_path(letter, net, inputs, settings, reference)
                except PathSkipped as skipped:
                    row = {"error": str(skipped)}
                except Exception as error:  # OOM or a compile failure must not lose the other rows
                    row = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
                    progress.write(f"{PATHS[letter][0]} {case.name}: {row['error']}")
                    _release_memory(device)
                record(_finish_row(row, letter, case, settings, matmul_tflops, matmul_probe))
                progress.update()
            for letter in official:
                row = {"dtype": OFFICIAL_DTYPE if settings.on_gpu else "float32",
                       **official_rows.get((case.name, letter), {"error": "not run"})}
                image = row.pop("image", None)
                if image is not None and reference is not None:
                    row["psnr_db"] = psnr(image, reference)
                record(_finish_row(row, letter, case, settings, matmul_tflops, matmul_probe))
            del inputs
    try:
        plot(out_dir / "decode.csv", out_dir / "decode.png")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'pid-kernels[plot]')")
    print(summary(rows, settings))
    print(f"appended {len(rows)} rows to {out_dir / 'decode.csv'}")
    if not settings.on_gpu:
        print(CPU_NOTICE.format(arch=settings.arch, sizes=", ".join(f"{c.image_size}²" for c in settings.cases)))
    return rows


def _finish_row(row, letter, case, settings, matmul_tflops, matmul_probe) -> dict:
    tflop = decode_flops(settings.config, (case.image_size, case.image_size), settings.caption_tokens, case.batch,
                         settings.steps) / 1e12
    finished = {
        "case": case.name,
        "impl": PATHS[letter][0] + (f"_{settings.precision}" if settings.precision and letter in "abcd" else ""),
        "arch": settings.arch,
        "image_size": case.image_size,
        "latent_size": build_latent_size(settings.config, case.image_size),
        "batch": case.batch,
        "steps": settings.steps,
        "caption_tokens": settings.caption_tokens,
        "dtype": str(settings.dtype).replace("torch.", ""),
        "decode_tflop": tflop,
        "matmul_tflops": matmul_tflops,
        "matmul_probe": matmul_probe,
        "cpu_run": not settings.on_gpu,
        **row,
    }
    if "median_ms" in row:
        finished["ms_per_image"] = row["median_ms"] / case.batch
        finished["tflops"] = tflop / (row["median_ms"] / 1e3)
        finished["pct_of_matmul"] = 100.0 * finished["tflops"] / matmul_tflops
    return finished


def build_latent_size(config: dict, image_size: int) -> str:
    return "x".join(map(str, geometry_from_config(config).latent_shape(image_size)))


# ---- command line -------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, choices=sorted(RELEASED_CHECKPOINTS),
                        metavar="NAME", help=f"released architecture to build with random weights (default {DEFAULT_CHECKPOINT})")
    parser.add_argument("--sizes", type=_int_list, help="output sizes (default: 1024,2048,4096 on a GPU, 128 on CPU)")
    parser.add_argument("--batches", type=_int_list, help="batch sizes (default: 1,4 on a GPU, 1 on CPU)")
    parser.add_argument("--paths", help="letters of the paths to run, e.g. acd (default: abcd, plus ef with "
                        "--official-path; ac on CPU)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--caption-tokens", type=int, help="default: 300 on a GPU, 16 on CPU")
    parser.add_argument("--runs", type=int, help=f"timed decodes per path (default {MIN_GPU_RUNS}; 2 on CPU, 1 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed decodes first (default 2; 1 on CPU, 0 with --quick)")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"),
                        help="weights and activations of paths a-d (default: bf16 on a GPU, fp32 on CPU, as pid demo)")
    parser.add_argument("--precision", choices=("bf16", "fp8"),
                        help="fp8: paths a-d run the network quantized by pid.quant (refused without fp8 tensor cores); "
                             "bf16 (default): as loaded")
    parser.add_argument("--device", help="default: cuda when available")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile-mode", default="max-autotune", help="torch.compile mode of paths (b) and (f)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend of (b) and (f); the CPU dry run of device_check.sh uses aot_eager, "
                             "which traces the same graph without inductor's minutes of CPU code generation")
    parser.add_argument("--disable-ops", default="", help="comma-separated fused ops (c) and (d) leave off")
    parser.add_argument("--official-path", type=Path, help="a checkout of nv-tlabs/PiD (keep it in third_party/)")
    parser.add_argument("--official-python", default=sys.executable, help="interpreter for the official runner")
    parser.add_argument("--no-reference", action="store_true", help="skip the fp32 reference (no PSNR)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled decode (no stage columns)")
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"), help="decode.csv / decode.png go here")
    parser.add_argument("--tmp-dir", help="where the official runner's weights file is written (default: system temp)")
    roofline = parser.add_argument_group("roofline (pid.bench.roofline): floors, nothing is timed")
    roofline.add_argument("--predict", metavar="GPU", help="print each op's floor and the decode floor on GPU "
                          "(H100, H200, B200, GB200, RTX4090, RTX5090: datasheet rates) for --sizes (default 2048), "
                          "--batches (default 1), --precision, --steps, and exit")
    roofline.add_argument("--config", help="with --predict or --memory: the architecture, a name of pid.configs (v1, v1.5, an "
                          "architecture or checkpoint name) or a JSON file (default: --checkpoint)")
    roofline.add_argument("--ceilings", type=Path, help="with --predict: measured ceilings of a device run "
                          "(its suite.json, environment.json or ops.csv) instead of GPU's datasheet")
    roofline.add_argument("--json", action="store_true", help="with --predict or --memory: JSON instead of the table")
    roofline.add_argument("--plot", type=Path, help="with --predict: write a roofline chart (PNG; needs matplotlib)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: the reduced CPU network at 128², batch 1, no warm-up, 1 timed run of (a) and (c)")
    from pid.bench import memory_report

    memory_report.add_arguments(parser)


def settings_from_args(args, command: str) -> BenchSettings:
    given = [flag for flag in ("config", "ceilings", "json", "plot") if getattr(args, flag)]
    if given:
        raise ValueError(f"{', '.join('--' + flag for flag in given)}: only with --predict GPU (the roofline)")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    dtype = as_dtype(dtype_name)
    reduced = args.quick or device.type != "cuda"
    if reduced:
        config = {**released_config(args.checkpoint), **CPU_OVERRIDES}
        arch = CPU_ARCH if device.type != "cuda" else "v1-narrow (smoke run)"
    else:
        config, arch = released_config(args.checkpoint), args.checkpoint
    paths = args.paths or ("ac" if reduced else "abcd" + ("ef" if args.official_path else ""))
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise ValueError(f"unknown paths {unknown}; valid: {', '.join(f'{k} ({v[0]})' for k, v in PATHS.items())}")
    if set(paths) & set(OFFICIAL_PATHS) and not args.official_path:
        raise ValueError("paths e and f need --official-path DIR (a checkout of nv-tlabs/PiD)")
    runs = args.runs or (1 if args.quick else 2 if reduced else MIN_GPU_RUNS)
    if device.type == "cuda" and not args.quick and runs < MIN_GPU_RUNS:
        raise ValueError(f"GPU timings are medians of at least {MIN_GPU_RUNS} runs (got --runs {runs})")
    sizes = args.sizes or (CPU_SIZES if reduced else GPU_SIZES)
    batches = args.batches or ((1,) if reduced else GPU_BATCHES)
    return BenchSettings(
        config=config,
        arch=arch,
        cases=[BenchCase(size, batch) for size in sizes for batch in batches],
        paths="".join(dict.fromkeys(paths)),
        steps=args.steps,
        caption_tokens=args.caption_tokens or (CPU_CAPTION_TOKENS if reduced else CAPTION_TOKENS),
        runs=runs,
        warmup=args.warmup if args.warmup is not None else (0 if args.quick else 1 if reduced else 2),
        dtype=dtype,
        precision=None if args.precision == "bf16" else args.precision,
        device=device,
        seed=args.seed,
        compile_mode=args.compile_mode,
        compile_backend=args.compile_backend,
        disabled_ops=tuple(name for name in args.disable_ops.split(",") if name),
        official_path=args.official_path.resolve() if args.official_path else None,
        official_python=args.official_python,
        reference=not args.no_reference,
        profile=not args.no_profile,
        out_dir=args.out_dir,
        tmp_dir=args.tmp_dir,
        command=command,
    )


def main(argv=None, prog: str = "pid bench", out_dir: Optional[Path] = None) -> int:
    """Parse `argv` (default sys.argv[1:]) and run; `out_dir` replaces the --out-dir default."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    if out_dir is not None:
        parser.set_defaults(out_dir=Path(out_dir))
    argv = list(sys.argv[1:] if argv is None else argv)
    args, command = parser.parse_args(argv), " ".join([prog, *argv])
    if args.predict:
        from pid.bench.roofline import report_from_args

        print(report_from_args(args))
        return 0
    if args.memory:
        from pid.bench import memory_report

        return memory_report.run(args, command)
    run(settings_from_args(args, command))
    return 0


__all__ = ["BenchCase", "BenchSettings", "PATHS", "add_arguments", "build_weights", "main", "make_inputs", "psnr", "run",
           "settings_from_args"]
