"""Transformer blocks of the PiD network: MM-DiT patch blocks and PiT pixel blocks.

Module and parameter names follow the release's state-dict keys one to one
(`patch_blocks.{i}.attn.qkv_x.weight`, `pixel_blocks.{i}.adaLN_modulation.0.bias`, ...),
so the released checkpoints load without renaming. All arithmetic that a fused
kernel may replace goes through `pid.seams`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from pid import seams

# Order of the six adaLN vectors in every modulation output.
MODULATION_CHUNKS = 6


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seams.rms_norm(x, self.weight)


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x), hidden width 2/3 of the nominal 4x expansion."""

    def __init__(self, dim: int, nominal_hidden: int):
        super().__init__()
        hidden = int(2 * nominal_hidden / 3)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.w1) is nn.Linear and type(self.w3) is nn.Linear:
            return self.w2(seams.swiglu(x, self.w1.weight, self.w3.weight))
        # Quantized projections (pid.quant) are not plain weights: they compute their own products.
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class JointAttention(nn.Module):
    """Projections of the MM-DiT joint attention: one qkv/proj pair and q/k norms per stream."""

    # The attention core, seams.attention's signature; pid.quant sets an fp8 one per instance.
    attention_op = staticmethod(seams.attention)

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv_x = nn.Linear(dim, 3 * dim, bias=False)
        self.qkv_y = nn.Linear(dim, 3 * dim, bias=False)
        self.q_norm_x = RMSNorm(head_dim)
        self.k_norm_x = RMSNorm(head_dim)
        self.q_norm_y = RMSNorm(head_dim)
        self.k_norm_y = RMSNorm(head_dim)
        self.proj_x = nn.Linear(dim, dim)
        self.proj_y = nn.Linear(dim, dim)

    def forward(self, image_in, text_in, image_rope, text_rope, txt_key_mask, with_text_output: bool):
        out_img, out_txt = self.attention_op(
            self.qkv_x(image_in),
            (self.q_norm_x.weight, self.k_norm_x.weight),
            image_rope,
            self.num_heads,
            qkv_txt=self.qkv_y(text_in),
            txt_qk_norm=(self.q_norm_y.weight, self.k_norm_y.weight),
            txt_rope=text_rope,
            txt_key_mask=txt_key_mask,
        )
        return self.proj_x(out_img), (self.proj_y(out_txt) if with_text_output else None)


class MMDiTBlock(nn.Module):
    """Joint text/image block with per-stream adaLN from the timestep condition."""

    # Consumers ("attn_x", "attn_y", "mlp_x", "mlp_y") whose GEMMs compute in fp8; pid.quant sets it
    # per block. Their adaLN output is then made as the e4m3 values and per-token scales those GEMMs
    # take (seams.QuantizedRows, from the *_fp8 seams: one pass, fused on a GPU), not a tensor.
    fp8_consumers: frozenset = frozenset()

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm_x1 = RMSNorm(dim)
        self.norm_y1 = RMSNorm(dim)
        self.attn = JointAttention(dim, num_heads)
        self.norm_x2 = RMSNorm(dim)
        self.norm_y2 = RMSNorm(dim)
        self.mlp_x = SwiGLU(dim, 4 * dim)
        self.mlp_y = SwiGLU(dim, 4 * dim)
        self.adaLN_modulation_img = nn.Sequential(nn.Linear(dim, MODULATION_CHUNKS * dim))
        self.adaLN_modulation_txt = nn.Sequential(nn.Linear(dim, MODULATION_CHUNKS * dim))

    def modulation(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """silu(t_emb) [N, 1, C] -> (image, text) modulation, each [N, 1, 6C]."""
        return self.adaLN_modulation_img(condition), self.adaLN_modulation_txt(condition)

    def _modulate(self, consumer: str, x, weight, shift, scale):
        if consumer in self.fp8_consumers:
            return seams.QuantizedRows(*seams.rmsnorm_modulate_fp8(x, weight, shift, scale), x.dtype)
        return seams.rmsnorm_modulate(x, weight, shift, scale)

    def _residual_modulate(self, consumer: str, x, gate, y, weight, shift, scale):
        if consumer in self.fp8_consumers:
            updated, values, scales = seams.gated_residual_rmsnorm_modulate_fp8(x, gate, y, weight, shift, scale)
            return updated, seams.QuantizedRows(values, scales, x.dtype)
        return seams.gated_residual_rmsnorm_modulate(x, gate, y, weight, shift, scale)

    def forward(
        self,
        image_tokens: torch.Tensor,
        text_tokens: torch.Tensor,
        image_modulation: torch.Tensor,
        text_modulation: torch.Tensor,
        image_rope,
        text_rope,
        txt_key_mask: Optional[torch.Tensor] = None,
        with_text_output: bool = True,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Image [B, Li, C] and text [B, Lt, C] streams -> updated streams.

        `with_text_output=False` (the last block) skips the text output branch, which
        the release computes and then discards.
        """
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = image_modulation.chunk(MODULATION_CHUNKS, dim=-1)
        t_shift_a, t_scale_a, t_gate_a, t_shift_m, t_scale_m, t_gate_m = text_modulation.chunk(
            MODULATION_CHUNKS, dim=-1
        )
        attn_img, attn_txt = self.attn(
            self._modulate("attn_x", image_tokens, self.norm_x1.weight, shift_a, scale_a),
            self._modulate("attn_y", text_tokens, self.norm_y1.weight, t_shift_a, t_scale_a),
            image_rope,
            text_rope,
            txt_key_mask,
            with_text_output,
        )
        image_tokens, mlp_in = self._residual_modulate(
            "mlp_x", image_tokens, gate_a, attn_img, self.norm_x2.weight, shift_m, scale_m
        )
        image_tokens = seams.gated_residual(image_tokens, gate_m, self.mlp_x(mlp_in))
        if not with_text_output:
            return image_tokens, None
        text_tokens, text_mlp_in = self._residual_modulate(
            "mlp_y", text_tokens, t_gate_a, attn_txt, self.norm_y2.weight, t_shift_m, t_scale_m
        )
        text_tokens = seams.gated_residual(text_tokens, t_gate_m, self.mlp_y(text_mlp_in))
        return image_tokens, text_tokens


class PixelAttention(nn.Module):
    attention_op = staticmethod(seams.attention)  # as JointAttention.attention_op

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_norm = RMSNorm(dim // num_heads)
        self.k_norm = RMSNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor, rope) -> torch.Tensor:
        out, _ = self.attention_op(
            self.qkv(tokens), (self.q_norm.weight, self.k_norm.weight), rope, self.num_heads
        )
        return self.proj(out)


class PixelMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)


class PiTBlock(nn.Module):
    """Pixel block: per-pixel adaLN from the patch token, patch-level attention through a
    compress (P2*Dp -> A) / expand (A -> P2*Dp) pair, per-pixel GELU MLP."""

    def __init__(self, pixel_dim: int, patch_dim: int, patch_size: int, attn_dim: int, num_heads: int):
        super().__init__()
        self.pixel_dim = pixel_dim
        self.pixels_per_patch = patch_size * patch_size
        self.compress_to_attn = nn.Linear(self.pixels_per_patch * pixel_dim, attn_dim)
        self.expand_from_attn = nn.Linear(attn_dim, self.pixels_per_patch * pixel_dim)
        self.norm1 = RMSNorm(pixel_dim)
        self.attn = PixelAttention(attn_dim, num_heads)
        self.norm2 = RMSNorm(pixel_dim)
        self.mlp = PixelMLP(pixel_dim, 4 * pixel_dim)
        self.adaLN_modulation = nn.Sequential(
            nn.Linear(patch_dim, MODULATION_CHUNKS * pixel_dim * self.pixels_per_patch)
        )

    def _modulation(self, first: int, count: int):
        """condition [..., C] -> adaLN vectors first..first+count-1 of each pixel, [..., P2, count*Dp].

        The per-pixel modulation of a whole image is the largest tensor of a decode (768 MiB at
        2048² in bf16); computing it a chunk and a few vectors at a time keeps it small. A plain
        linear multiplies only the weight rows of those vectors (each output the same dot product
        as in the full GEMM); any other module (pid.quant) runs whole and is sliced."""
        linear = self.adaLN_modulation[0]
        per_pixel = self.pixel_dim * count
        if type(linear) is not nn.Linear:
            return lambda condition: linear(condition).unflatten(-1, (self.pixels_per_patch, -1))[
                ..., first * self.pixel_dim : first * self.pixel_dim + per_pixel
            ]
        rows = (self.pixels_per_patch, MODULATION_CHUNKS, self.pixel_dim)
        weight = linear.weight.view(*rows, -1)[:, first : first + count].reshape(-1, linear.weight.shape[-1])
        bias = linear.bias.view(rows)[:, first : first + count].reshape(-1)
        return lambda condition: F.linear(condition, weight, bias).unflatten(-1, (self.pixels_per_patch, per_pixel))

    def forward(self, pixels: torch.Tensor, patch_condition: torch.Tensor, batch: int, rope) -> torch.Tensor:
        """pixels [B*Li, P2, Dp], patch_condition [B*Li, C] -> pixels (the input, updated in place).

        Chunked over each image's patches (the same chunk of every image at once, so the loop
        does not depend on the batch, which may be a dynamic dimension under torch.export): the
        attention prologue (adaLN + compress) fills the compressed tokens chunk by chunk, then the
        epilogue (expand, gated residual, MLP) writes each chunk of pixels back, so no per-pixel
        intermediate of the whole image exists at once."""
        per_image = pixels.view(batch, -1, *pixels.shape[1:])  # [B, Li, P2, Dp]
        condition = patch_condition.view(batch, -1, patch_condition.shape[-1])  # [B, Li, C]
        chunks = seams.pixel_chunks(per_image.shape[1], self.pixels_per_patch)
        attention_modulation = self._modulation(0, 2)
        compressed = []
        for rows in chunks:
            shift_a, scale_a = attention_modulation(condition[:, rows]).chunk(2, dim=-1)
            attn_in = seams.rmsnorm_modulate(per_image[:, rows], self.norm1.weight, shift_a, scale_a)
            compressed.append(self.compress_to_attn(attn_in.flatten(2)))
            del shift_a, scale_a, attn_in  # before the next chunk's, not after
        del attention_modulation
        compressed = torch.cat(compressed, dim=1) if len(compressed) > 1 else compressed[0]
        attended = self.attn(compressed, rope)  # [B, Li, A]
        del compressed
        mlp_modulation = self._modulation(2, 4)
        for rows in chunks:
            gate_a, shift_m, scale_m, gate_m = mlp_modulation(condition[:, rows]).chunk(4, dim=-1)
            chunk = per_image[:, rows]
            expanded = self.expand_from_attn(attended[:, rows]).view_as(chunk)
            updated = seams.gated_residual(chunk, gate_a, expanded)
            del expanded
            # The op takes pixels [B*Li, P2, Dp]: `updated` and the modulation chunk are fresh
            # tensors, so folding the batch into the chunk's patches is a view.
            per_image[:, rows] = seams.pit_pixel_mlp(
                updated.flatten(0, 1),
                self.norm2.weight,
                shift_m.flatten(0, 1),
                scale_m.flatten(0, 1),
                gate_m.flatten(0, 1),
                self.mlp.fc1.weight,
                self.mlp.fc1.bias,
                self.mlp.fc2.weight,
                self.mlp.fc2.bias,
            ).view_as(chunk)
            del gate_a, shift_m, scale_m, gate_m, updated
        return pixels
