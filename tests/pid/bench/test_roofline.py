"""pid.bench.roofline: one FLOP count (flops.py, checked against torch's FlopCounterMode), floors
that behave (monotone in size, fp8 below bf16), the ceilings readers, `pid bench --predict`."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from pid.bench import flops, roofline
from pid.cli import commands as cli
from pid.configs import TIMESCALE

V1 = "PiD_res2k_sr4x_official_flux_distill_4step"
# Issue 11: the useful work of the 4-step v1 decode at 2048² with 300 caption tokens.
V1_DECODE_TFLOP_2048 = 177.8
CONFIGS = ("v1", "v1.5", "v1_sr8x_lat1152_down16", "v15_sr4x_lat128_down16_unpatchify2")
BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
H100 = roofline.gpu("H100")


@torch.no_grad()
def test_decode_flops_equal_torch_flop_counter_on_the_meta_device():
    """Our decoder's calls (prepare once, all steps' conditioning at once, 4 steps) on meta tensors:
    torch's count of its matmuls, convolutions and attention equals flops.decode_flops plus the LQ
    adapter's output heads again on every step after the first (they run at their gates each step,
    so their 7 features are never all kept: pid.model.lq_adapter; 0.3% more work for less memory)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pid.model.network import build_model
    from pid.sampling.distilled import distilled_t_list

    size, steps = (2048, 2048), 4
    with torch.device("meta"):
        net = build_model(V1).bfloat16()
        latent, captions = torch.empty(1, *net.expected_latent_shape(size)), torch.empty(1, 300, 2304)
        x_t = torch.empty(1, 3, *size)
    t_list = distilled_t_list(steps).to("meta")
    with FlopCounterMode(display=False) as counter:
        context = net.prepare(captions, latent, torch.zeros(1, device="meta"), size)
        conditioning = net.timestep_conditioning(t_list[:-1] * TIMESCALE)
        for step in range(steps):
            pixels = net.pixel_features(x_t, context, conditioning.rows(step, step + 1))
            noise = torch.empty_like(x_t) if step < steps - 1 else None
            x_t = net.unembed_update(pixels, size, x_t, t_list[step], t_list[step + 1], noise)
    expected = flops.decode_flops(V1, size, 300, steps=steps)
    heads = sum(op.flops for op in flops.forward_ops(V1, size, 300, 1) if ".output_heads." in op.layer)
    assert counter.get_total_flops() == pytest.approx(expected + (steps - 1) * heads, rel=1e-9)
    assert expected / 1e12 == pytest.approx(V1_DECODE_TFLOP_2048, abs=0.05)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("precision", roofline.PRECISIONS)
def test_roofline_counts_decode_flops(config, precision):
    for size, batch in (((2048, 2048), 1), ((1056, 800), 3)):
        result = roofline.decode_roofline(config, size, H100, precision, batch)
        assert result.flops == pytest.approx(flops.decode_flops(config, size, 300, batch), rel=1e-12)
        assert result.floor_s > 0 and all(row.floor_s > 0 and row.bytes > 0 for row in result.rows)


def test_forward_ops_sum_to_forward_flops():
    ops = flops.forward_ops(V1, (2048, 2048))
    assert sum(op.flops for op in ops) == pytest.approx(flops.forward_flops(V1, (2048, 2048))["total"])
    assert {op.term for op in ops} <= {*flops.TERMS, flops.ELEMENTWISE}
    # one attention per patch and pixel block, one sigma gate per gated block
    assert sum(op.op == "attention" for op in ops) == 14 + 2 and sum(op.op == "sigma_gate" for op in ops) == 7


@pytest.mark.parametrize("config", CONFIGS)
def test_floors_grow_with_size_and_batch_and_fp8_is_below_bf16(config):
    for sheet in roofline.GPUS.values():
        floors = [roofline.decode_roofline(config, (size, size), sheet).floor_s for size in (512, 1024, 2048, 4096)]
        assert floors == sorted(floors) and len(set(floors)) == len(floors)
        one, two = (roofline.decode_roofline(config, (1024, 1024), sheet, batch=b).floor_s for b in (1, 2))
        assert one < two <= 2 * one
        bf16, fp8 = (roofline.decode_roofline(config, (2048, 2048), sheet, p).floor_s for p in ("bf16", "fp8"))
        assert fp8 < bf16


def test_fp8_follows_the_quant_policy():
    rows = roofline.decode_roofline(V1, (2048, 2048), H100, "fp8").rows
    chosen = {(row.op, row.layer): row.precision for row in rows}
    assert chosen["swiglu", "patch_blocks.*.mlp_x.w1"] == "fp8" and chosen["attention", "patch_blocks.*.attn"] == "fp8"
    assert chosen["gemm", "pixel_blocks.*.compress_to_attn"] == "bf16"  # the PiT GEMMs stay
    assert chosen["gemm", "patch_blocks.*.adaLN_modulation_img.*"] == "fp8_weight"
    assert chosen["gated_residual", "pixel_blocks.*.expand_from_attn"] == "bf16"  # no fp8 variant of the seams
    bf16 = {(row.op, row.layer): row for row in roofline.decode_roofline(V1, (2048, 2048), H100).rows}
    swiglu = next(row for row in rows if row.layer == "patch_blocks.*.mlp_x.w1")
    weights = 2 * 4096 * 1536  # w1 and w3 (hidden 4096): 1 byte each under fp8, not 2
    assert bf16["swiglu", swiglu.layer].bytes - swiglu.bytes == pytest.approx(56 * weights)


def _table(op: str):
    spec = importlib.util.spec_from_file_location(f"bench_{op}", BENCHMARKS / f"bench_{op}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("op, case, layer", [
    ("attention", "mmdit_2048", "patch_blocks.0.attn"), ("attention", "pit_2048", "pixel_blocks.0.attn"),
    ("swiglu", "image_2048", "patch_blocks.0.mlp_x.w1"),
    ("sigma_gate", "per_channel_2048", "lq_proj.gate_modules.0.content_proj"),
    ("rmsnorm_modulate", "mmdit_2048", "patch_blocks.0.norm_x1"),
    ("rmsnorm_modulate", "pit_pixel_norm_2048", "pixel_blocks.0.norm1"),
    ("gated_residual", "mmdit_2048", "patch_blocks.0.mlp_x"),
    ("gated_residual", "pit_gate_2048", "pixel_blocks.0.expand_from_attn"),
    ("gated_residual_rmsnorm_modulate", "mmdit_2048", "patch_blocks.0.norm_x2"),
    ("patch_embed", "patch_embed_2048", "s_embedder.proj"), ("pixel_embed", "pixel_embed_2048", "pixel_embedder.proj"),
    ("pit_pixel_mlp", "pit_mlp_2048", "pixel_blocks.0.mlp"),
])
def test_op_terms_line_up_with_the_op_benchmarks(op, case, layer):
    """One call's FLOPs and bytes (bf16) as the roofline counts them = the bench_<op>.py case's."""
    cases = _table(op).cases()
    bench = cases[case]
    call = next(call for call in flops.forward_ops(V1, (2048, 2048)) if call.op == op and call.layer == layer)
    assert call.flops == bench.flops
    assert 2 * (call.weights + call.activations) == pytest.approx(bench.bytes, rel=1e-3)


def test_unknown_gpu_and_detection():
    with pytest.raises(ValueError, match="unknown GPU 'A100'; known GPUs: H100, H200, B200, GB200, RTX4090, RTX5090"):
        roofline.gpu("A100")
    assert roofline.gpu("rtx 4090") is roofline.GPUS["RTX4090"] and roofline.gpu("h200") is roofline.GPUS["H200"]
    assert roofline.detect("NVIDIA H100 80GB HBM3") is roofline.GPUS["H100"]
    assert roofline.detect("NVIDIA GB200") is roofline.GPUS["GB200"] and roofline.detect("NVIDIA B200") is roofline.GPUS["B200"]
    assert roofline.detect("NVIDIA GeForce RTX 5090") is roofline.GPUS["RTX5090"]
    assert roofline.detect("NVIDIA H100 PCIe") is None and roofline.detect("NVIDIA H100 NVL") is None
    assert roofline.detect("NVIDIA A100-SXM4-80GB") is None


def test_measured_ceilings_from_a_device_run(tmp_path):
    """The files device_check.sh brings back: suite.json / environment.json, and ops.csv."""
    measured = {"copy_gbps": 3000.0, "matmul_bf16_tflops": 700.0, "matmul_fp8_tflops": 1300.0, "probe": "x"}
    (tmp_path / "suite.json").write_text(json.dumps({"environment": {"gpu": "NVIDIA H100", "ceilings": measured}}))
    (tmp_path / "environment.json").write_text(json.dumps({"gpu": "NVIDIA H100", "ceilings": measured}))
    with (tmp_path / "ops.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["op", "ms", "copy_gbps", "matmul_bf16_tflops"])
        writer.writeheader()
        writer.writerow({"op": "swiglu", "ms": "", "copy_gbps": "", "matmul_bf16_tflops": ""})  # a correctness row
        writer.writerow({"op": "swiglu", "ms": "1.0", "copy_gbps": "3000.0", "matmul_bf16_tflops": "700.0"})
    for name in ("suite.json", "environment.json"):
        ceilings = roofline.read_ceilings(tmp_path / name)
        assert (ceilings.bf16_tflops, ceilings.fp8_tflops, ceilings.bandwidth_gbps) == (700.0, 1300.0, 3000.0)
    from_csv = roofline.read_ceilings(tmp_path / "ops.csv")
    assert (from_csv.bf16_tflops, from_csv.fp8_tflops, from_csv.bandwidth_gbps) == (700.0, None, 3000.0)
    assert roofline.decode_roofline(V1, (1024, 1024), from_csv).floor_s > roofline.decode_roofline(
        V1, (1024, 1024), H100).floor_s  # lower ceilings, higher floor
    with pytest.raises(ValueError, match="no fp8 matmul rate"):
        roofline.decode_roofline(V1, (1024, 1024), from_csv, "fp8")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="holds no ceilings"):
        roofline.read_ceilings(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        roofline.read_ceilings(tmp_path / "missing.json")


def _predict(capsys, *argv):
    status = cli.main(["bench", "--predict", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_prints_the_table_and_exits_without_timing(capsys, tmp_path):
    status, out, _ = _predict(capsys, "H100")
    assert status == 0 and "H100 SXM" in out and "decode floor:" in out and "177.8 TFLOP" in out
    assert "not measurements" in out and not (tmp_path / "decode.csv").exists()
    for op in ("attention", "swiglu", "sigma_gate", "patch_embed", "pixel_embed", "rmsnorm_modulate", "gated_residual",
               "gated_residual_rmsnorm_modulate", "pit_pixel_mlp", "unembed_update", "gemm", "conv"):
        assert any(line.startswith(op + " ") for line in out.splitlines()), op
    # the brief's spellings: --size / --batch (argparse abbreviations of --sizes / --batches)
    status, out, _ = _predict(capsys, "b200", "--size", "1024", "--batch", "2", "--config", "v1.5", "--precision", "fp8",
                              "--json")
    (result,) = json.loads(out)
    assert status == 0 and result["image_hw"] == [1024, 1024] and result["batch"] == 2 and result["precision"] == "fp8"
    assert result["decode"]["flops"] == pytest.approx(flops.decode_flops("v1.5", (1024, 1024), 300, 2))
    measured = {"copy_gbps": 3000.0, "matmul_bf16_tflops": 700.0, "matmul_fp8_tflops": None}
    (tmp_path / "suite.json").write_text(json.dumps({"environment": {"ceilings": measured}}))
    status, out, _ = _predict(capsys, "H100", "--ceilings", str(tmp_path / "suite.json"), "--sizes", "1024,2048")
    assert status == 0 and out.count("decode floor:") == 2 and "suite.json: measured in the run" in out


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib (the plot extra)")
def test_predict_plot(capsys, tmp_path):
    status, out, _ = _predict(capsys, "H200", "--size", "1024", "--precision", "fp8", "--plot", str(tmp_path / "r.png"))
    assert status == 0 and (tmp_path / "r.png").stat().st_size > 0 and f"wrote {tmp_path / 'r.png'}" in out


@pytest.mark.parametrize("argv, message", [
    (["--predict", "A100"], "unknown GPU 'A100'; known GPUs: H100, H200, B200, GB200, RTX4090, RTX5090"),
    (["--predict", "H100", "--config", "v2"], "unknown PiD checkpoint 'v2'"),
    (["--predict", "H100", "--ceilings", "/nonexistent/suite.json"], "ceilings file not found"),
    (["--config", "v1", "--quick"], "--config: only with --predict GPU"),
])
def test_predict_bad_input_is_one_line_exit_2(capsys, argv, message):
    assert cli.main(["bench", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("pid bench: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_bench_decode_script_predicts_too(capsys):
    from pid.bench import decode

    assert decode.main(["--predict", "RTX4090", "--sizes", "512"], prog="bench_decode.py") == 0
    assert "GeForce RTX 4090" in capsys.readouterr().out


def test_op_rows_carry_the_datasheet_floor(capsys):
    from pid.bench import ops

    case = _table("gated_residual").cases(True)["mmdit_tiny"]
    measured = {"copy_gbps": 10.0, "matmul_bf16_tflops": 1.0}
    (row,) = ops.bench_case("gated_residual", "mmdit_tiny", case, torch.device("cpu"), measured, runs=1,
                            impl_names=["eager_reference"], datasheet=H100)
    assert row["datasheet"] == "H100 SXM" and row["bound"] == "copy"
    assert float(row["floor_ms"]) == pytest.approx(case.bytes / 10e9 * 1e3, rel=1e-2)  # printed to 1e-5 ms
    assert float(row["datasheet_floor_ms"]) == pytest.approx(case.bytes / 3350e9 * 1e3, rel=1e-3)
    assert float(row["vs_datasheet_floor"]) == pytest.approx(float(row["ms"]) / float(row["datasheet_floor_ms"]), rel=1e-2)
    ops.print_row(row)
    assert "H100 SXM floor" in capsys.readouterr().out
    (cpu_row,) = ops.bench_case("gated_residual", "mmdit_tiny", case, torch.device("cpu"), measured, runs=1,
                                impl_names=["eager_reference"])
    assert cpu_row["datasheet"] == cpu_row["vs_datasheet_floor"] == ""  # a CPU has no datasheet


def test_what_runs_once_per_step_and_per_decode():
    """adaLN: one call for all 4 steps, weights read once; unembed_update reads noise on 3 of 4 steps;
    the LQ adapter runs once; the last block's text output branch not at all."""
    rows = {(row.op, row.layer): row for row in roofline.decode_roofline(V1, (2048, 2048), H100).rows}
    adaln = rows["gemm", "patch_blocks.*.adaLN_modulation_img.*"]
    assert adaln.calls == 14 and adaln.bytes == 14 * 2 * (1536 * 9216 + 4 * (1536 + 9216))
    pixels = 2048 * 2048
    unembed = rows["unembed_update", "final_layer.linear"]
    assert unembed.calls == 4 and unembed.bytes == 4 * (2 * (16 * pixels + 48) + 4 * 2 * 3 * pixels) + 3 * 4 * 3 * pixels
    assert rows["conv", "lq_proj.latent_proj.*"].calls == 10  # 2 convs + 4 residual blocks of 2, once
    assert rows["swiglu", "patch_blocks.*.mlp_y.w1"].calls == 13 * 4  # not on the last block
    assert rows["gemm", "patch_blocks.*.attn.qkv_y"].calls == 14 * 4  # its keys and values are attended to
