"""Launch configurations for Hopper (H100/H200): to be measured on the device; until then reasoned like the rest.

One dict per op, named after the op in upper case. Each op module documents its keys.
"""
