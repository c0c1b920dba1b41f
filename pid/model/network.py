"""PiDNet: the Pixel-diffusion Decoder network, checkpoint-compatible with the release.

A PixelDiT-T2I (MM-DiT patch blocks + PiT pixel blocks) with an LQ adapter that
injects the latent through sigma-aware gates. The work of one call is split in
three so a sampler can hoist what does not change between steps:

- `prepare(...)`: caption projection, LQ adapter features, RoPE and pixel
  position tables (step-invariant) -> `DecodeContext`;
- `timestep_conditioning(t)`: t embedding and every block's adaLN vectors
  (one batched call can cover all steps of a decode) -> `StepConditioning`;
- `velocity(x_t, context, conditioning)`: the per-step work.

`forward(x_t, t, y, lq_latent=..., degrade_sigma=...)` is the release's contract
(t already multiplied by 1000) built from the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from pid import seams
from pid.accel.kernels import enable_forced_triton
from pid.model.blocks import MMDiTBlock, PiTBlock, RMSNorm
from pid.configs import resolve_config
from pid.model.lq_adapter import LQAdapter, SigmaGate
from pid.model.positions import TIMESTEP_FEATURES, pixel_position_table, rope_2d, rope_text, timestep_embedding
from pid.sampling.checks import check_forward_inputs
from pid.sampling.geometry import geometry_from_config


@dataclass
class DecodeContext:
    """Step-invariant tensors of one decode (one batch, one image size, one caption set)."""

    image_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    text_tokens: torch.Tensor  # [B, Lt, C] projected captions + learned positions
    txt_key_mask: Optional[torch.Tensor]  # [B, Lt] bool, True = attend; None = attend to all
    lq_features: Any  # LQFeatures: lq_features[i] is gated block i's [B, Li, C], computed when asked
    pit_lq_feature: Optional[torch.Tensor]  # [B, Li, C] (v1.5) or None
    degrade_sigma: torch.Tensor  # [B] float32
    patch_rope: tuple  # (cos, sin) [Li, Dh/2]
    text_rope: Optional[tuple]  # (cos, sin) [Lt, Dh/2]
    pixel_rope: tuple  # (cos, sin) [Li, Da/2]
    pixel_positions: torch.Tensor  # [H*W, Dp] in the compute dtype
    # With PiDNet.precompute_gate_lq: each gate's step-invariant logit half [B, Li, N] float32
    # (patch-block gates, then the PiT gate on v1.5); None runs the whole gate GEMM per step.
    gate_lq_logits: Optional[list] = None


@dataclass
class StepConditioning:
    """Timestep-dependent vectors: t embedding and each patch block's adaLN output."""

    t_emb: torch.Tensor  # [N, 1, C]
    block_modulation: list  # per patch block: (image [N, 1, 6C], text [N, 1, 6C])

    def rows(self, start: int, stop: int) -> "StepConditioning":
        """The conditioning of samples start..stop-1 (used to split an all-steps batch)."""
        return StepConditioning(
            self.t_emb[start:stop], [(img[start:stop], txt[start:stop]) for img, txt in self.block_modulation]
        )


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, features: int = TIMESTEP_FEATURES):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t).to(self.mlp[0].weight.dtype))


class TokenProjection(nn.Module):
    """Linear projection, optionally followed by RMSNorm (the caption embedder)."""

    def __init__(self, in_dim: int, out_dim: int, norm: bool = False):
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)
        self.norm = RMSNorm(out_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        return self.norm(x) if self.norm is not None else x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out_channels: int):
        super().__init__()
        self.norm = RMSNorm(dim)
        self.linear = nn.Linear(dim, out_channels)


def _check_supported(config: Mapping[str, Any]) -> None:
    """Refuse constructor options that no released checkpoint uses and we do not build."""
    unsupported = {
        "lq_inject_mode": ("controlnet",),
        "lq_in_channels": (0,),
        "enable_ed": (False,),
        "lq_aux_rgb_head_latent_block_idx": (-1,),
        "in_channels": (3,),
    }
    for key, allowed in unsupported.items():
        if config[key] not in allowed:
            raise NotImplementedError(
                f"{key}={config[key]!r} is not supported (the released checkpoints all use {allowed[0]!r})"
            )
    if config["rope_mode"] not in ("ntk_aware", "original"):
        raise ValueError(f"rope_mode must be 'ntk_aware' or 'original', got {config['rope_mode']!r}")
    if config["lq_latent_channels"] <= 0:
        raise ValueError("lq_latent_channels must be > 0: PiD decodes latents")


class PiDNet(nn.Module):
    """The PiD network. Build it with `pid.build_model(config)` or `PiDNet(**kwargs)`.

    Config keys the release accepts but inference never reads are listed, with the
    reason, in `pid.configs.INERT_KEYS`.
    """

    def __init__(self, **config: Any):
        super().__init__()
        config = resolve_config(config)
        _check_supported(config)
        self.config = config
        hidden = config["hidden_size"]
        self.hidden_size = hidden
        self.patch_size = config["patch_size"]
        self.num_heads = config["num_groups"]
        self.txt_max_length = config["txt_max_length"]
        self.sr_scale = config["sr_scale"]
        self.latent_channels = config["lq_latent_channels"]
        self.latent_down_factor = config["latent_spatial_down_factor"]
        self.pixel_dim = config["pixel_hidden_size"]
        self.pixel_attn_dim = config["pixel_attn_hidden_size"] or hidden
        self.pixel_heads = config["pixel_num_groups"] or self.num_heads
        self.lq_interval = config["lq_interval"]
        self.rope_ref_grid = (config["rope_ref_h"] // self.patch_size, config["rope_ref_w"] // self.patch_size)
        self.geometry = geometry_from_config(config)

        self.pixel_embedder = TokenProjection(config["in_channels"], self.pixel_dim)
        self.s_embedder = TokenProjection(config["in_channels"] * self.patch_size**2, hidden)
        self.t_embedder = TimestepEmbedder(hidden)
        self.y_embedder = TokenProjection(config["txt_embed_dim"], hidden, norm=True)
        self.y_pos_embedding = nn.Parameter(torch.zeros(1, self.txt_max_length, hidden))
        self.patch_blocks = nn.ModuleList(MMDiTBlock(hidden, self.num_heads) for _ in range(config["patch_depth"]))
        self.pixel_blocks = nn.ModuleList(
            PiTBlock(self.pixel_dim, hidden, self.patch_size, self.pixel_attn_dim, self.pixel_heads)
            for _ in range(config["pixel_depth"])
        )
        self.final_layer = FinalLayer(self.pixel_dim, config["in_channels"])
        num_gated_blocks = -(-config["patch_depth"] // self.lq_interval)
        self.lq_proj = LQAdapter(
            latent_channels=self.latent_channels,
            hidden_dim=config["lq_hidden_dim"],
            out_dim=hidden,
            num_res_blocks=config["lq_num_res_blocks"],
            num_outputs=num_gated_blocks,
            gate_type=config["lq_gate_type"],
            padding_mode=config["lq_conv_padding_mode"],
            patch_size=self.patch_size,
            sr_scale=self.sr_scale,
            latent_down_factor=self.latent_down_factor,
            unpatchify_factor=config["lq_latent_unpatchify_factor"],
            pit_output=config["pit_lq_inject"],
            aux_rgb_head=config["lq_aux_rgb_head"],
        )
        self.pit_lq_gate = SigmaGate(config["lq_gate_type"], hidden) if config["pit_lq_inject"] else None
        # Set by pid.compile: prepare() computes the latent half of every gate GEMM once per decode.
        self.precompute_gate_lq = False
        self._table_cache: dict = {}
        # PID_FORCE_TRITON=1 switches the Triton ops on here, not at `import pid`.
        enable_forced_triton()

    # ---- geometry -------------------------------------------------------------------
    def expected_latent_shape(self, image_hw) -> tuple[int, int, int]:
        """(C, zH, zW) of the latent that decodes to an image of size image_hw (checked)."""
        return self.geometry.latent_shape(image_hw)

    def image_size_for_latent(self, latent_hw) -> tuple[int, int]:
        """(H, W) that a latent grid (zH, zW) decodes to (checked)."""
        return self.geometry.image_hw_for_latent(latent_hw)

    # A parameter pid.quant never quantizes (it swaps Linears only), so it keeps the model dtype.
    @property
    def dtype(self) -> torch.dtype:
        return self.y_pos_embedding.dtype

    @property
    def device(self) -> torch.device:
        return self.y_pos_embedding.device

    # ---- step-invariant tables ------------------------------------------------------
    def _cached(self, key, build):
        if torch.compiler.is_compiling():
            return build()
        if key not in self._table_cache:
            self._table_cache[key] = build()
        return self._table_cache[key]

    def _rope_tables(self, grid_hw, text_len, device):
        ntk = self.config["rope_mode"] == "ntk_aware"
        patch_head_dim = self.hidden_size // self.num_heads
        patch_rope = self._cached(
            ("patch_rope", grid_hw, device),
            lambda: rope_2d(patch_head_dim, *grid_hw, *self.rope_ref_grid, ntk_aware=ntk, device=device),
        )
        pixel_rope = self._cached(
            ("pixel_rope", grid_hw, device),
            lambda: rope_2d(
                self.pixel_attn_dim // self.pixel_heads, *grid_hw, *self.rope_ref_grid, ntk_aware=ntk, device=device
            ),
        )
        text_rope = None
        if self.config["use_text_rope"]:
            text_rope = self._cached(
                ("text_rope", text_len, device),
                lambda: rope_text(patch_head_dim, text_len, self.config["text_rope_theta"], device=device),
            )
        return patch_rope, text_rope, pixel_rope

    def _pixel_positions(self, image_hw, device, dtype):
        return self._cached(
            ("pixel_positions", image_hw, device, dtype),
            lambda: pixel_position_table(self.pixel_dim, *image_hw, device=device, dtype=dtype, band_pixels=seams.PIXEL_CHUNK),
        )

    # ---- the three stages -------------------------------------------------------------
    def prepare(
        self,
        y: torch.Tensor,
        lq_latent: torch.Tensor,
        degrade_sigma: torch.Tensor,
        image_hw: tuple[int, int],
        caption_mask: Optional[torch.Tensor] = None,
        lq_mask: Optional[torch.Tensor] = None,
    ) -> DecodeContext:
        """Step-invariant work of a decode. y [B, L, txt_dim], lq_latent [B, C, zH, zW], sigma [B];
        lq_mask [B] scales each sample's LQ features (the release's latent dropout)."""
        grid_hw = (image_hw[0] // self.patch_size, image_hw[1] // self.patch_size)
        text_len = min(y.shape[1], self.txt_max_length)
        compute_dtype = self.dtype
        text_tokens = self.y_embedder(y[:, :text_len].to(compute_dtype))
        text_tokens = text_tokens + self.y_pos_embedding[:, :text_len].to(text_tokens.dtype)
        lq_features, pit_lq_feature = self.lq_proj(lq_latent.to(compute_dtype), grid_hw)
        if lq_mask is not None:
            keep = lq_mask.to(compute_dtype).view(-1, 1, 1)
            lq_features = lq_features.masked(keep)
            pit_lq_feature = None if pit_lq_feature is None else pit_lq_feature * keep
        patch_rope, text_rope, pixel_rope = self._rope_tables(grid_hw, text_len, y.device)
        txt_key_mask = None if caption_mask is None else caption_mask[:, :text_len].bool()
        gate_lq_logits = None
        if self.precompute_gate_lq:
            gates = [*self.lq_proj.gate_modules, *([self.pit_lq_gate] if self.pit_lq_gate is not None else [])]
            features = [*lq_features, *([pit_lq_feature] if pit_lq_feature is not None else [])]
            gate_lq_logits = [gate.lq_logit(feature, degrade_sigma) for gate, feature in zip(gates, features)]
        return DecodeContext(
            gate_lq_logits=gate_lq_logits,
            image_hw=tuple(image_hw),
            grid_hw=grid_hw,
            text_tokens=text_tokens,
            txt_key_mask=txt_key_mask,
            lq_features=lq_features,
            pit_lq_feature=pit_lq_feature,
            degrade_sigma=degrade_sigma.float().reshape(-1),
            patch_rope=patch_rope,
            text_rope=text_rope,
            pixel_rope=pixel_rope,
            pixel_positions=self._pixel_positions(tuple(image_hw), y.device, compute_dtype),
        )

    def timestep_conditioning(self, t: torch.Tensor) -> StepConditioning:
        """t (x1000) [N] -> t embedding and every patch block's adaLN vectors for N samples."""
        t_emb = self.t_embedder(t.reshape(-1)).unsqueeze(1)
        condition = F.silu(t_emb)
        return StepConditioning(t_emb, [block.modulation(condition) for block in self.patch_blocks])

    def velocity(self, x_t: torch.Tensor, context: DecodeContext, conditioning: StepConditioning) -> torch.Tensor:
        """The per-step network work: x_t [B, 3, H, W] -> velocity [B, 3, H, W]."""
        final = self.final_layer
        return seams.pixels_to_image(
            self.pixel_features(x_t, context, conditioning),
            final.norm.weight,
            final.linear.weight,
            final.linear.bias,
            context.image_hw,
            self.patch_size,
        )

    def unembed_update(self, pixels, image_hw, x_t, t, t_next, noise):
        """Final layer + sampler step (seam `unembed_update`): pixel tokens [B*Li, P2, Dp] and
        x_t [B, 3, H, W] at t -> the next x_t at t_next with `noise`, or x0 when noise is None."""
        final = self.final_layer
        return seams.unembed_update(
            pixels, final.norm.weight, final.linear.weight, final.linear.bias, image_hw, self.patch_size,
            x_t, t, t_next, noise,
        )

    def _patch_embed(self, x_t: torch.Tensor) -> torch.Tensor:
        proj = self.s_embedder.proj
        mode = getattr(proj, "mode", None)  # pid.quant's FP8Linear, when the policy quantized it
        if mode == "fp8":
            return seams.patch_embed_fp8(x_t, proj.weight, proj.weight_scale, proj.bias, self.patch_size)
        weight = proj.dequantized_weight(x_t.dtype) if mode == "fp8_weight" else proj.weight
        return seams.patch_embed(x_t, weight, proj.bias, self.patch_size)

    def pixel_features(self, x_t: torch.Tensor, context: DecodeContext, conditioning: StepConditioning):
        """Everything but the final layer: x_t [B, 3, H, W] -> pixel tokens [B*Li, P2, Dp]."""
        batch = x_t.shape[0]
        x_t = x_t.to(self.dtype)
        image_tokens = self._patch_embed(x_t)
        text_tokens = context.text_tokens
        last = len(self.patch_blocks) - 1
        for index, block in enumerate(self.patch_blocks):
            if index % self.lq_interval == 0:
                gate_index = index // self.lq_interval
                image_tokens = self.lq_proj.gate_modules[gate_index](
                    image_tokens, context.lq_features[gate_index], context.degrade_sigma, self._lq_logit(context, gate_index)
                )
            image_modulation, text_modulation = conditioning.block_modulation[index]
            image_tokens, text_tokens = block(
                image_tokens,
                text_tokens,
                image_modulation,
                text_modulation,
                context.patch_rope,
                context.text_rope,
                context.txt_key_mask,
                with_text_output=index != last,
            )
        patch_condition = F.silu(conditioning.t_emb + image_tokens)
        if self.pit_lq_gate is not None:
            patch_condition = self.pit_lq_gate(
                patch_condition, context.pit_lq_feature, context.degrade_sigma, self._lq_logit(context, -1)
            )
        patch_condition = patch_condition.reshape(-1, self.hidden_size)
        del image_tokens, text_tokens  # not needed by the pixel blocks

        pix = self.pixel_embedder.proj
        pixels = seams.pixel_embed(x_t, pix.weight, pix.bias, context.pixel_positions, self.patch_size)
        del x_t
        for block in self.pixel_blocks:
            pixels = block(pixels, patch_condition, batch, context.pixel_rope)
        return pixels

    @staticmethod
    def _lq_logit(context: DecodeContext, gate_index: int) -> Optional[torch.Tensor]:
        return None if context.gate_lq_logits is None else context.gate_lq_logits[gate_index]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        s: Optional[torch.Tensor] = None,
        mask: Optional[torch.Tensor] = None,
        lq_video_or_image: Optional[torch.Tensor] = None,
        lq_latent: Optional[torch.Tensor] = None,
        lq_mask: Optional[torch.Tensor] = None,
        degrade_sigma: Optional[torch.Tensor] = None,
        caption_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The release's contract (same argument order): velocity v = eps - x0 for x_t
        [B, 3, H, W] at t (x1000) [B].

        y [B, L, txt_dim] caption embeddings (first txt_max_length tokens used);
        lq_latent [B, C, zH, zW]; degrade_sigma [B] in [0, 1]; lq_mask [B] scales the
        LQ features per sample, as the release's. `caption_mask` [B, L] (1 = real token)
        is our option; `mask`, which the release accepts but cannot use, is taken as the
        same. Without either, every caption token is attended to, as in the release.

        Only shapes are checked here; values are not (no NaN/Inf or sigma-range check, which
        would synchronise a GPU on every call). `pid.Decoder.decode` checks its inputs once
        and its images once per decode.
        """
        if s is not None or lq_video_or_image is not None:
            raise NotImplementedError("precomputed patch tokens (s) and the LQ image branch are unused by every release")
        caption_mask = caption_mask if caption_mask is not None else mask
        if not torch.compiler.is_compiling():
            # The checks branch on sizes, which would pin a traced (torch.export) batch dimension.
            check_forward_inputs(self, x, t, y, lq_latent, degrade_sigma, caption_mask)
        batch = x.shape[0]
        context = self.prepare(y, lq_latent, degrade_sigma, tuple(x.shape[-2:]), caption_mask, lq_mask)
        conditioning = self.timestep_conditioning(t.reshape(-1).expand(batch) if t.numel() == 1 else t)
        return self.velocity(x, context, conditioning)


def build_model(config: str | Mapping[str, Any]) -> PiDNet:
    """A float32 PiDNet for a released checkpoint name or a dict of official constructor kwargs."""
    return PiDNet(**resolve_config(config))
