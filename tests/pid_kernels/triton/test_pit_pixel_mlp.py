"""pid_kernels/triton/pit_pixel_mlp.py: the PiT MLP half on tensor-core dots vs the seam's reference,
and the registry's choice between it and the CUDA C++ backend."""

import pytest
import torch

import pid
import pid_kernels
from kernel_testing import (
    DEVICE, assert_within_eager_error, fused_decode_calls, maybe_compiled, mlp_args, mlp_seam_args, per_pixel,
    with_dtypes,
)
from pid_kernels.runtime import interpreting
from pid_kernels.triton import pit_pixel_mlp as module
from tiny import tiny_inputs, tiny_net

# (tokens, pixels per patch, width, misaligned pixels): pixel counts that are not a multiple of
# the 32-pixel blocks of the tests (7 * 37 = 259), one pixel, a full patch of the release and the
# tiny configs' narrower pixels (zero-padded to the 16-wide K), and a misaligned pixel tensor.
CASES = {
    "ragged-259": (7, 37, 16, False),
    "one-pixel": (1, 1, 16, False),
    "p2_256": (2, 256, 16, False),
    "dp8": (3, 19, 8, False),
    "dp4": (5, 11, 4, False),
    "misaligned": (5, 19, 16, True),
}


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setenv("PID_TUNING_PIT_PIXEL_MLP", "BLOCK_P=32")


@with_dtypes
@pytest.mark.parametrize("case", CASES)
def test_within_eager_error(small_blocks, case, dtype):
    tokens, pixels_per_patch, width, misaligned = CASES[case]
    args = mlp_args(tokens, pixels_per_patch, misaligned, device=DEVICE, seed=len(case), width=width)
    assert per_pixel(module.supports)(*args) == []
    assert_within_eager_error(maybe_compiled(per_pixel(module.pit_pixel_mlp)), per_pixel(module.reference), args,
                              dtype, case)


@with_dtypes
def test_batched_image_of_odd_patch_grid(dtype):
    """Two 48x80 images (a 3 x 5 patch grid of 16 x 16 pixels each): the layout the model passes,
    modulation views of a [B*Li, P2, 96] tensor, pixels contiguous; the interpreter's large blocks
    (tests/conftest.py), the last one ragged."""
    args = mlp_args(tokens=2 * 3 * 5, pixels_per_patch=256, device=DEVICE, seed=5)
    assert_within_eager_error(per_pixel(module.pit_pixel_mlp), per_pixel(module.reference), args, dtype, "2x48x80")


def test_refusals(monkeypatch):
    args = mlp_seam_args(mlp_args())
    assert module.supports(*args) == []
    reasons = " ".join(module.supports(*mlp_seam_args(mlp_args(width=32))))
    assert "pixel width 32, hidden width 128" in reasons
    wrong = list(args)
    wrong[5] = wrong[5][:32]
    assert "fc1_bias must be" in " ".join(module.supports(*wrong))
    assert "dtype float64" in " ".join(module.supports(*[a.double() for a in args]))
    wrong = list(args)
    wrong[2] = torch.randn(7, 37, 32)[..., ::2]
    assert "shift is not contiguous over channels" in " ".join(module.supports(*wrong))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "CPU tensor" in " ".join(module.supports(*args))


def test_enabled_in_tiny_decode():
    """Every PiT block's MLP (Dp = 8) through the Triton backend, strictly, vs the reference decode."""
    net = tiny_net().to(DEVICE)
    inputs = [a.to(DEVICE) for a in tiny_inputs(net)]
    assert pid_kernels.REGISTRY[module.NAME].backend == "triton"
    assert fused_decode_calls(net, inputs, [module.NAME])[module.NAME] > 0


def test_tuning_table_chooses_the_backend(monkeypatch):
    """Triton by the tables; the CUDA C++ backend where the table names it and it can run; the
    table's pick even where neither runs (its reasons are the ones reported); Triton's refusal of
    the device hands the op to the CUDA C++ backend, saying why."""
    cuda_op = pid_kernels.BACKENDS_OF[module.NAME]["cuda"]
    choice = pid_kernels.choose(module.NAME, torch.device("cpu"), build=False)
    assert choice.op.backend == "triton" and "tuning table picks triton (not measured yet)" in choice.why
    monkeypatch.setattr(cuda_op.__class__, "device_reasons", lambda self, device, build=True: [])
    monkeypatch.setenv("PID_TUNING_PIT_PIXEL_MLP", "backend=cuda")
    assert pid_kernels.choose(module.NAME, torch.device("cpu")).op is cuda_op
    monkeypatch.setenv("PID_TUNING_PIT_PIXEL_MLP", "backend=opencl")
    with pytest.raises(ValueError, match="backend 'opencl' is not one of"):
        pid_kernels.choose(module.NAME, torch.device("cpu"))


def test_triton_refusing_the_device_falls_back_to_cuda(monkeypatch):
    triton_op = pid_kernels.BACKENDS_OF[module.NAME]["triton"]
    cuda_op = pid_kernels.BACKENDS_OF[module.NAME]["cuda"]
    refusals = {"triton": ["triton is not installed"], "cuda": []}
    monkeypatch.setattr(triton_op.__class__, "device_reasons",
                        lambda self, device, build=True: refusals[self.backend])
    choice = pid_kernels.choose(module.NAME, torch.device("cuda"))
    assert choice.op is cuda_op
    assert "picks triton (not measured yet), which cannot run here (triton is not installed): cuda instead" in choice.why
    refusals["cuda"] = ["CUDA extension unavailable"]
    assert pid_kernels.choose(module.NAME, torch.device("cuda")).op is triton_op


def test_compile_report_and_info_name_the_backend():
    net = tiny_net()
    pid.compile(net)
    try:
        report = net.pid_compile_report
        assert report.backends[module.NAME].startswith("triton: sm")
        assert f"backend of {module.NAME}: triton: " in str(report)
    finally:
        pid.revert(net)
    from pid.cli.info import accelerated_path_lines

    lines = accelerated_path_lines()
    (index,) = [i for i, line in enumerate(lines) if line.split()[:1] == [module.NAME]]
    assert "triton" in lines[index] and "backend triton: sm" in lines[index + 1]


@pytest.mark.gpu
@with_dtypes
@pytest.mark.parametrize("case", ["ragged-259", "p2_256", "misaligned", "dp8"])
def test_cuda_within_eager_error(case, dtype):
    """On a GPU with the arch table's BLOCK_P and the 16-bit tensor-core dots."""
    assert not interpreting()
    tokens, pixels_per_patch, width, misaligned = CASES[case]
    args = mlp_args(tokens * 64, pixels_per_patch, misaligned, device="cuda", seed=len(case), width=width)
    assert per_pixel(module.supports)(*args) == []
    assert_within_eager_error(maybe_compiled(per_pixel(module.pit_pixel_mlp)), per_pixel(module.reference), args,
                              dtype, case)
