"""Launch configurations for Blackwell consumer (RTX 5090): reasoned from the hardware (100 KB smem/SM, fewer warps per SM than sm100), not measured.

One dict per op, named after the op in upper case. Each op module documents its keys.
"""
