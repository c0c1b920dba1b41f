"""Adapters to the host applications PiD users work in (diffusers pipelines; the ComfyUI node
pack lives in integrations/comfyui/ at the repository root)."""
