"""Launch configurations for Blackwell consumer (RTX 5090): reasoned from the hardware (100 KB smem/SM, fewer warps per SM than sm100), not measured.

One dict per op, named after the op in upper case. Each op module documents its keys.
"""

# attention, pointer kernel (float32, short sequences, unaligned head dims; bf16 long sequences take ATTENTION_PIPELINED).
# At PiD's shapes only float32 takes it (tiles capped by FLOAT32_TILE_CAPS); bf16 only below FUSED_K_MAX_Q_TILES.
# head_dim <= 64, float32, compiled (Triton 3.6 / 3.9, benchmarks/STATIC.md): 255 regs, 184 B spills, 40 KiB smem,
# 2 CTAs per SM, mma.sync (tf32).
ATTENTION = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2, "FUSED_K_MAX_Q_TILES": 2}
# 64 < head_dim <= 128 (72 padded to 128), float32: 255 regs, 3184 / 3208 B spills, 80 KiB smem, 1 CTA per SM.
ATTENTION_D128 = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2, "FUSED_K_MAX_Q_TILES": 2}

# attention, long sequences in bf16/fp16 (_pipelined_attention_kernel: prepared q/k/v read by TMA, one
# warp-specialized loop; head dim 72 as 64 + 16): no warp specialization, mma.sync, 64-key steps for the 99 KB of smem;
# compiled (3.9, bf16, d64 / d72): 171 / 150 regs, no spills, 33 / 41 KB smem, 1 CTA per SM, TMA. Not timed.
# DEFER_PV 0, as before: DEFER_PV 1 compiles (3.9: 168 regs, no spills) but mma.sync has no asynchronous group to
# leave in flight, so any gain would come from ptxas's scheduling alone; nothing measured.
ATTENTION_PIPELINED = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 2, "WARP_SPECIALIZE": 0, "DEFER_PV": 0, "SOFTMAX_OVERLAP": "none"}
# Our attention or the best SDPA backend (plus its separate norm + RoPE), per head-dim class (d64: <= 64) and
# joint tokens (long: > LONG_TOKENS). Unmeasured (no device run yet): ours everywhere until one says otherwise.
ATTENTION_DISPATCH = {"d64_short": "ours", "d64_long": "ours", "d128_short": "ours", "d128_long": "ours",
                      "LONG_TOKENS": 4096, "measured": "no"}

# Reasoned, not measured: no wgmma/tcgen05 (mma.sync), ~100 KB smem: 128x128x32 tiles, 4 stages in 48 KB as compiled.
SIGMA_GATE = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8, "num_stages": 4,
              "ROW_ELEMENTS": 8192, "per_token_warps": 8}
# Reasoned, not measured: as SIGMA_GATE.
PATCH_EMBED = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8, "num_stages": 4}
# Reasoned, not measured: memory-bound; same per-thread work as Hopper.
PIXEL_EMBED = {"BLOCK_ROWS": 512, "num_warps": 4}
# Reasoned, not measured: memory-bound; same per-thread work as Hopper.
UNEMBED_UPDATE = {"BLOCK_ROWS": 512, "num_warps": 4}
# swiglu: mma.sync on 128x64 tiles (128x128 spilled 32 B in an earlier compile): compiled (bf16) 153 registers on 3.9,
# 152 on 3.6, no spills, 16 KiB of the 99 KiB smem, 1 CTA per SM. Not timed.
SWIGLU = {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 8, "num_stages": 2}
# pit_pixel_mlp: as Hopper. Compiled (bf16/fp16; 3.9 / 3.6): mma.sync m16n8k16, 174 / 172 regs, no spills, 8 KB smem.
# Not timed.
PIT_PIXEL_MLP = {"backend": "triton", "BLOCK_P": 128, "num_warps": 4, "measured": "no"}
