"""Package build. Metadata lives in pyproject.toml; this file only adds the optional
CUDA extension `pid_kernels._C` (csrc/), built when a CUDA toolchain and a CUDA build of
torch are present and skipped with a one-line message otherwise (also when its build fails).

torch is not a build requirement: build the extension with the environment's own torch,
`pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace`.

PID_CUDA_ARCHS      ";"-separated targets, default "90a;100a;120a" (plus compute_90 PTX)
PID_SKIP_CUDA_BUILD=1   never build the extension
PID_FORCE_CUDA_BUILD=1  fail instead of skipping when it cannot be built
"""

import glob
import os
import sys

from setuptools import setup

DEFAULT_CUDA_ARCHS = "90a;100a;120a"


def gencode_flags(archs: str) -> list[str]:
    """"90a;100a" -> machine code for each target, plus compute_90 PTX for GPUs not listed."""
    flags = [f"-gencode=arch=compute_{arch},code=sm_{arch}" for arch in archs.replace(",", ";").split(";") if arch]
    return flags + ["-gencode=arch=compute_90,code=compute_90"]


def _skip(reason: str):
    if os.environ.get("PID_FORCE_CUDA_BUILD") == "1":
        sys.exit(f"pid-kernels: PID_FORCE_CUDA_BUILD=1 but the CUDA extension cannot be built: {reason}")
    print(f"pid-kernels: skipping the CUDA extension ({reason}); its ops fall back to PyTorch", file=sys.stderr)
    return {}


def cuda_extension() -> dict:
    """setup() keywords that build pid_kernels._C, or {} when it is skipped."""
    if os.environ.get("PID_SKIP_CUDA_BUILD") == "1":
        return _skip("PID_SKIP_CUDA_BUILD=1")
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except ImportError:
        return _skip("torch is not importable here; install with --no-build-isolation")
    if torch.version.cuda is None:
        return _skip(f"torch {torch.__version__} is a CPU build")
    if CUDA_HOME is None:
        return _skip("no CUDA toolchain found (set CUDA_HOME)")
    here = os.path.dirname(os.path.abspath(__file__))
    sources = sorted(glob.glob(os.path.join("csrc", "*.cu"))) + [os.path.join("csrc", "bindings.cpp")]
    headers = sorted(glob.glob(os.path.join("csrc", "*.h")) + glob.glob(os.path.join("csrc", "*.cuh")))
    extension = CUDAExtension(
        "pid_kernels._C",
        sources,
        depends=headers,  # a header edit rebuilds; sdists ship them
        include_dirs=[os.path.join(here, "csrc")],
        # No -std: torch adds the C++ standard its headers need (C++20 from torch 2.10 on).
        extra_compile_args={
            "cxx": ["-O3"],
            "nvcc": ["-O3", *gencode_flags(os.environ.get("PID_CUDA_ARCHS", DEFAULT_CUDA_ARCHS))],
        },
    )

    class OptionalBuildExtension(BuildExtension):
        """A failed build (say nvcc and torch disagree on the CUDA version) leaves the
        package installable, its ops on the PyTorch references, unless the build is forced."""

        def run(self):
            try:
                super().run()
            except Exception as error:
                if os.environ.get("PID_FORCE_CUDA_BUILD") == "1":
                    raise
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                print(f"pid-kernels: the CUDA extension failed to build ({first_line}); its ops fall back to "
                      "PyTorch (PID_FORCE_CUDA_BUILD=1 makes this an error)", file=sys.stderr)

    return {"ext_modules": [extension], "cmdclass": {"build_ext": OptionalBuildExtension}}


setup(**cuda_extension())
