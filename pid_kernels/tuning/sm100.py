"""Launch configurations for Blackwell datacenter (B200/GB200): reasoned from the hardware (228 KB smem/SM, 5th-gen tensor cores), not measured.

One dict per op, named after the op in upper case. Each op module documents its keys.
"""

# attention, pointer kernel (float32, short sequences, unaligned head dims; bf16 long sequences take ATTENTION_PIPELINED).
# At PiD's shapes only float32 takes it (tiles capped by FLOAT32_TILE_CAPS); bf16 only below FUSED_K_MAX_Q_TILES.
# head_dim <= 64, float32, compiled (Triton 3.6 / 3.9, benchmarks/STATIC.md): 255 regs, 48 / 72 B spills, 16 KiB smem,
# 2 CTAs per SM, tcgen05 (tf32).
ATTENTION = {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3, "FUSED_K_MAX_Q_TILES": 2}
# 64 < head_dim <= 128 (72 padded to 128), float32: 255 regs, 968 / 920 B spills, 32 KiB smem, 2 CTAs per SM.
ATTENTION_D128 = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3, "FUSED_K_MAX_Q_TILES": 2}

# attention, long sequences in bf16/fp16 (_pipelined_attention_kernel: prepared q/k/v read by TMA, one
# warp-specialized loop; head dim 72 as 64 + 16): tcgen05 issued from its own partition (12 warps; 16 at d72 on 3.6);
# compiled (3.6 and 3.9, bf16, d64 / d72): 168 regs (128 on 3.6 d72), no spills, 84 / 106 KB smem, 1 CTA per SM, TMA. Not timed.
# DEFER_PV 0: the softmax already runs beside the MMA partition; DEFER_PV 1 spills 504 / 664 B here (3.9).
ATTENTION_PIPELINED = {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 4, "num_stages": 2, "WARP_SPECIALIZE": 1, "DEFER_PV": 0, "SOFTMAX_OVERLAP": "mma_partition"}
# Our attention or the best SDPA backend (plus its separate norm + RoPE), per head-dim class (d64: <= 64) and
# joint tokens (long: > LONG_TOKENS). Unmeasured (no device run yet): ours everywhere until one says otherwise.
ATTENTION_DISPATCH = {"d64_short": "ours", "d64_long": "ours", "d128_short": "ours", "d128_long": "ours",
                      "LONG_TOKENS": 4096, "measured": "no"}

# Reasoned, not measured: Hopper's tile; 128x256 spills here too (the epilogue holds the accumulator in registers).
SIGMA_GATE = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 4,
              "ROW_ELEMENTS": 8192, "per_token_warps": 8}
# Reasoned, not measured: Hopper's 128x256 tile, which fits tcgen05's 128-row MMA; the bias-only epilogue leaves room.
PATCH_EMBED = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
# Reasoned, not measured: memory-bound like Hopper; 16 B accesses and bytes in flight per SM carry over.
PIXEL_EMBED = {"BLOCK_ROWS": 512, "num_warps": 4}
# Reasoned, not measured: memory-bound like Hopper.
UNEMBED_UPDATE = {"BLOCK_ROWS": 512, "num_warps": 4}
# swiglu: Hopper's tile (128 rows fit tcgen05's MMA): compiled (3.6 / 3.9; bf16) 176 / 173 registers, no spills,
# 72 KiB smem, tcgen05, 1 CTA per SM. Not timed.
SWIGLU = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8, "num_stages": 3}
# pit_pixel_mlp: as Hopper. Compiled (bf16/fp16; 3.9 / 3.6): tcgen05, 128 / 163 regs, no spills, 8 KB smem. Not timed.
PIT_PIXEL_MLP = {"backend": "triton", "BLOCK_P": 128, "num_warps": 4, "measured": "no"}
