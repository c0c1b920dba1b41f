"""pid-kernels' ComfyUI node pack: copy or symlink this folder into ComfyUI's custom_nodes/
(with `pid-kernels` installed in ComfyUI's Python). See README.md next to this file."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
