"""Where a local Hugging Face hub cache keeps repositories; nothing here downloads."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dirs() -> list[Path]:
    """Hub cache folders, in the order huggingface_hub itself prefers them."""
    dirs: list[Path] = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]).expanduser())
    if os.environ.get("HF_HOME"):
        dirs.append(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    if os.environ.get("XDG_CACHE_HOME"):
        dirs.append(Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub")
    dirs.append(Path("~/.cache/huggingface/hub").expanduser())
    return list(dict.fromkeys(dirs))


def repo_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def snapshots(repo_dir: Path) -> list[Path]:
    """Snapshot folders of a cached repo, the one `refs/main` names first, then newest first."""
    snapshot_root = repo_dir / "snapshots"
    if not snapshot_root.is_dir():
        return []
    ordered: list[Path] = []
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        named = snapshot_root / ref.read_text().strip()
        if named.is_dir():
            ordered.append(named)
    others = sorted((p for p in snapshot_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    ordered.extend(p for p in others if p not in ordered)
    return ordered
