"""The Triton sage fp8 attention: the reference's result under the interpreter, int8 and e4m3
tensor-core MMAs in its PTX for sm_90 and sm_100 (compiled without a GPU)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from pid.quant.attention import RECIPES, attention_core
from pid_kernels.runtime import interpreting

triton_attention = pytest.importorskip("pid.quant.triton_attention")


@pytest.mark.skipif(not (interpreting() or torch.cuda.is_available()), reason="needs a GPU or TRITON_INTERPRET=1")
@pytest.mark.parametrize("length,head_dim,masked", [(300, 64, True), (97, 72, False)])
def test_matches_the_reference(length, head_dim, masked):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(2, 3, length, head_dim, generator=gen).to(device) for _ in range(3))
    key_mask = None
    if masked:
        key_mask = torch.ones(2, length, dtype=torch.bool, device=device)
        key_mask[1, :150] = False  # sample 1's whole first key block hidden
        key_mask = key_mask[:, None, None, :]
    expected = attention_core(q, k + 0.7, v, key_mask, RECIPES["sage"])
    torch.testing.assert_close(triton_attention.triton_attention_core(q, k + 0.7, v, key_mask), expected,
                               rtol=1e-5, atol=1e-5)


def test_only_the_sage_recipe():
    q = torch.zeros(1, 1, 4, 64)
    with pytest.raises(ValueError, match="sage recipe only"):
        triton_attention.triton_attention_core(q, q, q, None, RECIPES["fa3"])


def test_compiles_to_int8_and_fp8_tensor_core_mmas():
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    code = ("from pid.quant.triton_attention import mma_instructions as m; import json; "
            "print(json.dumps([m(90), m(100, head_dim=72)]))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sm90, sm100 = (" ".join(lines) for lines in json.loads(result.stdout.strip().splitlines()[-1]))
    assert "wgmma.mma_async" in sm90 and ".s32.s8.s8" in sm90 and ".f32.e4m3.e4m3" in sm90
    assert "tcgen05.mma" in sm100 and "kind::i8" in sm100 and "kind::f8f6f4" in sm100
