"""The op-benchmark driver and its case tables: one table per op name, shapes from pid.configs,
rows in one schema, the correctness check failing where a kernel is wrong."""

import ast
import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

import pid_kernels
from pid.bench import ops, timing
from pid.bench.measure import measure_ceilings

REPO = Path(__file__).resolve().parents[3]
BENCHMARKS = REPO / "benchmarks"
NOT_OP_TABLES = {"bench_decode.py"}


def _table(op: str):
    spec = importlib.util.spec_from_file_location(f"bench_{op}", BENCHMARKS / f"bench_{op}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_bench_table_per_registered_op():
    tables = {path.name for path in BENCHMARKS.glob("bench_*.py")} - NOT_OP_TABLES
    assert tables == {f"bench_{name}.py" for name in pid_kernels.REGISTRY}
    for name in pid_kernels.REGISTRY:
        assert _table(name).OP == name


@pytest.mark.parametrize("op", sorted(pid_kernels.REGISTRY))
def test_tables_cover_the_released_sizes_and_draw_tiny_inputs(op):
    table = _table(op)
    device_cases = table.cases(False)
    for size in ops.SIZES:
        assert any(size in name.split("_") for name in device_cases), f"{op}: no case at {size}"
    for name, case in table.cases(True).items():
        args = case.make_args(torch.device("cpu"), torch.Generator().manual_seed(0))
        assert pid_kernels.REGISTRY[op].supports(*args) == [] or pid_kernels.REGISTRY[op].backend == "cuda", name
        assert case.bytes > 0 and case.flops >= 0


def test_shapes_come_from_the_released_config():
    config = ops.config()
    tokens = (2048 // config["patch_size"]) ** 2
    assert f"1x{tokens}x{config['hidden_size']}" in _table("rmsnorm_modulate").cases()["mmdit_2048"].shape
    heads = config["num_groups"]
    assert f"{heads} heads of {config['hidden_size'] // heads}" in _table("attention").cases()["mmdit_2048"].shape
    per_token = _table("sigma_gate").cases()["per_token_2048"]
    assert per_token.flops == 2 * tokens * 2 * config["hidden_size"]  # v1.5: one gate output per token


@pytest.mark.parametrize("op, case_name", [("gated_residual", "pit_gate_tinyodd"), ("pixel_embed", "pixel_embed_tiny")])
def test_check_and_bench_rows(op, case_name):
    case = _table(op).cases(True)[case_name]
    checked = ops.check_case(op, case, torch.device("cpu"), seed=3)
    assert checked["passed"] and checked["rel_error"] <= checked["rel_bound"]
    ceilings = {"copy_gbps": 10.0, "matmul_bf16_tflops": 1.0}
    rows = ops.bench_case(op, case_name, case, torch.device("cpu"), ceilings, runs=1)
    assert [row["impl"] for row in rows] == [f"pid_{pid_kernels.REGISTRY[op].backend}", "eager_reference"]
    for row in rows:
        assert list(row) == list(ops.COLUMNS)
        assert float(row["ms"]) > 0 and float(row["rel_error"]) < 1e-1 and row["timings_meaningful"] is False
        assert row["note"] == ops.DRY_RUN_NOTE and row["bound"] in ("copy", "matmul")


@pytest.mark.parametrize("wrong", ["scaled", "nan"])
def test_check_fails_a_wrong_kernel(monkeypatch, wrong):
    op = pid_kernels.REGISTRY["gated_residual"]
    reference = op.impl

    def bad(*args):
        out = reference(*args)
        return out * 1.05 if wrong == "scaled" else out.index_fill(0, torch.tensor([0]), float("nan"))

    monkeypatch.setitem(pid_kernels.REGISTRY, "gated_residual", dataclasses.replace(op, impl=bad))
    case = _table("gated_residual").cases(True)["mmdit_tiny"]
    assert not ops.check_case("gated_residual", case, torch.device("cpu"), seed=0)["passed"]


def test_ceilings_and_timing_on_the_cpu():
    ceilings = measure_ceilings("cpu")
    assert ceilings["copy_gbps"] > 0 and ceilings["matmul_bf16_tflops"] > 0
    calls = []
    timed = timing.time_calls(lambda: calls.append(1), "cpu", warmup=2, runs=3)
    assert len(timed["times_ms"]) == 3 and timed["first_s"] >= 0 and len(calls) == 5


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_official_runner_loads_only_modules_that_import_nothing_of_ours():
    # official_runner.py loads these by path where `import pid` is the official package.
    for name in ("timing", "profiling"):
        imported = _imports(REPO / "pid" / "bench" / f"{name}.py")
        assert not any(module == "pid" or module.startswith("pid.") for module in imported), name
    ours = {module for module in _imports(REPO / "pid" / "bench" / "official_runner.py") if module.startswith("pid.")}
    assert ours == {"pid._src.networks.pid_net"}  # the official network, never ours


def test_bench_does_not_import_the_cli():
    for path in (REPO / "pid" / "bench").glob("*.py"):
        assert not any(module.startswith("pid.cli") for module in _imports(path)), path.name
