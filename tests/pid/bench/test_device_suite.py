"""The device suite's summary and RESULTS.md: generated from a run's files, never by hand; the
final table judges every target. (The dry run itself, `bash scripts/device_check.sh --dry-run`,
is a step of .ci/run.)"""

import csv
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import device_suite  # noqa: E402
import results_md  # noqa: E402

CEILINGS = {"copy_gbps": 4300.0, "matmul_bf16_tflops": 790.0, "matmul_fp8_tflops": None, "fp8_note": "", "probe": "x"}
ENVIRONMENT = {"gpu": "NVIDIA H200", "nvidia_smi": "NVIDIA H200, 580.159.04, 143771 MiB, 1980 MHz, 1980 MHz, 3201 MHz, "
               "700 W, 40", "nvidia_smi_fields": "name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,"
               "power.limit,temperature.gpu", "torch": "2.11.0+cu130", "cuda": "13.0", "triton": "3.6.0",
               "nvcc": "cuda_13.0", "python": "3.12.3", "dry_run": False, "date": "2026-12-01 20:00 UTC",
               "capability": "9.0", "sms": 132, "memory_gib": 140.0, "ceilings": CEILINGS}


def _decode(impl, ms, peak=3.5, psnr=45.0):
    return {"case": "2048px_b1", "impl": impl, "median_ms": ms, "peak_alloc_gib": peak, "psnr_db": psnr,
            "decode_tflop": 178.0, "tflops": 178.0 / ms * 1e3, "pct_of_matmul": 50, "first_call_s": 30}


def _op(op, impl, ms, bound="copy", pct="85.0", case="mmdit_2048"):
    return {"op": op, "case": case, "impl": impl, "ms": str(ms), "bound": bound, "pct_of_ceiling": pct, "note": ""}


SUITE = {"environment": ENVIRONMENT, "stages": [{"stage": "decode", "status": "ok", "seconds": "150", "box": "200"}],
         "sanitizer": {"memcheck": "exit 0 ERROR SUMMARY: 0 errors"}, "command": "bash scripts/device_check.sh",
         "official_path": "third_party/PiD"}
DECODE = [_decode("d_pid_graphs", 230.0), _decode("e_official_eager", 700.0), _decode("f_official_compile", 300.0)]
OPS = [_op("attention", "pid_triton", 1.0, "matmul"), _op("attention", "sdpa_flash", 1.1, "matmul"),
       _op("rmsnorm_modulate", "pid_cuda", 0.1, pct="85.0"), _op("gated_residual", "pid_cuda", 0.1, pct="60.0")]


def test_final_table_judges_every_target():
    table = device_suite.final_table(SUITE, DECODE, OPS)
    lines = table.splitlines()
    assert lines[-1].startswith("compute-sanitizer memcheck")
    path_row = next(line for line in lines if line.startswith("2048px_b1") and "d_pid_graphs" in line).split()
    assert path_row[2:5] == ["230.0", "3.04", "1.30"]  # ms, speed-up vs official eager, vs official compile
    assert any("d_pid_graphs <= 260 ms" in line and line.endswith(" met") for line in lines)
    assert any(">= 2.5x official eager" in line and "3.04x" in line and line.endswith(" met") for line in lines)
    assert any(">= 1.5x official + torch.compile" in line and "1.30x" in line and line.endswith("NOT met") for line in lines)
    assert any("peak <= 4 GiB" in line and line.endswith(" met") for line in lines)
    assert any("attention mmdit_2048 >= 1.15x" in line and "1.10x" in line and line.endswith("NOT met") for line in lines)
    assert any("gated_residual mmdit_2048 >= 80% of copy" in line and line.endswith("NOT met") for line in lines)
    assert "decode floor: 178.0 TFLOP" in table


def test_results_md_is_generated_from_the_committed_run():
    assert (BENCHMARKS / "RESULTS.md").read_text() == results_md.render(results_md.RUN_DIR)


def test_results_md_of_a_gpu_run_names_device_driver_versions_command_date(tmp_path):
    (tmp_path / "suite.json").write_text(json.dumps(SUITE))
    for name, rows in (("decode.csv", DECODE), ("ops.csv", OPS)):
        with (tmp_path / name).open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
            writer.writeheader()
            writer.writerows(rows)
    text = results_md.render(tmp_path)
    for expected in ("NVIDIA H200", "driver: 580.159.04", "torch 2.11.0+cu130", "triton 3.6.0",
                     "`bash scripts/device_check.sh`", "2026-12-01 20:00 UTC", "d_pid_graphs"):
        assert expected in text
    assert "No device run exists" not in text
    dry = {**SUITE, "environment": {**ENVIRONMENT, "dry_run": True}}
    (tmp_path / "suite.json").write_text(json.dumps(dry))
    assert "No device run exists yet" in results_md.render(tmp_path)  # a dry run is never a result
