"""pid_kernels/cuda/loader.py and setup.py: where the CUDA kernels come from, and the build switches."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import pid_kernels
from pid_kernels.cuda import loader as cuda_ext

REPO = Path(__file__).resolve().parents[3]
CUDA_OPS = {
    "rmsnorm_modulate": "rmsnorm_modulate",
    "gated_residual": "gated_residual",
    "gated_residual_rmsnorm_modulate": "gated_residual_rmsnorm_modulate",
    "pit_pixel_mlp": "pit_pixel_mlp",
    "to_image": "to_image",
}
OPERATORS = tuple(CUDA_OPS)


def test_status_names_the_path_in_effect():
    status = cuda_ext.status()
    assert status.path in ("AOT", "JIT", "unavailable") and str(status).startswith(status.path + ": ")
    if torch.version.cuda is None:
        assert not cuda_ext.load().available and "CPU build" in str(cuda_ext.load())


def test_ops_are_registered_with_their_seams():
    for name, seam in CUDA_OPS.items():
        op = pid_kernels.BACKENDS_OF[name]["cuda"]  # the CUDA C++ backend, whichever the tables choose
        assert (op.seam, op.backend) == (seam, "cuda")
    for name in OPERATORS:  # schemas, fakes and CPU references exist with or without the library
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pid_cuda::{name}", "CPU")


def test_built_extension_registers_cuda_kernels():
    status = cuda_ext.load()
    if not status.available:
        pytest.skip(f"the CUDA extension is not built here: {status}")
    assert cuda_ext.status() == status and status.path in ("AOT", "JIT")
    for name in OPERATORS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pid_cuda::{name}", "CUDA"), name


def production_args() -> dict:
    """Each CUDA op's seam arguments at 2048² (batch 1, bf16) as fake CUDA tensors: no GPU, no memory."""

    def empty(*shape):
        return torch.empty(*shape, dtype=torch.bfloat16, device="cuda")

    tokens, pixels = empty(1, 16384, 1536), empty(16384, 256, 16)
    token_shift, token_scale, token_gate = empty(1, 1, 9216).chunk(6, -1)[:3]
    pixel_shift, pixel_scale, pixel_gate = empty(16384, 256, 96).chunk(6, -1)[3:]
    mlp_weights = [empty(64, 16), empty(64), empty(16, 64), empty(16)]
    return {
        "rmsnorm_modulate": [tokens, empty(1536), token_shift, token_scale],
        "gated_residual": [pixels, pixel_gate, empty(16384, 256, 16)],
        "gated_residual_rmsnorm_modulate": [tokens, token_gate, empty(1, 16384, 1536), empty(1536), token_shift,
                                            token_scale],
        "pit_pixel_mlp": [pixels, empty(16), pixel_shift, pixel_scale, pixel_gate, *mlp_weights],
        "to_image": [empty(1, 3, 2048, 2048).float(), False],
    }


def test_production_shapes_are_supported_where_the_extension_loads():
    status = cuda_ext.load()
    with FakeTensorMode():
        reasons = {name: pid_kernels.BACKENDS_OF[name]["cuda"].supports(*args) for name, args in production_args().items()}
    for name, refused in reasons.items():
        if status.available:
            assert refused == [], name
        else:
            assert refused == [f"CUDA extension unavailable ({status})"], name


def _setup(env: dict) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env}
    return subprocess.run([sys.executable, "setup.py", "--name"], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=120)


def test_setup_skips_the_extension_in_one_line():
    result = _setup({"PID_SKIP_CUDA_BUILD": "1", "PID_FORCE_CUDA_BUILD": ""})
    assert result.returncode == 0 and result.stdout.strip().endswith("pid-kernels")
    skip_lines = [line for line in result.stderr.splitlines() if "skipping the CUDA extension" in line]
    assert skip_lines == [
        "pid-kernels: skipping the CUDA extension (PID_SKIP_CUDA_BUILD=1); its ops fall back to PyTorch"
    ]


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA torch can build the extension here")
def test_setup_forced_build_fails_loudly_without_cuda_torch():
    result = _setup({"PID_FORCE_CUDA_BUILD": "1", "PID_SKIP_CUDA_BUILD": ""})
    assert result.returncode != 0 and "cannot be built: torch" in result.stderr
