"""The seam override machinery that fused ops plug into."""

from pathlib import Path

import pytest
import torch

import pid_kernels
from pid import seams
from pid_kernels import registry
from pid_kernels.cuda import loader
from pid_kernels.registry import Capability, KernelOp, KernelRefused


@pytest.fixture
def fake_op():
    calls = []

    def impl(x, gate, y):
        calls.append("fused")
        return x + gate * y

    def supports(x, gate, y):
        return [] if x.dim() == 2 else ["only 2-D inputs"]

    op = pid_kernels.register(KernelOp("fake_residual", "gated_residual", "triton", impl, supports))
    yield op, calls
    pid_kernels.disable(["fake_residual"])
    pid_kernels.REGISTRY.pop("fake_residual")
    pid_kernels.BACKENDS_OF.pop("fake_residual")


def test_enable_routes_and_falls_back(fake_op):
    op, calls = fake_op
    pid_kernels.enable(["fake_residual"], strict=False)
    assert "fake_residual" in pid_kernels.enabled()
    x = torch.ones(2, 3)
    assert torch.equal(seams.gated_residual(x, x, x), 2 * x) and calls == ["fused"]
    seams.gated_residual(torch.ones(2, 3, 4), torch.ones(4), torch.ones(4))  # refused -> reference
    assert calls == ["fused"] and pid_kernels.CALLS["fake_residual"]["fallback"] == 1
    pid_kernels.disable(["fake_residual"])
    assert "fake_residual" not in pid_kernels.enabled()


def test_strict_mode_raises_with_reasons(fake_op):
    pid_kernels.enable(["fake_residual"], strict=True)
    with pytest.raises(KernelRefused, match="only 2-D inputs"):
        seams.gated_residual(torch.ones(2, 3, 4), torch.ones(4), torch.ones(4))


def test_unknown_names():
    with pytest.raises(KeyError, match="unknown fused op"):
        pid_kernels.enable(["nope"])
    with pytest.raises(KeyError, match="unknown seam"):
        seams.override("nope", None)


def test_a_failing_kernel_falls_back_for_good_unless_strict():
    def broken(x, gate, y):
        raise RuntimeError("no kernel image for this GPU")

    pid_kernels.register(KernelOp("broken_residual", "gated_residual", "triton", broken, lambda *a: []))
    try:
        pid_kernels.enable(["broken_residual"], strict=False)
        x = torch.ones(2, 3)
        with pytest.warns(UserWarning, match="no kernel image"):
            assert torch.equal(seams.gated_residual(x, x, x), 2 * x)
        assert "no kernel image" in pid_kernels.registry.FAILED["broken_residual"]
        assert torch.equal(seams.gated_residual(x, x, x), 2 * x)  # no second attempt, no warning
        pid_kernels.enable(["broken_residual"], strict=True)
        pid_kernels.registry.FAILED.clear()
        with pytest.raises(RuntimeError, match="no kernel image"):
            seams.gated_residual(x, x, x)
    finally:
        pid_kernels.disable(["broken_residual"])
        pid_kernels.REGISTRY.pop("broken_residual")
        pid_kernels.BACKENDS_OF.pop("broken_residual")
        pid_kernels.registry.FAILED.pop("broken_residual", None)


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(pid_kernels.REGISTRY))
def test_one_name_through_every_layer(name):
    """Op `name`: seam pid.seams.<name>, per backend the module pid_kernels/<backend>/<name>.py and the
    tests tests/pid_kernels/<backend>/test_<name>.py, one benchmark benchmarks/bench_<name>.py."""
    assert pid_kernels.REGISTRY[name] in pid_kernels.BACKENDS_OF[name].values()
    for backend, op in pid_kernels.BACKENDS_OF[name].items():
        assert op.seam == name and name in seams.SEAMS and op.backend == backend
        assert op.supports.__module__ == f"pid_kernels.{op.backend}.{name}"
        assert (REPO / "pid_kernels" / op.backend / f"{name}.py").is_file()
        assert (REPO / "tests" / "pid_kernels" / op.backend / f"test_{name}.py").is_file()
    assert (REPO / "benchmarks" / f"bench_{name}.py").is_file()


def test_an_op_with_several_backends_has_a_tuning_choice():
    """Every arch's table names the backend of each op that has several (pid_kernels.choose)."""
    from pid_kernels.tuning import ARCHES, config

    several = [name for name, backends in pid_kernels.BACKENDS_OF.items() if len(backends) > 1]
    assert "pit_pixel_mlp" in several
    for name in several:
        for arch in ARCHES:
            table = config(name, arch)
            assert table["backend"] in pid_kernels.BACKENDS_OF[name] and table["measured"] in ("yes", "no"), arch


def test_register_refuses_a_pid_kernels_op_named_after_something_else():
    def supports(x, gate, y):
        return []

    supports.__module__ = "pid_kernels.triton.sigma_gate"
    with pytest.raises(ValueError, match="lives in pid_kernels.triton.residual and replaces the seam of its own"):
        pid_kernels.register(KernelOp("residual", "gated_residual", "triton", supports, supports))
    with pytest.raises(ValueError, match="backend 'opencl'"):
        pid_kernels.register(KernelOp("gated_residual", "gated_residual", "opencl", supports, supports))
    assert "residual" not in pid_kernels.REGISTRY


def test_capability_refuses_older_gpus_with_the_reason(monkeypatch):
    assert Capability((8, 0), "why").reasons((9, 0)) == [] and Capability((8, 0), "why").reasons(None) == []
    assert Capability((8, 0), "why").reasons((7, 5)) == ["compute capability 7.5 < 8.0 (why)"]
    monkeypatch.setattr(registry, "compute_capability", lambda device: (7, 0))
    for name, op in pid_kernels.REGISTRY.items():
        minimum = (op.capability or registry.BACKEND_CAPABILITY[op.backend]).minimum
        (reason,) = op.device_reasons(torch.device("cuda"), build=False)
        assert reason.startswith(f"compute capability 7.0 < {minimum[0]}.{minimum[1]}"), name


def test_device_reasons_without_a_build_never_build(monkeypatch):
    builds = []
    real_load = loader._load
    monkeypatch.setattr(loader, "_load", lambda build: builds.append(build) or real_load(False))
    for op in pid_kernels.REGISTRY.values():
        op.device_reasons(torch.device("cuda"), build=False)
    assert True not in builds


def test_a_gpu_triton_refuses_runs_the_cuda_backend_and_says_why(monkeypatch):
    """pit_pixel_mlp on a compute capability 7.5 GPU: Triton needs 8.0, the CUDA C++ kernel runs."""
    monkeypatch.setattr(registry, "compute_capability", lambda device: (7, 5))
    monkeypatch.setattr(loader, "load_reasons", lambda build=True: [])
    choice = pid_kernels.choose("pit_pixel_mlp", torch.device("cuda"), build=False)
    assert choice.op.backend == "cuda" and choice.op.device_reasons(torch.device("cuda"), build=False) == []
    assert "picks triton" in choice.why and "compute capability 7.5 < 8.0" in choice.why
