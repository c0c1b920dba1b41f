"""The stages of scripts/device_check.sh, one process each, so that a stage cut at its time box
loses only itself; every stage writes what it measured into the work folder as it goes.

    python benchmarks/device_suite.py STAGE --work DIR [--dry-run]

Stages, in the order the script runs them:
  environment  GPU, driver, clocks, versions; ceilings (copy GB/s, bf16 / fp8 matmul TFLOP/s)
  correctness  every fused op at PiD's real shapes (2048² v1 and v1.5, one odd shape), fresh
               inputs, outputs poisoned, within pid.bench.accuracy's rule; failures are written
               to unusable.json and later stages use the reference for those ops
  decode       the headline: `pid bench` at 2048² batch 1, the official paths e f first (with the
               checkout in PID_OFFICIAL_PATH), then d c a b; inductor's default compile mode
  attention    bench_attention.py at 2048² against every SDPA backend (+ SageAttention)
  ops          every other bench_<op>.py at 2048² against its floors (measured ceilings, datasheet)
  extra        compute-sanitizer memcheck over the CUDA-extension tests; 4096² and batch 4 decodes
  summary      the final table (printed last) and the files for $OUT
A dry run (--dry-run) runs each stage on the CPU in reduced form: tiny shapes, the Triton
interpreter, the reduced decode network; its timings are meaningless and say so.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH_OPS = ("attention", "swiglu", "sigma_gate", "patch_embed", "pixel_embed", "unembed_update", "rmsnorm_modulate",
             "gated_residual", "gated_residual_rmsnorm_modulate", "pit_pixel_mlp", "to_image")
MEMORY_BOUND_TARGET_NOTE = "memory-bound ops >= 80% of copy bandwidth"
OFFICIAL_SKIPPED = ("not set, so official paths e and f were skipped (PID_OFFICIAL_PATH, or third_party/PiD from "
                    "scripts/prepare_device_carry.sh)")
DRY_NOTE = "DRY RUN on the CPU: tiny shapes, Triton interpreter, reduced network. Timings are MEANINGLESS."


def _load_table(op: str):
    """benchmarks/bench_<op>.py's case table."""
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module(f"bench_{op}")


def _device(dry_run: bool) -> torch.device:
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: run with --dry-run for the CPU form")
    return torch.device("cpu" if dry_run else "cuda")


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))


def _read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


def _append_rows(work: Path, rows: list[dict]) -> None:
    from pid.bench.report import append_csv

    append_csv(work / "ops.csv", rows, " ".join(sys.argv))


def _command_output(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        return result.stdout.strip() if result.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


# ---- stages ------------------------------------------------------------------------------


def environment(work: Path, dry_run: bool) -> None:
    from pid.bench.measure import measure_ceilings
    from pid_kernels.runtime import triton

    device = _device(dry_run)
    query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu"
    found = {"gpu": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({platform.processor() or 'x86'})",
             "nvidia_smi": _command_output(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"]),
             "nvidia_smi_fields": query,
             "nvcc": _command_output(["nvcc", "--version"]).splitlines()[-1:] or [""],
             "torch": torch.__version__, "cuda": torch.version.cuda or "none", "triton": getattr(triton, "__version__", "none"),
             "python": platform.python_version(), "dry_run": dry_run, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    found["nvcc"] = found["nvcc"][0]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        found.update(capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count,
                     l2_mib=props.L2_cache_size / 2**20, memory_gib=props.total_memory / 2**30)
    print("environment: " + ", ".join(f"{key} {value}" for key, value in found.items() if value != ""), flush=True)
    ceilings = measure_ceilings(device)
    print(f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s, bf16 matmul {ceilings['matmul_bf16_tflops']:.1f} TFLOP/s, "
          f"fp8 matmul {ceilings['matmul_fp8_tflops'] or ceilings['fp8_note']}", flush=True)
    _write_json(work / "environment.json", {**found, "ceilings": ceilings})


def _ceilings(work: Path, device: torch.device) -> dict:
    """The ceilings the environment stage measured; without them, the datasheet of this GPU."""
    from pid.bench import ops

    measured = _read_json(work / "environment.json")
    if measured is not None:
        return measured["ceilings"]
    sheet = ops.datasheet_for(device)
    if sheet is None:
        raise SystemExit("no ceilings: the environment stage did not finish and this GPU has no datasheet entry")
    print(f"NO MEASURED CEILINGS (the environment stage did not finish): floors from the {sheet.name} datasheet",
          flush=True)
    return {"copy_gbps": sheet.bandwidth_gbps, "matmul_bf16_tflops": sheet.bf16_tflops,
            "matmul_fp8_tflops": sheet.fp8_tflops, "probe": f"not measured: {sheet.source}"}


def correctness(work: Path, dry_run: bool) -> None:
    import pid_kernels
    from pid.bench import ops

    device = _device(dry_run)
    wanted = ("tiny", "tinyodd") if dry_run else ("2048", "odd")
    unusable, rows = {}, []
    seed = int.from_bytes(os.urandom(4), "little")  # fresh inputs every run; recorded in each row
    for op in BENCH_OPS:
        backend = pid_kernels.REGISTRY[op].backend
        for case_name, case in _load_table(op).cases(dry_run).items():
            if not set(case_name.split("_")) & set(wanted):
                continue
            try:
                result = ops.check_case(op, case, device, seed)
            except Exception as error:  # a kernel that does not build or launch here is unusable too
                result = {"passed": False, "rel_error": None, "rel_bound": None,
                          "note": f"raised {type(error).__name__}: {str(error).splitlines()[0][:160]}"}
            verdict = "passed" if result["passed"] else "FAILED"
            print(f"check {op:<32} {case_name:<24} {verdict:<7} rel error {result['rel_error']} "
                  f"<= bound {result['rel_bound']} {result['note']}", flush=True)
            rows.append({column: "" for column in ops.COLUMNS} | {
                "op": op, "case": case_name, "impl": f"pid_{backend}", "shape": case.shape, "dtype": ops.dtype_name(case.dtype),
                "rel_error": result["rel_error"], "rel_bound": result["rel_bound"], "passed": result["passed"],
                "note": f"correctness check, seed {seed}, outputs poisoned {result['note']}".strip()})
            if not result["passed"]:
                unusable.setdefault(op, f"{case_name}: {result['note'] or 'error over the bound'}")
            _write_json(work / "unusable.json", unusable)
    _append_rows(work, rows)


def _unusable(work: Path) -> dict:
    return _read_json(work / "unusable.json", {})


def _bench(work: Path, dry_run: bool, names: tuple[str, ...]) -> None:
    from pid.bench import ops

    device = _device(dry_run)
    ceilings, unusable = _ceilings(work, device), _unusable(work)
    size = "tiny" if dry_run else "2048"
    for op in names:
        table = _load_table(op).cases(dry_run)
        for case_name, case in table.items():
            if size not in case_name.split("_"):
                continue
            # No compiled reference here (one inductor compile per case would not fit the box; the
            # bench_<op>.py scripts time it); where ours failed its check, the references stand in.
            impls = [name for name in ops.implementations(op, case, device.type == "cuda")
                     if name != "compiled_reference" and not (op in unusable and name.startswith("pid_"))]
            rows = ops.bench_case(op, case_name, case, device, ceilings, ops.DRY_RUNS if dry_run else ops.RUNS, impls)
            for row in rows:
                ops.print_row(row)
            _append_rows(work, rows)


def attention(work: Path, dry_run: bool) -> None:
    _bench(work, dry_run, ("attention",))


def ops_stage(work: Path, dry_run: bool) -> None:
    _bench(work, dry_run, tuple(op for op in BENCH_OPS if op != "attention"))


def _decode_args(work: Path, dry_run: bool, sizes: str, batches: str, paths: str, official: bool) -> list[str]:
    """`pid bench` arguments: our paths, plus (e) and (f) when `official` and PID_OFFICIAL_PATH is set."""
    args = ["--sizes", sizes, "--batches", batches, "--out-dir", str(work), "--compile-mode", "default",
            f"--disable-ops={','.join(_unusable(work))}"]
    if official and os.environ.get("PID_OFFICIAL_PATH"):
        args += ["--official-path", os.environ["PID_OFFICIAL_PATH"]]
        paths += "ef"
    args += ["--paths", paths]
    if dry_run:
        args += ["--device", "cpu", "--runs", "1", "--warmup", "1", "--compile-backend", "aot_eager"]
    return args


def decode(work: Path, dry_run: bool) -> None:
    from pid.bench import decode as bench

    if not os.environ.get("PID_OFFICIAL_PATH"):
        print(f"official checkout: {OFFICIAL_SKIPPED}", flush=True)
    size = "64" if dry_run else "2048"
    bench.main(_decode_args(work, dry_run, size, "1", "dcab", official=True), prog="device_suite decode")


def extra(work: Path, dry_run: bool) -> None:
    """If time remains: compute-sanitizer over the CUDA ops' tests (never run yet, and quick), then
    larger decodes (ours only; each new shape compiles again)."""
    from pid.bench import decode as bench

    if dry_run or not shutil.which("compute-sanitizer"):
        reason = "dry run (no GPU)" if dry_run else "compute-sanitizer is not on PATH"
        print(f"compute-sanitizer memcheck skipped: {reason}", flush=True)
        _write_json(work / "sanitizer.json", {"memcheck": f"skipped: {reason}"})
    else:
        log = work / "logs" / "memcheck.log"
        with log.open("w") as out:
            status = subprocess.run(
                ["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "99", sys.executable, "-m", "pytest",
                 "-q", "-p", "no:cacheprovider", "-m", "gpu", "tests/pid_kernels/cuda"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}).returncode
        summary = [line for line in log.read_text().splitlines() if "ERROR SUMMARY" in line][-1:]
        _write_json(work / "sanitizer.json", {"memcheck": f"exit {status} {' '.join(summary)}".strip()})
        print(f"compute-sanitizer memcheck: exit {status} {' '.join(summary)}", flush=True)
    runs = [("64", "2")] if dry_run else [("4096", "1"), ("2048", "4")]
    for sizes, batches in runs:
        args = _decode_args(work, dry_run, sizes, batches, "dc", official=False)  # (e), (f) would not fit the box
        bench.main(args + ["--no-profile"] + (["--no-reference"] if dry_run else []), prog="device_suite extra")


# ---- the summary ------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _stages(work: Path) -> list[dict]:
    """The stage log device_check.sh keeps: name, status, seconds, box."""
    if not (work / "stages.tsv").is_file():
        return []
    fields = ("stage", "status", "seconds", "box")
    return [dict(zip(fields, line.split("\t"))) for line in (work / "stages.tsv").read_text().splitlines() if line]


def suite_record(work: Path, dry_run: bool) -> dict:
    """suite.json: the environment and ceilings, the stage log, unusable ops, the sanitizer, the command."""
    return {"environment": _read_json(work / "environment.json", {}), "stages": _stages(work),
            "unusable_ops": _unusable(work), "sanitizer": _read_json(work / "sanitizer.json", {}),
            "command": "bash scripts/device_check.sh" + (" --dry-run" if dry_run else ""),
            "official_path": os.environ.get("PID_OFFICIAL_PATH") or OFFICIAL_SKIPPED}


def final_table(suite: dict, decode_rows: list[dict], op_rows: list[dict]) -> str:
    """The table printed last: stages, environment and ceilings, decode paths, attention, ops, targets.
    Inputs: suite.json's record and the rows of decode.csv and ops.csv (what comes back in $OUT)."""
    from pid.bench.report import TARGETS, decode_targets, verdict

    env = suite["environment"]
    ceilings = env.get("ceilings", {})
    dry_run = env.get("dry_run", True)
    lines = ["", "=" * 100, "device_check summary" + (f"   ({DRY_NOTE})" if dry_run else ""), "=" * 100]
    lines.append("stages: " + ", ".join(f"{s['stage']} {s['status']} {s['seconds']}s/{s['box']}s" for s in suite["stages"]))
    lines.append(f"device: {env.get('gpu', '?')} | driver/clocks: {env.get('nvidia_smi') or '-'} | torch {env.get('torch')}"
                 f" cuda {env.get('cuda')} triton {env.get('triton')} | {env.get('nvcc') or 'nvcc -'}")
    lines.append(f"official checkout: {suite.get('official_path')}")
    if ceilings:
        fp8 = f"{ceilings['matmul_fp8_tflops']:.0f}" if ceilings.get("matmul_fp8_tflops") else "-"
        lines.append(f"ceilings: copy {ceilings['copy_gbps']:.0f} GB/s, bf16 matmul {ceilings['matmul_bf16_tflops']:.1f} "
                     f"TFLOP/s, fp8 matmul {fp8} TFLOP/s ({ceilings.get('probe', '')})")
    lines += ["", f"{'decode case':<12}{'path':<20}{'ms':>9}{'vs e':>7}{'vs f':>7}{'TFLOP/s':>9}{'%mm':>6}{'peak GiB':>9}"
              f"{'PSNR':>7}{'1st s':>8}  note"]
    by_case: dict[str, dict[str, dict]] = {}
    for row in decode_rows:
        by_case.setdefault(row["case"], {})[row["impl"]] = row
    for case, paths in by_case.items():
        official = {key: float(paths[key]["median_ms"]) for key in ("e_official_eager", "f_official_compile")
                    if paths.get(key, {}).get("median_ms")}
        for impl, row in sorted(paths.items()):
            ms = float(row["median_ms"]) if row.get("median_ms") else None

            def ratio(key):
                return f"{official[key] / ms:.2f}" if ms and key in official else "-"

            def cell(key, spec):
                return format(float(row[key]), spec) if row.get(key) not in (None, "") else "-"

            lines.append(f"{case:<12}{impl:<20}{cell('median_ms', '.1f'):>9}{ratio('e_official_eager'):>7}"
                         f"{ratio('f_official_compile'):>7}{cell('tflops', '.1f'):>9}{cell('pct_of_matmul', '.0f'):>6}"
                         f"{cell('peak_alloc_gib', '.2f'):>9}{cell('psnr_db', '.1f'):>7}{cell('first_call_s', '.1f'):>8}"
                         f"  {row.get('error', '')[:60]}")
    if not decode_rows:
        lines.append("(no decode rows: the decode stage did not run or was cut before its first path)")
    checks = [row for row in op_rows if row.get("passed")]
    op_rows = [row for row in op_rows if row.get("ms") or row.get("note", "").startswith("skipped")]
    failed = sorted({row["op"] for row in checks if row["passed"] != "True"})
    lines += ["", f"correctness: {sum(row['passed'] == 'True' for row in checks)}/{len(checks)} op cases passed"
              + (f"; unusable (reference used instead): {', '.join(failed)}" if failed else "")]
    lines += ["", f"{'op':<32}{'case':<24}{'impl':<20}{'ms':>10}{'TFLOP/s':>9}{'GB/s':>9}{'%ceil':>8} {'bound':<7}"
              f"{'x floor':>9}{'x sheet':>9}{'vs best':>8}"]
    for row in op_rows:
        lines.append(f"{row['op']:<32}{row['case']:<24}{row['impl']:<20}{row.get('ms') or '-':>10}"
                     f"{row.get('tflops') or '-':>9}{row.get('gbps') or '-':>9}{row.get('pct_of_ceiling') or '-':>8} "
                     f"{row.get('bound') or '-':<7}{row.get('vs_floor') or '-':>9}{row.get('vs_datasheet_floor') or '-':>9}"
                     f"{row.get('speedup_vs_best_baseline') or '-':>8}"
                     + (f"  {row['note'][:50]}" if not row.get("ms") else ""))
    lines.append("x floor: measured / the floor from this run's ceilings; x sheet: measured / the floor from the GPU's "
                 "datasheet (pid.bench.roofline)")
    targets = decode_targets(decode_rows)
    targets += _attention_targets(op_rows, TARGETS["attention_vs_best_sdpa"])
    targets += _memory_bound_targets(op_rows, TARGETS["memory_bound_pct_of_copy"])
    if ceilings and decode_rows:
        floor_ms = float(decode_rows[0]["decode_tflop"]) / ceilings["matmul_bf16_tflops"] * 1e3
        lines += ["", f"decode floor: {float(decode_rows[0]['decode_tflop']):.1f} TFLOP / measured bf16 matmul rate = "
                      f"{floor_ms:.1f} ms ({decode_rows[0]['case']})"]
    lines += _roofline_lines(env, decode_rows)
    lines += ["", "targets (issue 10)" + (" -- dry run: verdicts say nothing" if dry_run else "") + ":"]
    lines += [f"  {target:<58} {measured:<18} {verdict(met)}" for target, measured, met in targets]
    sanitizer = suite.get("sanitizer")
    if sanitizer:
        lines.append(f"compute-sanitizer memcheck: {sanitizer['memcheck']}")
    if dry_run:
        lines.append(DRY_NOTE)
    return "\n".join(lines)


def _roofline_lines(env: dict, decode_rows: list[dict]) -> list[str]:
    """Per decode case, the roofline floor (this run's ceilings, then the GPU's datasheet) and the
    fastest path's time over it."""
    from pid.bench import roofline
    from pid.configs import resolve_config

    lines = []
    sheets = [roofline.from_measured(env["ceilings"], "this run's ceilings")] if env.get("ceilings") else []
    sheets += [sheet for sheet in [roofline.detect(env.get("gpu", ""))] if sheet]
    for case in dict.fromkeys(row["case"] for row in decode_rows):
        rows = [row for row in decode_rows if row["case"] == case]
        first, timed = rows[0], [row for row in rows if row.get("median_ms")]
        try:
            resolve_config(first.get("arch", "?"))
        except (KeyError, ValueError):
            lines.append(f"roofline floor {case}: none for {first.get('arch', '?')} (not a released architecture)")
            continue
        precision = "fp8" if any(row["impl"].endswith("_fp8") for row in rows) else "bf16"
        best = min(timed, key=lambda row: float(row["median_ms"])) if timed else None
        for sheet in sheets:
            try:
                floor_ms = roofline.decode_roofline(
                    first["arch"], (int(first["image_size"]),) * 2, sheet, precision, int(first["batch"]),
                    int(first["caption_tokens"]), int(first["steps"])).floor_s * 1e3
            except ValueError as error:  # e.g. fp8 rows without a measured fp8 rate
                lines.append(f"roofline floor {case} ({sheet.source}): {error}")
                continue
            ratio = f"; fastest {best['impl']} {float(best['median_ms']) / floor_ms:.2f} x floor" if best else ""
            lines.append(f"roofline floor {case} {precision} ({sheet.name}, {sheet.source}): {floor_ms:.1f} ms{ratio}")
    return lines


def _attention_targets(rows: list[dict], target: float) -> list:
    checks = []
    for case in dict.fromkeys(row["case"] for row in rows if row["op"] == "attention"):
        case_rows = {row["impl"]: row for row in rows if row["op"] == "attention" and row["case"] == case and row.get("ms")}
        sdpa = [float(row["ms"]) for impl, row in case_rows.items() if impl.startswith("sdpa_")]
        ours = case_rows.get("pid_triton")
        met, measured = None, "not run"
        if ours and sdpa:
            ratio = min(sdpa) / float(ours["ms"])
            met, measured = ratio >= target, f"{ratio:.2f}x"
        checks.append((f"attention {case} >= {target}x best SDPA (+ its norm/RoPE)", measured, met))
    return checks


def _memory_bound_targets(rows: list[dict], target: float) -> list:
    ours = [row for row in rows if row["impl"].startswith("pid_") and row.get("bound") == "copy" and row.get("ms")]
    if not ours:
        return [(MEMORY_BOUND_TARGET_NOTE, "not run", None)]
    worst = min(ours, key=lambda row: float(row["pct_of_ceiling"]))
    return [(f"{row['op']} {row['case']} >= {target:.0f}% of copy", f"{row['pct_of_ceiling']}%",
             float(row["pct_of_ceiling"]) >= target) for row in ours if row is worst or float(row["pct_of_ceiling"]) < target]


def summary(work: Path, dry_run: bool) -> None:
    """Write the files that come back ($OUT): ops.csv, decode.csv, suite.json, summary.txt and the
    two plots (the script adds logs.tgz); print the final table last."""
    from pid.bench.report import plot, plot_ops

    out = Path(os.environ.get("OUT") or work / "out")
    out.mkdir(parents=True, exist_ok=True)
    suite = suite_record(work, dry_run)
    table = final_table(suite, read_rows(work / "decode.csv"), read_rows(work / "ops.csv"))
    for name in ("ops.csv", "decode.csv"):
        if (work / name).is_file():
            shutil.copy(work / name, out / name)
    _write_json(out / "suite.json", suite)
    (out / "summary.txt").write_text(table + "\n")
    for draw, source, target in ((plot, "decode.csv", "decode.png"), (plot_ops, "ops.csv", "ops.png")):
        try:
            if (work / source).is_file():
                draw(work / source, out / target)
        except Exception as error:  # a plot must never cost the table
            print(f"plot {target} failed: {type(error).__name__}: {error}")
    print(table, flush=True)


STAGES = {"environment": environment, "correctness": correctness, "decode": decode, "attention": attention,
          "ops": ops_stage, "extra": extra, "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--work", type=Path, required=True, help="the run's work folder (device_check.sh makes it)")
    parser.add_argument("--dry-run", action="store_true", help="the CPU form: tiny shapes, Triton interpreter")
    options = parser.parse_args()
    if options.dry_run and os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("--dry-run needs TRITON_INTERPRET=1 in the environment (device_check.sh sets it)")
    options.work.mkdir(parents=True, exist_ok=True)
    STAGES[options.stage](options.work, options.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
