"""End-to-end decode benchmark: paths (a)-(f), 1024²/2048²/4096², batch 1 and 4, 4 steps, bf16.

A thin wrapper around `pid.bench` (also `pid bench` from an installed package);
rows are appended to benchmarks/results/decode.csv and the plot written to
benchmarks/results/decode.png. See benchmarks/README.md for the paths, the
columns and the targets.

Usage: python benchmarks/bench_decode.py [--sizes 2048] [--batches 1] [--paths abcd]
                                         [--official-path third_party/PiD] [--quick] ...
Without a CUDA GPU it runs a reduced network on the CPU and says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pid.bench import decode as bench  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    sys.exit(bench.main(prog="benchmarks/bench_decode.py", out_dir=RESULTS))
