"""The Triton fp8 GEMM: the emulation's result under the interpreter, fp8 tensor-core MMAs in
its PTX for sm_90 and sm_100 (compiled without a GPU)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from pid.quant.fp8 import quantize_rows, scaled_mm
from pid_kernels.runtime import interpreting

triton_gemm = pytest.importorskip("pid.quant.triton_gemm")


@pytest.mark.skipif(not (interpreting() or torch.cuda.is_available()), reason="needs a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_the_emulation(out_dtype, with_bias):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(2)
    a_q, a_scale = (t.to(device) for t in quantize_rows(torch.randn(131, 80, generator=gen)))  # ragged tiles
    w_q, w_scale = (t.to(device) for t in quantize_rows(torch.randn(144, 80, generator=gen)))
    bias = torch.randn(144, generator=gen).to(device, out_dtype) if with_bias else None
    ours = scaled_mm(a_q, a_scale, w_q, w_scale.view(-1), bias, out_dtype, backend="triton")
    emulated = scaled_mm(a_q, a_scale, w_q, w_scale.view(-1), bias, out_dtype, backend="emulate")
    # float32: summation order only; bf16: at most one rounding step apart.
    tolerance = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2**-7, atol=2**-7)}[out_dtype]
    torch.testing.assert_close(ours.float(), emulated.float(), **tolerance)


def test_refuses_non_fp8_operands():
    with pytest.raises(ValueError, match="must be float8_e4m3fn"):
        triton_gemm.triton_scaled_mm(torch.ones(2, 16), torch.ones(2, 1), torch.ones(4, 16), torch.ones(4), None,
                                     torch.float32)


def test_compiles_to_fp8_tensor_core_mmas():
    # Compiling for a GPU needs Triton's real front end: a child process without the interpreter.
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    code = "from pid.quant.triton_gemm import mma_instructions as m; import json; print(json.dumps([m(90), m(100)]))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sm90, sm100 = json.loads(result.stdout.strip().splitlines()[-1])
    assert sm90 and all("wgmma.mma_async" in line and "e4m3.e4m3" in line for line in sm90), sm90[:2]
    assert sm100 and all("tcgen05.mma" in line and "kind::f8f6f4" in line for line in sm100), sm100[:2]
