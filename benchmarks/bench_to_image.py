"""Benchmark pid_kernels/to_image.py: [B, 3, S, S] in [-1, 1] -> uint8 [B, S, S, 3] (CUDA).

Cases at 1024², 2048² and 4096² output: to_image_<S> (float32 images, as the sampler
returns them, truncation as the release's writer), to_image_<S>_bf16 (bfloat16 images),
to_image_<S>_nearest (float32, round half to even). Bytes: the image read once, the
uint8 array written once. Implementations: pid_cuda, the eager reference, the reference
under torch.compile; outputs must be equal (error column 0).

Usage: python benchmarks/bench_to_image.py [--cases to_image_2048] [--runs 20] [--batch 1]
Rows go to benchmarks/results/to_image.csv (plot: .png). Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import sys

import torch

from memory_bound import RESOLUTIONS, Case, compiled, main


def _impls(round_to_nearest):
    from pid_kernels.cuda import to_image

    compiled_reference = compiled(to_image.reference)
    return {
        "pid_cuda": lambda images: to_image.to_image(images, round_to_nearest),
        "eager_reference": lambda images: to_image.reference(images, round_to_nearest),
        "compiled_reference": lambda images: compiled_reference(images, round_to_nearest),
    }


def case(resolution, dtype=torch.float32, round_to_nearest=False):
    def build(batch):
        shape = (batch, 3, resolution, resolution)

        def make():
            return [(torch.rand(shape, device="cuda") * 2.2 - 1.1).to(dtype)]

        element = torch.tensor([], dtype=dtype).element_size()
        return Case(make, bytes_moved=batch * 3 * resolution * resolution * (element + 1),
                    impls=_impls(round_to_nearest),
                    info={"x": "x".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""),
                          "rounding": "nearest" if round_to_nearest else "truncate"})

    return build


CASES = {
    **{f"to_image_{size}": case(size) for size in RESOLUTIONS},
    **{f"to_image_{size}_bf16": case(size, torch.bfloat16) for size in RESOLUTIONS},
    **{f"to_image_{size}_nearest": case(size, round_to_nearest=True) for size in RESOLUTIONS},
}

if __name__ == "__main__":
    sys.exit(main("to_image", CASES, __doc__))
