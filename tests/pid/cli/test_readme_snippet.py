"""The README's Python snippet runs as written, with a small random network standing in for the
released checkpoint (which is not downloaded here)."""

from pathlib import Path

import torch
from PIL import Image

import pid
from tiny import tiny_net

README = Path(__file__).resolve().parents[3] / "README.md"


def _snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Using it"):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


def test_readme_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    loaded = {}

    def load(source, dtype=None, device=None, **kwargs):
        loaded.update(source=source, dtype=dtype, device=device)
        return tiny_net().to(device=device, dtype=pid.sampling.checks.as_dtype(dtype))

    monkeypatch.setattr(pid, "load", load)
    monkeypatch.chdir(tmp_path)
    exec(compile(_snippet(), str(README), "exec"), {})
    device = pid.default_device()
    assert loaded["source"] in pid.RELEASED_CHECKPOINTS and loaded["device"] == device
    assert loaded["dtype"] == (torch.bfloat16 if device.type == "cuda" else torch.float32)
    assert Image.open(tmp_path / "out.png").size == ((2048, 2048) if device.type == "cuda" else (256, 256))
    assert capsys.readouterr().out.startswith("seed ")
