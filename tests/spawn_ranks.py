"""Run a function on N local gloo ranks in spawned processes, bounded in time."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _entry(rank: int, world: int, port: int, out_dir: str, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    out = Path(out_dir)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world)
        torch.save(fn(*args), out / f"{rank}.pt")
    except BaseException:
        (out / f"{rank}.err").write_text(traceback.format_exc())
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_on_ranks(world: int, fn, *args, timeout: float = 120.0) -> list:
    """fn(*args) on every rank of a fresh gloo group of `world` processes -> each rank's
    return value. A rank that raises fails the call with its traceback; a group still running
    after `timeout` seconds is killed and fails it."""
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as out_dir:
        port = free_port()
        processes = [context.Process(target=_entry, args=(r, world, port, out_dir, fn, args)) for r in range(world)]
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        stuck = [process for process in processes if process.is_alive()]
        for process in stuck:
            process.kill()
            process.join()
        errors = sorted(Path(out_dir).glob("*.err"))
        if errors:
            raise AssertionError("\n".join(f"rank {e.stem}:\n{e.read_text()}" for e in errors))
        if stuck:
            raise AssertionError(f"{len(stuck)} of {world} ranks still running after {timeout} s: killed")
        return [torch.load(Path(out_dir) / f"{r}.pt", weights_only=False) for r in range(world)]
