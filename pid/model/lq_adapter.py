"""The LQ adapter: turns the input latent into one feature per gated patch block.

latent [B, C, zH, zW] -> optional 2x2 unpatchify -> align to the patch grid
(nearest upsample, or fold when the latent is finer) -> conv, SiLU, conv ->
residual blocks -> one linear head per gated block (+ a PiT head on v1.5).
Parameter names match the release's `lq_proj.*` keys.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pid import seams
from pid.sampling.geometry import lq_alignment

GROUP_NORM_GROUPS = 4
# One gate value per token and channel (v1), or per token (v1.5).
GATE_TYPES = ("sigma_aware_per_token_per_dim", "sigma_aware_per_token")


class SigmaGate(nn.Module):
    """x + sigmoid([x, lq] W^T + b - exp(log_alpha) * sigma) * lq, see `pid.seams.sigma_gate`."""

    def __init__(self, gate_type: str, dim: int):
        super().__init__()
        if gate_type not in GATE_TYPES:
            raise ValueError(f"unknown lq_gate_type {gate_type!r}; valid: {sorted(GATE_TYPES)}")
        self.content_proj = nn.Linear(2 * dim, dim if gate_type == "sigma_aware_per_token_per_dim" else 1)
        self.log_alpha = nn.Parameter(torch.tensor(0.0))

    def lq_logit(self, lq: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The step-invariant half of the logit, lq W_lq^T + b - exp(log_alpha) * sigma, float32."""
        weight_lq = self._dense_weight(lq.dtype)[:, lq.shape[-1] :]
        logit = F.linear(lq, weight_lq, self.content_proj.bias).float()
        return logit - self.log_alpha.float().exp() * sigma.float().view(-1, 1, 1)

    def _dense_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """content_proj's weight as a dense tensor (pid.quant's FP8Linear stores it in e4m3)."""
        proj = self.content_proj
        return proj.dequantized_weight(dtype) if hasattr(proj, "dequantized_weight") else proj.weight

    def forward(self, x: torch.Tensor, lq: torch.Tensor, sigma: torch.Tensor, lq_logit=None) -> torch.Tensor:
        """With `lq_logit` (from `lq_logit`, once per decode) only the x half of the GEMM runs."""
        proj = self.content_proj
        if lq_logit is not None:
            return seams.sigma_gate_split(x, lq, self._dense_weight(x.dtype)[:, : x.shape[-1]], lq_logit)
        if getattr(proj, "mode", None) == "fp8":  # pid.quant: the gate's GEMM in fp8
            return seams.sigma_gate_fp8(x, lq, proj.weight, proj.weight_scale, proj.bias, self.log_alpha, sigma)
        return seams.sigma_gate(x, lq, self._dense_weight(x.dtype), proj.bias, self.log_alpha, sigma)


class LQFeatures:
    """The LQ feature of each gated patch block, computed when its gate asks for it.

    Holds the adapter's shared tokens [B, Li, hidden] instead of every head's output (seven
    [B, Li, C] tensors, 1.31 GiB at 4096² in bf16, alive for the whole decode); `features[i]`
    runs head i, the same GEMM on the same tokens as computing it once (a step-invariant
    [B, Li, hidden] x [hidden, C] product per gate and step). `keep` [B, 1, 1] scales each
    sample's features (the release's latent dropout)."""

    def __init__(self, tokens: torch.Tensor, heads: nn.ModuleList, keep=None):
        self.tokens, self.heads, self.keep = tokens, heads, keep

    def __len__(self) -> int:
        return len(self.heads)

    def __getitem__(self, index: int) -> torch.Tensor:
        feature = self.heads[index](self.tokens)
        return feature if self.keep is None else feature * self.keep

    def __iter__(self):
        return (self[index] for index in range(len(self)))

    def masked(self, keep: torch.Tensor) -> "LQFeatures":
        return LQFeatures(self.tokens, self.heads, keep)

    def select_tokens(self, index) -> "LQFeatures":
        """The features of tokens `index` only (a rank's band of the image)."""
        return LQFeatures(self.tokens[:, index], self.heads, self.keep)


def _conv3x3(in_ch: int, out_ch: int, padding_mode: str) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, padding_mode=padding_mode)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GroupNorm, SiLU, conv) twice, plus the skip."""

    def __init__(self, channels: int, padding_mode: str):
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(GROUP_NORM_GROUPS, channels),
            nn.SiLU(),
            _conv3x3(channels, channels, padding_mode),
            nn.GroupNorm(GROUP_NORM_GROUPS, channels),
            nn.SiLU(),
            _conv3x3(channels, channels, padding_mode),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def unpatchify_latent(latent: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, C*f*f, H, W] -> [B, C, H*f, W*f]; channel c*f*f + f*i + j goes to offset (i, j)."""
    batch, channels, height, width = latent.shape
    latent = latent.reshape(batch, channels // (factor * factor), factor, factor, height, width)
    latent = latent.permute(0, 1, 4, 2, 5, 3)
    return latent.reshape(batch, channels // (factor * factor), height * factor, width * factor)


class LQAdapter(nn.Module):
    def __init__(
        self,
        latent_channels: int,
        hidden_dim: int,
        out_dim: int,
        num_res_blocks: int,
        num_outputs: int,
        gate_type: str,
        padding_mode: str,
        patch_size: int,
        sr_scale: int,
        latent_down_factor: int,
        unpatchify_factor: int,
        pit_output: bool,
        aux_rgb_head: bool,
    ):
        super().__init__()
        if padding_mode not in ("zeros", "reflect", "replicate"):
            raise ValueError(f"lq_conv_padding_mode must be zeros, reflect or replicate, got {padding_mode!r}")
        self.unpatchify_factor = unpatchify_factor
        self.fold_factor, channels = lq_alignment(
            latent_channels, patch_size, sr_scale, latent_down_factor, unpatchify_factor
        )
        self.latent_proj = nn.Sequential(
            _conv3x3(channels, hidden_dim, padding_mode),
            nn.SiLU(),
            _conv3x3(hidden_dim, hidden_dim, padding_mode),
            *[ResBlock(hidden_dim, padding_mode) for _ in range(num_res_blocks)],
        )
        self.output_heads = nn.ModuleList(nn.Linear(hidden_dim, out_dim) for _ in range(num_outputs))
        self.pit_head = nn.Linear(hidden_dim, out_dim) if pit_output else None
        self.aux_patch_factor = patch_size // sr_scale
        self.lq_aux_rgb_head = (
            nn.Sequential(
                nn.LayerNorm(hidden_dim),
                nn.Linear(hidden_dim, hidden_dim),
                nn.SiLU(),
                nn.Linear(hidden_dim, 3 * self.aux_patch_factor**2),
            )
            if aux_rgb_head
            else None
        )
        self.gate_modules = nn.ModuleList(SigmaGate(gate_type, out_dim) for _ in range(num_outputs))

    def _align_to_grid(self, latent: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        if self.unpatchify_factor > 1:
            latent = unpatchify_latent(latent, self.unpatchify_factor)
        if self.fold_factor > 1:
            f = self.fold_factor
            batch, channels = latent.shape[:2]
            latent = latent.reshape(batch, channels, grid_hw[0], f, grid_hw[1], f).permute(0, 1, 3, 5, 2, 4)
            return latent.reshape(batch, channels * f * f, *grid_hw)
        if tuple(latent.shape[-2:]) != tuple(grid_hw):
            latent = F.interpolate(latent, size=grid_hw, mode="nearest")
        return latent

    def features(self, latent: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Shared adapter features as patch tokens [B, Li, hidden_dim]."""
        return self.latent_proj(self._align_to_grid(latent, grid_hw)).flatten(2).transpose(1, 2)

    def forward(self, latent: torch.Tensor, grid_hw: tuple[int, int]):
        """-> (the [B, Li, C] feature of each gated block as `LQFeatures`, the PiT feature or None)."""
        tokens = self.features(latent, grid_hw)
        return LQFeatures(tokens, self.output_heads), (self.pit_head(tokens) if self.pit_head is not None else None)

    def predict_lq_rgb(self, latent: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """The training-only auxiliary head: the low-res RGB image [B, 3, Hs*f, Ws*f]."""
        if self.lq_aux_rgb_head is None:
            raise RuntimeError("this network was built without the LQ aux RGB head (lq_aux_rgb_head=False)")
        tokens = self.features(latent, grid_hw)
        f = self.aux_patch_factor
        rgb = self.lq_aux_rgb_head(tokens).view(tokens.shape[0], *grid_hw, 3, f, f)
        return rgb.permute(0, 3, 1, 4, 2, 5).reshape(tokens.shape[0], 3, grid_hw[0] * f, grid_hw[1] * f)
