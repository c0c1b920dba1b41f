"""pid.bench.static: the gate rules, the ptxas parser, the Markdown, the compile_specs of every module (no compile)."""

import csv
import importlib

import pytest

from pid.bench import static
from pid_kernels.triton import _sass

ROW = dict(kernel="_k", variant="d64 bf16", arch="sm_90a", triton="3.9.0", regs=168, spills=0, smem_bytes=99664,
           num_warps=12, num_stages=2, ctas_per_sm=1, mma="wgmma", tma="yes", head_dim=64, softmax_overlap="none",
           mma_useful_fraction=1.0, main_loop_sass=300, mma_operands="wgmma.bf16", warp_specialized="yes",
           claimed_ctas_per_sm=1, module="m", shapes="v1 2048²", claimed_operands="")


@pytest.mark.parametrize("change,rules", [
    ({}, []),
    ({"error": "ptxas: out of registers"}, ["compile"]),
    ({"spills": 8}, ["spills"]),
    ({"spills": 8, "arch": "sm_120", "mma": "mma.sync"}, []),  # sm_120 is reported, not gated
    ({"mma": "mma.sync"}, ["mma"]),
    ({"arch": "sm_100a"}, ["mma"]),  # wgmma is not Blackwell's path
    ({"mma": "none", "mma_useful_fraction": ""}, []),  # not a tensor-core kernel
    ({"claimed_operands": "e4m3"}, ["mma_operands"]),
    ({"claimed_operands": "e4m3", "mma_operands": "wgmma.e4m3+wgmma.s8"}, []),
    ({"claimed_operands": "e4m3", "mma_operands": "mma.sync.e4m3+wgmma.bf16"}, ["mma_operands"]),  # fp8 off wgmma
    ({"claimed_operands": "e4m3", "arch": "sm_100a", "mma": "tcgen05", "mma_operands": "mma.sync.s8+tcgen05.f8f6f4"},
     []),
    ({"ctas_per_sm": 1, "claimed_ctas_per_sm": 2}, ["occupancy"]),
    ({"ctas_per_sm": 0, "arch": "sm_120", "mma": "mma.sync"}, ["occupancy"]),  # shared memory does not fit
])
def test_gate_rules(change, rules):
    assert [rule for rule, _ in static.failures({**ROW, **change})] == rules


def test_gate_lines_and_allow_list():
    rows = [dict(ROW), {**ROW, "variant": "d72 fp32", "spills": 800}]
    lines = static.gate(rows, allowed={})
    assert lines == ["_k/d72 fp32/sm_90a (triton 3.9.0): 800 bytes spilled"]
    assert rows[0]["gate"] == "ok" and rows[1]["gate"] == "FAIL: 800 bytes spilled"
    assert static.gate(rows, allowed={("_k", "d72 fp32", "sm_90a", "spills"): "known"}) == []
    assert rows[1]["gate"] == "allowed: 800 bytes spilled"


def test_allow_list_names_real_variants():
    """Every ALLOWED entry is a variant some compile_specs still produces, with a reason."""
    variants = {(spec["fn"].__name__, spec["variant"], arch) for module in static.triton_modules()
                for arch in static.ARCHES for spec in importlib.import_module(module).compile_specs(arch)}
    for (kernel, variant, arch, rule), reason in static.ALLOWED.items():
        assert (kernel, variant, arch) in variants and rule in ("compile", "spills", "mma", "mma_operands", "occupancy")
        assert reason


PTXAS = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z6kernelILi8EEvPf' for 'sm_90a'
ptxas info    : Function properties for _Z6kernelILi8EEvPf
    0 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 368 bytes cmem[0]
ptxas info    : Compiling entry function '_Z5otherPf' for 'sm_120a'
ptxas info    : Function properties for _Z5otherPf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers, used 0 barriers, 360 bytes cmem[0]
"""


def test_parse_ptxas():
    assert static.parse_ptxas(PTXAS) == [
        {"name": "_Z6kernelILi8EEvPf", "target": "sm_90a", "regs": 40, "spills": 12, "smem_bytes": 2048},
        {"name": "_Z5otherPf", "target": "sm_120a", "regs": 12, "spills": 0, "smem_bytes": 0},
    ]


def test_markdown_is_generated_from_the_csvs(tmp_path):
    rows = [{**ROW, "gate": "ok"}]
    static.write_csv(tmp_path / "3.9.0-sm_90a.csv", rows)
    static.write_csv(tmp_path / "nvcc-13.0-sm_90a.csv", [{"kernel": "rms", "arch": "sm_90a", "regs": 40, "gate": "ok"}])
    text = static.markdown(tmp_path)
    assert "## Triton 3.9.0, sm_90a" in text and "## nvcc 13.0, sm_90a" in text
    assert "Compile facts, not timings" in text and "Triton 3.9.0 and nvcc" in text
    assert "| _k | d64 bf16 | 168 | 0 |" in text
    with (tmp_path / "3.9.0-sm_90a.csv").open() as file:
        assert list(csv.DictReader(file))[0]["kernel"] == "_k"


def test_bad_arguments_name_themselves(capsys):
    with pytest.raises(SystemExit):
        static.main(["--arch", "sm_80"])
    assert "--arch 'sm_80'" in capsys.readouterr().err


@pytest.mark.parametrize("arch", static.ARCHES)
def test_every_triton_module_has_compile_specs(arch):
    """Each spec holds compile_for's arguments and a variant label unique within its kernel."""
    modules = static.triton_modules()
    assert {"pid_kernels.triton.attention", "pid.quant.triton_gemm", "pid.quant.triton_attention"} <= set(modules)
    for module in modules:
        specs = importlib.import_module(module).compile_specs(arch)
        assert specs, module
        labels = [(spec["fn"].__name__, spec["variant"]) for spec in specs]
        assert len(set(labels)) == len(labels), (module, labels)
        for spec in specs:
            assert spec["arch"] == arch and spec["shapes"] and set(spec) >= {"fn", "signature", "constexprs",
                                                                            "num_warps", "num_stages"}
            assert set(spec) - set(_sass.SPEC_INFO) <= {"fn", "signature", "constexprs", "arch", "num_warps",
                                                        "num_stages", "divisible"}
