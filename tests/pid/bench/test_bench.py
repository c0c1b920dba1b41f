"""`pid bench`: the quick CPU run end to end, the FLOP counter, PSNR, argument checks."""

import argparse
import csv
import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

from pid.cli import commands as cli
from pid.bench import decode as bench
from pid.bench import flops

V1 = "PiD_res2k_sr4x_official_flux_distill_4step"
# Issue 5: "45.1 TFLOP per step at 2048²" for v1, i.e. one release forward (LQ adapter included).
DOCUMENTED_V1_TFLOP_2048 = 45.1


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_quick_bench_writes_csv_and_says_it_is_a_cpu_run(tmp_path, capsys):
    assert cli.main(["bench", "--quick", "--out-dir", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "decode.csv")
    assert [row["impl"] for row in rows] == ["a_eager", "c_pid_compile"]
    for row in rows:
        assert float(row["median_ms"]) > 0 and row["runs"] == "1"
        assert row["command"] == f"pid bench --quick --out-dir {tmp_path}"
        assert row["torch"] == torch.__version__ and row["triton"] and row["device"]
        assert float(row["decode_tflop"]) > 0 and float(row["tflops"]) > 0 and float(row["pct_of_matmul"]) > 0
        assert float(row["psnr_db"]) > 40  # float32 on CPU against the float32 reference
        assert float(row["stage_total_ms"]) > 0 and float(row["stage_adapter_ms"]) > 0
    eager = rows[0]
    assert float(eager["stage_patch_blocks_ms"]) > 0 and float(eager["stage_pixel_blocks_ms"]) > 0
    assert "step-invariant hoisting" in rows[1]["notes"]
    out = capsys.readouterr().out
    if not torch.cuda.is_available():
        assert "CPU RUN" in out and "say NOTHING about GPU performance" in out
        assert all(row["cpu_run"] == "True" for row in rows)
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "decode.png").stat().st_size > 0
    # A second run appends.
    assert cli.main(["bench", "--quick", "--paths", "a", "--no-profile", "--no-reference", "--out-dir", str(tmp_path)]) == 0
    assert len(_rows(tmp_path / "decode.csv")) == 3


def test_flop_count_matches_the_documented_v1_figure():
    terms = flops.forward_flops(V1, (2048, 2048), caption_tokens=300)
    assert terms["total"] / 1e12 == pytest.approx(DOCUMENTED_V1_TFLOP_2048, rel=0.01)
    # The figure counts the LQ adapter, which the release recomputes on every call.
    assert (terms["total"] - terms["lq_adapter"]) / 1e12 < DOCUMENTED_V1_TFLOP_2048 * 0.99
    assert sum(value for name, value in terms.items() if name != "total") == pytest.approx(terms["total"])


def test_flop_count_scales_with_batch_tokens_and_steps():
    one = flops.forward_flops(V1, (1024, 1024), 300)
    four = flops.forward_flops(V1, (1024, 1024), 300, batch=4)
    assert four["total"] == pytest.approx(4 * one["total"])
    double = flops.forward_flops(V1, (2048, 2048), 300)
    assert double["patch_blocks_image_gemms"] == pytest.approx(4 * one["patch_blocks_image_gemms"])
    assert double["pixel_blocks_attention"] == pytest.approx(16 * one["pixel_blocks_attention"])
    once = one["lq_adapter"] + one["caption_projection"]
    per_step = one["total"] - once - one["last_block_text_output"]
    assert flops.decode_flops(V1, (1024, 1024), 300, steps=4) == pytest.approx(once + 4 * per_step)
    v15 = flops.forward_flops("PiD_v1pt5_res2kto4k_sr4x_official_flux_distill_4step", (2048, 2048), 300)
    # v1.5: wider LQ adapter (1024 channels), per-token gates (one output per token, not per channel).
    assert v15["lq_adapter"] > double["lq_adapter"] and v15["lq_gates"] < double["lq_gates"] / 100


def test_psnr():
    reference = torch.rand(2, 3, 8, 8) * 2 - 1
    assert bench.psnr(reference.clone(), reference) == math.inf
    # MSE 4e-4 on a data range of 2: 10 log10(4 / 4e-4) = 40 dB.
    assert bench.psnr(reference + 0.02, reference) == pytest.approx(40.0, abs=1e-4)
    assert bench.psnr(reference.bfloat16(), reference) > 40
    assert math.isnan(bench.psnr(torch.full_like(reference, float("nan")), reference))
    with pytest.raises(ValueError, match="shapes differ"):
        bench.psnr(reference[:1], reference)


def _args(*argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_defaults_and_checks():
    cpu = bench.settings_from_args(_args("--device", "cpu"), "x")
    assert cpu.paths == "ac" and cpu.arch == bench.CPU_ARCH and cpu.dtype == torch.float32
    assert [case.image_size for case in cpu.cases] == [128] and cpu.runs == 2
    gpu = bench.settings_from_args(_args("--device", "cuda"), "x")
    assert gpu.paths == "abcd" and gpu.dtype == torch.bfloat16 and gpu.runs == 10 and gpu.caption_tokens == 300
    assert [(c.image_size, c.batch) for c in gpu.cases] == [(s, b) for s in (1024, 2048, 4096) for b in (1, 4)]
    assert gpu.config == bench.released_config(V1)
    assert bench.settings_from_args(_args("--device", "cuda", "--official-path", "."), "x").paths == "abcdef"
    with pytest.raises(ValueError, match="at least 10 runs"):
        bench.settings_from_args(_args("--device", "cuda", "--runs", "3"), "x")
    with pytest.raises(ValueError, match="need --official-path"):
        bench.settings_from_args(_args("--device", "cpu", "--paths", "ae"), "x")
    with pytest.raises(ValueError, match="unknown paths"):
        bench.settings_from_args(_args("--device", "cpu", "--paths", "az"), "x")


def test_bad_official_path_is_a_usage_error(tmp_path, capsys):
    status = cli.main(["bench", "--quick", "--paths", "e", "--official-path", str(tmp_path), "--out-dir", str(tmp_path)])
    assert status == cli.EXIT_USAGE
    assert "not a checkout of nv-tlabs/PiD" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("PID_OFFICIAL_PATH"), reason="set PID_OFFICIAL_PATH to a checkout of nv-tlabs/PiD")
def test_official_runner_matches_our_decoder(tmp_path):
    """The official network in its own process, same weights, inputs and seed: on the CPU in
    float32 its decode equals our float32 reference up to rounding."""
    status = cli.main(["bench", "--quick", "--paths", "ae", "--official-path", os.environ["PID_OFFICIAL_PATH"],
                       "--out-dir", str(tmp_path), "--device", "cpu"])
    assert status == 0
    official = next(row for row in _rows(tmp_path / "decode.csv") if row["impl"] == "e_official_eager")
    assert not official.get("error"), official.get("error")
    assert float(official["psnr_db"]) > 100
