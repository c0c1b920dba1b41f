"""Fused ops backed by the CUDA C++ extension (csrc/), one module per op, and the extension loader."""
