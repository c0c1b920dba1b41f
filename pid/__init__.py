"""pid: the PiD pixel-diffusion decoder, checkpoint-compatible with NVIDIA's release."""

from pid.accel.compile import CompileConfig, CompileReport, compile, revert
from pid.configs import RELEASED_CHECKPOINTS, released_config
from pid.io.images import to_pil, to_uint8
from pid.io.checkpoints import CheckpointMismatchError, ConfigUndeterminedError, load, save_safetensors
from pid.model.network import DecodeContext, PiDNet, StepConditioning, build_model
from pid.sampling.checks import NonFiniteError, default_device, default_dtype
from pid.sampling.distilled import DISTILLED_T_LIST, Decoder
from pid.sampling.examples import example_inputs
from pid.sampling.memory import DecodeOutOfMemoryError

__version__ = "0.1.0"

__all__ = [
    "RELEASED_CHECKPOINTS",
    "CompileConfig",
    "CompileReport",
    "compile",
    "revert",
    "CheckpointMismatchError",
    "ConfigUndeterminedError",
    "DecodeOutOfMemoryError",
    "NonFiniteError",
    "default_device",
    "default_dtype",
    "example_inputs",
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
