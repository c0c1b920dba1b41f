"""`pid.compile(model)`: the same PiDNet or Decoder, faster; `pid.revert(model)` undoes it.

Every optimization is one switch of `CompileConfig`; None means "on where it can
run" (the device, the installed packages, and for `precompute_gate_lq` a GPU
measurement nobody has made yet, so it stays off). Fused ops ask their
`KernelOp.device_reasons`. What was applied, and why anything was not, is attached
to the model as `model.pid_compile_report`. Inputs a fused op refuses at run time
(CPU tensors, odd dtypes, shapes) fall back to the reference, so a compiled model
runs wherever the eager one does; the state_dict keys never change.

Fused ops switch process-wide seams (`pid.seams`); they are reference-counted, so
reverting one model leaves the ops another compiled model still uses.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from pid.accel.graphs import DecodeGraphs, graph_reasons
from pid.model.network import PiDNet
from pid.sampling.distilled import Decoder

_op_users: dict[str, int] = {}
UNMEASURED_GATE_PRECOMPUTE = "off by default until a GPU run compares it with the fused sigma_gate kernel"


@dataclass
class CompileConfig:
    """One switch per optimization; None means "on where it can run"."""

    # Fused op name (pid_kernels.REGISTRY) -> on/off; unnamed ops default to on where usable.
    fused_ops: dict[str, bool] = field(default_factory=dict)
    # Decoder: caption projection, LQ features, tables and all steps' adaLN once per decode.
    hoist_step_invariant: bool = True
    # Decoder: capture whole decodes as CUDA graphs.
    cuda_graphs: Optional[bool] = None
    # Compute the latent half of every gate GEMM once per decode (halves the per-step gate
    # FLOPs, but bypasses the fused sigma_gate kernel); None: off until measured against it.
    precompute_gate_lq: Optional[bool] = None
    # torch.compile(fullgraph=True) of the per-step network glue, with this backend.
    compile_glue: Optional[bool] = None
    glue_backend: str = "inductor"
    # "fp8": quantize the network in place by the pid.quant policy (refused on GPUs without fp8
    # tensor cores; a CPU runs the emulation; pid.revert keeps it); None keeps the weights.
    precision: Optional[str] = None


@dataclass
class CompileReport:
    applied: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    # Fused ops with several backends: op name -> "<backend>: why it runs" (pid_kernels.choose).
    backends: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = ["applied: " + (", ".join(self.applied) or "nothing")]
        lines += [f"not applied: {name}: {'; '.join(reasons)}" for name, reasons in self.skipped.items()]
        lines += [f"backend of {name}: {why}" for name, why in self.backends.items()]
        return "\n".join(lines)


def _glue_reasons(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return [f"{device.type} device (compiling the glue pays off on a GPU; switch it on explicitly to try)"]
    installed = importlib.util.find_spec("triton") is not None
    return [] if installed else ["triton is not installed (inductor needs it on a GPU)"]


def _network_reasons(net: PiDNet, op_name: str) -> list[str]:
    """The `*_fp8` ops serve only fp8 layers: on a network without one nothing would call them."""
    if not op_name.endswith("_fp8"):
        return []
    from pid.quant.linear import FP8Linear

    if any(isinstance(module, FP8Linear) for module in net.modules()):
        return []
    return ["the network has no fp8 layers (quantize it: CompileConfig(precision='fp8'))"]


def _switch(name: str, wanted: Optional[bool], reasons: list[str], report: CompileReport) -> bool:
    if wanted is False:
        report.skipped[name] = ["switched off in CompileConfig"]
        return False
    if reasons and wanted is None:
        report.skipped[name] = reasons
        return False
    report.applied.append(name)
    return True


def _compile_net(net: PiDNet, config: CompileConfig, report: CompileReport) -> dict:
    import pid_kernels

    unknown = sorted(set(config.fused_ops) - set(pid_kernels.REGISTRY))
    if unknown:
        raise KeyError(f"CompileConfig.fused_ops names unknown ops {unknown}; registered: {sorted(pid_kernels.REGISTRY)}")
    state = {"ops": []}
    for name in sorted(pid_kernels.REGISTRY):
        choice = pid_kernels.choose(name, net.device)
        if choice.why:  # an op with several backends: which one runs, and why
            report.backends[name] = f"{choice.op.backend}: {choice.why}"
        reasons = choice.op.device_reasons(net.device) + _network_reasons(net, name)
        if _switch(f"{choice.op.backend} op {name}", config.fused_ops.get(name), reasons, report):
            if _op_users.get(name, 0) == 0:
                pid_kernels.enable([name], strict=False, device=net.device)
            _op_users[name] = _op_users.get(name, 0) + 1
            state["ops"].append(name)
    state["precompute_gate_lq"] = net.precompute_gate_lq
    net.precompute_gate_lq = _switch(
        "gate latent-half precompute", config.precompute_gate_lq, [UNMEASURED_GATE_PRECOMPUTE], report
    )
    if _switch("torch.compile of the glue", config.compile_glue, _glue_reasons(net.device), report):
        net.pixel_features = torch.compile(
            PiDNet.pixel_features.__get__(net), fullgraph=True, dynamic=False, backend=config.glue_backend
        )
    return state


def compile(model: Union[PiDNet, Decoder], config: Optional[CompileConfig] = None):
    """Apply every usable optimization to `model` in place and return it, with a report."""
    import pid_kernels

    config = config or CompileConfig()
    if getattr(model, "_pid_compile_state", None) is not None:
        revert(model)
    report = CompileReport()
    net = model.net if isinstance(model, Decoder) else model
    if not isinstance(net, PiDNet):
        raise TypeError(f"pid.compile takes a PiDNet or a pid.Decoder, got {type(model).__name__}")
    if config.precision is not None:
        from pid.quant.switch import compile_precision

        compile_precision(net, config.precision, report)
    state = {"net": _compile_net(net, config, report)}
    if isinstance(model, Decoder):
        state["hoist"] = model.hoist_step_invariant
        model.hoist_step_invariant = _switch("step-invariant hoisting", config.hoist_step_invariant, [], report)
        if _switch("CUDA graphs", config.cuda_graphs, graph_reasons(net.device), report):
            model.graphs = DecodeGraphs(fused_ops=pid_kernels.enabled, failed_ops=pid_kernels.failed)
    model._pid_compile_state = state
    model.pid_compile_report = report
    return model


def revert(model: Union[PiDNet, Decoder]):
    """Undo `pid.compile(model)`; a model that was never compiled is returned unchanged."""
    import pid_kernels

    state = getattr(model, "_pid_compile_state", None)
    if state is None:
        return model
    net = model.net if isinstance(model, Decoder) else model
    for name in state["net"]["ops"]:
        _op_users[name] -= 1
        if _op_users[name] == 0:
            pid_kernels.disable([name])
    if "pixel_features" in net.__dict__:
        del net.pixel_features
    net.precompute_gate_lq = state["net"]["precompute_gate_lq"]
    if isinstance(model, Decoder):
        model.hoist_step_invariant = state["hoist"]
        model.graphs = None
    model._pid_compile_state = None
    model.pid_compile_report = None
    return model
