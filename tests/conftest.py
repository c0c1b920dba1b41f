"""Shared fixtures: the golden vectors from the official implementation (../shared/golden)."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Without a GPU, Triton kernels run under the interpreter; it must be chosen before
# triton is first imported.
try:
    import torch as _torch_probe

    if not _torch_probe.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
        # The interpreter runs programs one after another in Python: pit_pixel_mlp's 128-pixel
        # blocks would make every decode test spend minutes in it (its own tests pick blocks).
        os.environ.setdefault("PID_TUNING_PIT_PIXEL_MLP", "BLOCK_P=2048")
except ImportError:  # pragma: no cover
    pass

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(os.environ.get("PID_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
FORWARD_CASES = ("v1_tiny", "v15_tiny", "sr8_tiny", "v1_flux2_tiny")
SAMPLER_CASES = ("v1_tiny", "v15_tiny")


def golden_available() -> bool:
    return (GOLDEN_DIR / "README.md").is_file()


def require_golden() -> None:
    """Skip without the golden vectors, except in CI, where their absence is a failure."""
    if golden_available():
        return
    message = f"golden vectors not found at {GOLDEN_DIR} (set PID_GOLDEN_DIR)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


class GoldenCase:
    def __init__(self, name: str):
        from safetensors.torch import load_file

        self.name = name
        self.meta = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
        self.tensors = load_file(str(GOLDEN_DIR / f"{name}.safetensors"))

    @property
    def config(self) -> dict:
        return self.meta["config"]

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.tensors.items() if k.startswith("net.")}

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]


@pytest.fixture(scope="session")
def golden():
    """golden(name) -> GoldenCase, cached for the session."""
    cache: dict[str, GoldenCase] = {}

    def get(name: str) -> GoldenCase:
        require_golden()
        if name not in cache:
            cache[name] = GoldenCase(name)
        return cache[name]

    return get


def assert_golden_close(ours: torch.Tensor, ref: torch.Tensor, what: str = "") -> None:
    """The golden README's fp32 rule: max|d| <= 2e-4 max|ref| and ||d||_2 <= 1e-5 ||ref||_2."""
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    diff = (ours.double() - ref.double())
    max_ratio = (diff.abs().max() / ref.double().abs().max()).item()
    l2_ratio = (diff.norm() / ref.double().norm()).item()
    assert max_ratio <= 2e-4 and l2_ratio <= 1e-5, f"{what}: max ratio {max_ratio:.3e}, L2 ratio {l2_ratio:.3e}"


@pytest.fixture(autouse=True)
def _single_thread_determinism():
    """The goldens were computed single-threaded; keep runs reproducible."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where CUDA is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
