"""Launch configurations for Blackwell datacenter (B200/GB200): reasoned from the hardware (228 KB smem/SM, 5th-gen tensor cores), not measured.

One dict per op, named after the op in upper case. Each op module documents its keys.
"""
