"""Launch configurations for Hopper (H100/H200): to be measured on the device; until then reasoned like the rest.

One dict per op, named after the op in upper case. Each op module documents its keys.
"""

# attention, pointer kernel (float32, short sequences, unaligned head dims; bf16 long sequences take ATTENTION_PIPELINED).
# At PiD's shapes only float32 takes it (tiles capped by FLOAT32_TILE_CAPS); bf16 only below FUSED_K_MAX_Q_TILES.
# head_dim <= 64, float32, compiled (Triton 3.6 / 3.9, benchmarks/STATIC.md): 251 / 246 regs, no spills, 48 KiB smem,
# 2 CTAs per SM, wgmma (tf32).
ATTENTION = {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 3, "FUSED_K_MAX_Q_TILES": 2}
# 64 < head_dim <= 128 (72 padded to 128), float32: 255 regs, 800 / 744 B spills, 96 KiB smem, 2 CTAs per SM.
ATTENTION_D128 = {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3, "FUSED_K_MAX_Q_TILES": 2}

# attention, long sequences in bf16/fp16 (_pipelined_attention_kernel: prepared q/k/v read by TMA, one loop;
# head dim 72 as 64 + 16). DEFER_PV: each key block's P.V is issued one step later, before the next block's
# softmax, and ptxas lets that wgmma run under the exp2 work (SASS: HGMMA interleaved with MUFU.EX2, _sass
# "wait_pending"). Triton's warp specialization crashes on such a loop (3.6, 3.9), hence 8 plain warps, two
# 64-row warpgroups; compiled (3.6 and 3.9, bf16 and fp16, masked or not): d64 195-213 regs, 82 KB smem;
# d72 139-176 regs, 135 KB smem; no spills, 1 CTA per SM, wgmma, TMA. Not timed.
# The previous choice, autoWS (num_warps 4, WARP_SPECIALIZE 1, DEFER_PV 0): 12 warps, 168 regs, no spills,
# 99 / 120 KB, but each consumer waits for its wgmma before its softmax.
ATTENTION_PIPELINED = {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2, "WARP_SPECIALIZE": 0, "DEFER_PV": 1, "SOFTMAX_OVERLAP": "wait_pending"}
# Our attention or the best SDPA backend (plus its separate norm + RoPE), per head-dim class (d64: <= 64) and
# joint tokens (long: > LONG_TOKENS). Unmeasured (no device run yet): ours everywhere until one says otherwise.
ATTENTION_DISPATCH = {"d64_short": "ours", "d64_long": "ours", "d128_short": "ours", "d128_long": "ours",
                      "LONG_TOKENS": 4096, "measured": "no"}

# 128x128 wgmma tile, 4 x 32 KB stages, no spills (128x256 spills once the epilogue loads x, lq); GEMV: 4 rows of C=1536.
# Compiled (3.6 and 3.9, bf16): 212 regs, 128 KiB smem, 1 CTA per SM; the GEMV 96-97 regs, 2 CTAs per SM.
SIGMA_GATE = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 4,
              "ROW_ELEMENTS": 8192, "per_token_warps": 8}
# Triton's Hopper matmul tile, 3 x 48 KB stages, no spills (its epilogue only adds the bias); K = 768 is 12 steps of 64.
# Compiled (3.6 and 3.9, bf16): 173 regs, 144 KiB smem, 1 CTA per SM, wgmma; the 12 steps unrolled (no SASS loop).
PATCH_EMBED = {"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}
# Memory-bound: 2 patches (512 pixels x 16 channels) per program, 64 outputs (8 x 16 B) per thread.
# Compiled (3.6 / 3.9): 128 / 125 regs, 4 CTAs (16 of 64 warps) per SM.
PIXEL_EMBED = {"BLOCK_ROWS": 512, "num_warps": 4}
# Memory-bound: 512 pixel tokens (16 KB of bf16 features, 3 x 6 KB of images) in flight per program.
# Compiled (3.6, 3.9): 119-124 regs, 4 CTAs (16 of 64 warps) per SM.
UNEMBED_UPDATE = {"BLOCK_ROWS": 512, "num_warps": 4}
# swiglu: 128x128 tiles, two float32 accumulators over 8 warps; 32-wide K steps (64-wide spilled in an earlier
# compile): compiled (3.6, 3.9; bf16) 170 registers, no spills, 72 KiB smem (3 stages), wgmma, 1 CTA per SM. Not timed.
SWIGLU = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 32, "num_warps": 8, "num_stages": 3}
# pit_pixel_mlp: Triton (both products as tensor-core dots over 128 pixels) until a device run says otherwise;
# the CUDA C++ kernel where Triton cannot run. Compiled (bf16/fp16; 3.9 / 3.6): wgmma m64n64k16 + m64n16k16,
# 140 / 137 regs, no spills, 8 KB smem, 3 CTAs per SM. Not timed.
PIT_PIXEL_MLP = {"backend": "triton", "BLOCK_P": 128, "num_warps": 4, "measured": "no"}
