// The row kernel behind rmsnorm_modulate, gated_residual and their fusion.
//
// A row (one token of width C, or one PiT pixel of width 16) is spread over `lanes`
// threads, each holding up to kRowBytesPerThread of it in registers, so x is read once
// even when the RMS statistic must be known before the first output. Consecutive lanes
// take consecutive 16-byte accesses (coalesced); narrow rows (PiT pixels) get one
// thread each and a block holds many rows. The modulation views (shift/scale/gate) are
// read through their own strides: 0 over tokens for MM-DiT, 6*Dp per pixel for PiT.
#pragma once

#include "common.cuh"

namespace pid {

enum class RowOp { kNormModulate, kGatedResidual, kGatedResidualNormModulate };

constexpr int kRowBytesPerThread = 4 * kAccessBytes;
constexpr int kMaxRowThreads = PID_MAX_ROW_BYTES / kRowBytesPerThread;  // 512
constexpr int kRowBlockThreads = 256;

struct RowParams {
  pid_row_shape shape;
  pid_rows x, gate, y, shift, scale;
  pid_rows out;           // rmsnorm_modulate's result, or gated_residual's
  pid_rows residual_out;  // the fusion's x + gate * y
  const void* weight;
  float eps;
  int lanes;  // threads per row
};

template <typename T, int VEC, RowOp OP>
__global__ void __launch_bounds__(kMaxRowThreads) row_kernel(const RowParams p) {
  constexpr bool kResidual = OP != RowOp::kNormModulate;
  constexpr bool kNorm = OP != RowOp::kGatedResidual;
  constexpr int kItems = kRowBytesPerThread / (VEC * sizeof(T));  // accesses per thread

  const int lane = threadIdx.x;
  const int lanes = p.lanes;
  const int64_t width = p.shape.width;
  const int64_t inner = p.shape.inner;
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  // Rows past the end still take part in the block's reduction barrier below.
  const bool live = row < p.shape.outer * inner;
  T* out = static_cast<T*>(p.out.data) + row_offset(p.out, row, inner);

  float values[kItems][VEC];
  float sum_sq = 0.f;
  if (live) {
    const T* x = static_cast<const T*>(p.x.data) + row_offset(p.x, row, inner);
    const T* gate = static_cast<const T*>(p.gate.data) + row_offset(p.gate, row, inner);
    const T* y = static_cast<const T*>(p.y.data) + row_offset(p.y, row, inner);
    T* residual_out = static_cast<T*>(p.residual_out.data) + row_offset(p.residual_out, row, inner);
#pragma unroll
    for (int k = 0; k < kItems; ++k) {
      const int64_t column = (int64_t(k) * lanes + lane) * VEC;
      if (column >= width) continue;
      load<T, VEC>(x + column, values[k]);
      if (kResidual) {
        float g[VEC], u[VEC];
        load<T, VEC>(gate + column, g);
        load<T, VEC>(y + column, u);
#pragma unroll
        for (int i = 0; i < VEC; ++i) values[k][i] = fmaf(g[i], u[i], values[k][i]);
        store<T, VEC>((OP == RowOp::kGatedResidual ? out : residual_out) + column, values[k]);
        // The norm sees x' as stored, rounded to T, as the eager chain does.
#pragma unroll
        for (int i = 0; i < VEC; ++i) values[k][i] = to_float(from_float<T>(values[k][i]));
      }
      if (kNorm) {
#pragma unroll
        for (int i = 0; i < VEC; ++i) sum_sq = fmaf(values[k][i], values[k][i], sum_sq);
      }
    }
  }
  if (!kNorm) return;

  sum_sq = group_sum(sum_sq, lanes < 32 ? lanes : 32);
  if (lanes > 32) {  // lanes is then a multiple of 32: whole warps per row
    __shared__ float warp_sums[kMaxRowThreads / 32];
    const int warp = (threadIdx.y * lanes + lane) / 32;
    if (lane % 32 == 0) warp_sums[warp] = sum_sq;
    __syncthreads();
    const int first = threadIdx.y * lanes / 32;
    sum_sq = 0.f;
    for (int w = 0; w < lanes / 32; ++w) sum_sq += warp_sums[first + w];
  }
  if (!live) return;

  const float rstd = rsqrtf(sum_sq / float(width) + p.eps);
  const T* weight = static_cast<const T*>(p.weight);
  const T* shift = static_cast<const T*>(p.shift.data) + row_offset(p.shift, row, inner);
  const T* scale = static_cast<const T*>(p.scale.data) + row_offset(p.scale, row, inner);
#pragma unroll
  for (int k = 0; k < kItems; ++k) {
    const int64_t column = (int64_t(k) * lanes + lane) * VEC;
    if (column >= width) continue;
    float w[VEC], sh[VEC], sc[VEC];
    load<T, VEC>(weight + column, w);
    load<T, VEC>(shift + column, sh);
    load<T, VEC>(scale + column, sc);
#pragma unroll
    for (int i = 0; i < VEC; ++i) values[k][i] = fmaf(values[k][i] * rstd * w[i], 1.f + sc[i], sh[i]);
    store<T, VEC>(out + column, values[k]);
  }
}

// Picks the access width (16 bytes when every view allows it) and the threads per row,
// then launches. `views` are all row views the kernel touches; `weight` may be null.
template <RowOp OP>
cudaError_t launch_rows(pid_dtype dtype, RowParams params, const pid_rows* const* views, int view_count,
                        cudaStream_t stream) {
  const pid_row_shape& shape = params.shape;
  if (shape.outer < 0 || shape.inner < 0 || shape.width <= 0) return cudaErrorInvalidValue;
  if (shape.width * dtype_size(dtype) > PID_MAX_ROW_BYTES) return cudaErrorInvalidValue;
  const int64_t rows = shape.outer * shape.inner;
  if (rows == 0) return cudaSuccess;
  return dispatch_float(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    constexpr int kVec = kAccessBytes / sizeof(T);
    bool vectorized = shape.width % kVec == 0 && (params.weight == nullptr || aligned16(params.weight));
    for (int i = 0; i < view_count; ++i) vectorized = vectorized && rows_aligned16(*views[i], shape, sizeof(T));
    const int vec = vectorized ? kVec : 1;
    const int64_t per_thread = kRowBytesPerThread / (vec * int64_t(sizeof(T)));
    const int64_t needed = ceil_div(shape.width / vec, per_thread);
    int lanes = 1;
    if (needed > 32) {
      lanes = int(ceil_div(needed, 32) * 32);
    } else {
      while (lanes < needed) lanes *= 2;
    }
    params.lanes = lanes;
    const int rows_per_block = lanes < kRowBlockThreads ? kRowBlockThreads / lanes : 1;
    const dim3 block(lanes, rows_per_block);
    const int64_t grid = ceil_div(rows, rows_per_block);
    if (vectorized) {
      row_kernel<T, kVec, OP><<<grid, block, 0, stream>>>(params);
    } else {
      row_kernel<T, 1, OP><<<grid, block, 0, stream>>>(params);
    }
    return cudaGetLastError();
  });
}

}  // namespace pid
