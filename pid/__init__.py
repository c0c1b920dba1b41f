"""pid: the PiD pixel-diffusion decoder, checkpoint-compatible with NVIDIA's release."""

from pid.accel.compile import CompileConfig, CompileReport, compile, revert
from pid.configs import RELEASED_CHECKPOINTS, released_config
from pid.io.images import to_pil, to_uint8
from pid.io.checkpoints import CheckpointMismatchError, load, save_safetensors
from pid.model.network import DecodeContext, PiDNet, StepConditioning, build_model
from pid.sampling.distilled import DISTILLED_T_LIST, Decoder

__version__ = "0.1.0"

__all__ = [
    "RELEASED_CHECKPOINTS",
    "CompileConfig",
    "CompileReport",
    "compile",
    "revert",
    "CheckpointMismatchError",
    "DISTILLED_T_LIST",
    "DecodeContext",
    "Decoder",
    "PiDNet",
    "StepConditioning",
    "build_model",
    "load",
    "released_config",
    "save_safetensors",
    "to_pil",
    "to_uint8",
]
