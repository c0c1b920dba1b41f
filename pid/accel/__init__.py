"""`pid.compile` and whole-decode CUDA graphs: the only place where the seams meet the kernels."""
