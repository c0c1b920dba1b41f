"""Fused ops written in Triton, one module per op."""
