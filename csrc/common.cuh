// Helpers shared by the kernels: dtype dispatch, float conversion, 16-byte packs, reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "pid_kernels.h"

namespace pid {

constexpr int kAccessBytes = 16;  // one LDG.128/STG.128 per thread and access

template <typename T>
struct Type {
  using type = T;
};

// Calls f(Type<T>{}) with the element type of `dtype`.
template <typename F>
cudaError_t dispatch_float(pid_dtype dtype, F&& f) {
  switch (dtype) {
    case PID_FLOAT32: return f(Type<float>{});
    case PID_FLOAT16: return f(Type<__half>{});
    case PID_BFLOAT16: return f(Type<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

inline int64_t dtype_size(pid_dtype dtype) { return dtype == PID_FLOAT32 ? 4 : 2; }

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// N elements moved as one access of N * sizeof(T) bytes: 16 (uint4, one LDG.128/STG.128)
// when vectorized, else one element.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ void load(const T* src, float (&dst)[N]) {
  static_assert(N == 1 || sizeof(T) * N == kAccessBytes, "an access is one element or 16 bytes");
  Pack<T, N> pack;
  if constexpr (N == 1) {
    pack.v[0] = *src;
  } else {
    *reinterpret_cast<uint4*>(&pack) = *reinterpret_cast<const uint4*>(src);
  }
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = to_float(pack.v[i]);
}

template <typename T, int N>
__device__ __forceinline__ void store(T* dst, const float (&src)[N]) {
  static_assert(N == 1 || sizeof(T) * N == kAccessBytes, "an access is one element or 16 bytes");
  Pack<T, N> pack;
#pragma unroll
  for (int i = 0; i < N; ++i) pack.v[i] = from_float<T>(src[i]);
  if constexpr (N == 1) {
    *dst = pack.v[0];
  } else {
    // PTX, because nvcc 13.0 split a plain uint4 assignment into four 4-byte stores in the
    // row kernel. No "memory" clobber: no thread reads back what it stores, so the compiler
    // may still hoist later loads above it.
    uint4 bits;
    memcpy(&bits, &pack, sizeof(bits));
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "r"(bits.x), "r"(bits.y), "r"(bits.z),
                 "r"(bits.w));
  }
}

// Sum over groups of `lanes` consecutive lanes (a power of two <= 32); every lane of the
// warp must call it.
__device__ __forceinline__ float group_sum(float v, int lanes) {
  for (int offset = lanes / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Element offset of row `row` of a [outer, inner, width] view.
__device__ __forceinline__ int64_t row_offset(const pid_rows& view, int64_t row, int64_t inner) {
  return (row / inner) * view.stride_outer + (row % inner) * view.stride_inner;
}

// Host side: can every row of these views be moved in 16-byte accesses?
inline bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % kAccessBytes == 0; }

inline bool rows_aligned16(const pid_rows& view, const pid_row_shape& shape, int64_t elem_size) {
  const bool outer_ok = shape.outer == 1 || (view.stride_outer * elem_size) % kAccessBytes == 0;
  const bool inner_ok = shape.inner == 1 || (view.stride_inner * elem_size) % kAccessBytes == 0;
  return aligned16(view.data) && outer_ok && inner_ok;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace pid
