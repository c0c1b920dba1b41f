"""pid_kernels/tuning: every architecture's table has the same keys, and every key is read."""

import importlib
from pathlib import Path

import pytest

from pid_kernels.tuning import ARCHES

OPS = Path(__file__).resolve().parents[2] / "pid_kernels"
# Shared Triton helpers read some keys on behalf of the op modules (BLOCK_K in gemm_block_k), and the
# registry reads "backend" and "measured" of the ops with several backends.
SHARED = (OPS / "triton" / "_common.py").read_text() + (OPS / "registry.py").read_text()


def tables(arch: str) -> dict[str, dict]:
    module = importlib.import_module(f"pid_kernels.tuning.{arch}")
    return {name: value for name, value in vars(module).items() if name.isupper() and isinstance(value, dict)}


def test_every_architecture_has_the_same_tables_and_keys():
    reference = {name: sorted(table) for name, table in tables(ARCHES[0]).items()}
    assert reference
    for arch in ARCHES[1:]:
        assert {name: sorted(table) for name, table in tables(arch).items()} == reference, arch


@pytest.mark.parametrize("table", sorted(tables(ARCHES[0])))
def test_every_key_is_read_by_its_op_module(table):
    """The table is asked for by name (config("<table>")) in one op module, or in the modules of
    one op's backends, which (or a shared helper) read every one of its keys."""
    readers = [path for path in sorted(OPS.glob("*/*.py")) if f'"{table.lower()}"' in path.read_text()]
    assert readers and len({path.name for path in readers}) == 1, f"{table}: asked for in {readers}"
    source = "".join(path.read_text() for path in readers) + SHARED
    unread = [key for key in tables(ARCHES[0])[table] if f'"{key}"' not in source]
    assert not unread, f"{table}: keys {unread} are not read by {[path.name for path in readers]}"
