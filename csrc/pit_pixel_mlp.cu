// pit_pixel_mlp: the MLP half of a PiT block, one thread per pixel, all in registers:
// RMSNorm(16) -> modulate -> fc1 16->64 -> exact-erf GELU -> fc2 64->16 -> gate -> residual.
//
// The pixel's x, shift, scale and gate are read once (16-byte accesses where aligned)
// and its output written once; the weights (8.5 KB as float32) sit in shared memory,
// where every thread of a warp reads the same word (a broadcast, no bank conflicts).
// Each hidden unit is finished before the next starts (fc1 row, GELU, fc2 column), so
// only the 16 normalized inputs and 16 output accumulators stay live. The grid is
// persistent: a block stages the weights once and walks many pixels.
#include <math_constants.h>

#include <initializer_list>

#include "common.cuh"

namespace pid {
namespace {

constexpr int kWidth = PID_PIXEL_WIDTH;
constexpr int kHidden = PID_PIXEL_HIDDEN;
constexpr int kQuads = kWidth / 4;
constexpr int kMlpThreads = 256;

struct MlpParams {
  pid_row_shape shape;
  pid_rows pixels, shift, scale, gate, out;
  const void* norm_weight;
  const void* fc1_weight;  // [kHidden, kWidth]
  const void* fc1_bias;
  const void* fc2_weight;  // [kWidth, kHidden]
  const void* fc2_bias;
  float eps;
};

struct MlpWeights {
  float4 fc1[kHidden][kQuads];   // row j: the inputs of hidden unit j
  float4 fc2t[kHidden][kQuads];  // fc2 transposed: the outputs of hidden unit j
  float fc1_bias[kHidden];
  float fc2_bias[kWidth];
  float norm[kWidth];
};

template <typename T>
__device__ void stage_weights(const MlpParams& p, MlpWeights& w) {
  const T* fc1 = static_cast<const T*>(p.fc1_weight);
  const T* fc2 = static_cast<const T*>(p.fc2_weight);
  float* fc1_flat = &w.fc1[0][0].x;
  float* fc2t_flat = &w.fc2t[0][0].x;
  for (int i = threadIdx.x; i < kHidden * kWidth; i += blockDim.x) {
    fc1_flat[i] = to_float(fc1[i]);
    const int output = i / kHidden, hidden = i % kHidden;  // fc2[output][hidden], read coalesced
    fc2t_flat[hidden * kWidth + output] = to_float(fc2[i]);
  }
  for (int i = threadIdx.x; i < kHidden; i += blockDim.x) {
    w.fc1_bias[i] = to_float(static_cast<const T*>(p.fc1_bias)[i]);
  }
  for (int i = threadIdx.x; i < kWidth; i += blockDim.x) {
    w.fc2_bias[i] = to_float(static_cast<const T*>(p.fc2_bias)[i]);
    w.norm[i] = to_float(static_cast<const T*>(p.norm_weight)[i]);
  }
}

template <typename T, int VEC>
__device__ __forceinline__ void load_pixel(const T* src, float (&dst)[kWidth]) {
#pragma unroll
  for (int i = 0; i < kWidth; i += VEC) load<T, VEC>(src + i, *reinterpret_cast<float(*)[VEC]>(&dst[i]));
}

template <typename T, int VEC>
__global__ void __launch_bounds__(kMlpThreads) pit_pixel_mlp_kernel(MlpParams p) {
  __shared__ MlpWeights w;
  stage_weights<T>(p, w);
  __syncthreads();

  const int64_t inner = p.shape.inner;
  const int64_t pixels = p.shape.outer * inner;
  for (int64_t pixel = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; pixel < pixels;
       pixel += int64_t(gridDim.x) * blockDim.x) {
    float x[kWidth], normed[kWidth];
    load_pixel<T, VEC>(static_cast<const T*>(p.pixels.data) + row_offset(p.pixels, pixel, inner), x);
    float sum_sq = 0.f;
#pragma unroll
    for (int i = 0; i < kWidth; ++i) sum_sq = fmaf(x[i], x[i], sum_sq);
    const float rstd = rsqrtf(sum_sq / float(kWidth) + p.eps);
    {
      float shift[kWidth], scale[kWidth];
      load_pixel<T, VEC>(static_cast<const T*>(p.shift.data) + row_offset(p.shift, pixel, inner), shift);
      load_pixel<T, VEC>(static_cast<const T*>(p.scale.data) + row_offset(p.scale, pixel, inner), scale);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) normed[i] = fmaf(x[i] * rstd * w.norm[i], 1.f + scale[i], shift[i]);
    }

    float acc[kWidth];
#pragma unroll
    for (int i = 0; i < kWidth; ++i) acc[i] = w.fc2_bias[i];
#pragma unroll 4
    for (int j = 0; j < kHidden; ++j) {
      float pre = w.fc1_bias[j];
#pragma unroll
      for (int q = 0; q < kQuads; ++q) {
        const float4 in = w.fc1[j][q];
        pre = fmaf(in.x, normed[4 * q], pre);
        pre = fmaf(in.y, normed[4 * q + 1], pre);
        pre = fmaf(in.z, normed[4 * q + 2], pre);
        pre = fmaf(in.w, normed[4 * q + 3], pre);
      }
      const float act = 0.5f * pre * (1.f + erff(pre * CUDART_SQRT_HALF_F));  // nn.GELU(), exact
#pragma unroll
      for (int q = 0; q < kQuads; ++q) {
        const float4 outw = w.fc2t[j][q];
        acc[4 * q] = fmaf(outw.x, act, acc[4 * q]);
        acc[4 * q + 1] = fmaf(outw.y, act, acc[4 * q + 1]);
        acc[4 * q + 2] = fmaf(outw.z, act, acc[4 * q + 2]);
        acc[4 * q + 3] = fmaf(outw.w, act, acc[4 * q + 3]);
      }
    }

    float gate[kWidth];
    load_pixel<T, VEC>(static_cast<const T*>(p.gate.data) + row_offset(p.gate, pixel, inner), gate);
    T* out = static_cast<T*>(p.out.data) + row_offset(p.out, pixel, inner);
#pragma unroll
    for (int i = 0; i < kWidth; i += VEC) {
      float part[VEC];
#pragma unroll
      for (int v = 0; v < VEC; ++v) part[v] = fmaf(gate[i + v], acc[i + v], x[i + v]);
      store<T, VEC>(out + i, part);
    }
  }
}

template <typename T, int VEC>
cudaError_t launch(const MlpParams& params, cudaStream_t stream) {
  int device = 0, sms = 0, blocks_per_sm = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status == cudaSuccess) status = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (status == cudaSuccess) {
    status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, pit_pixel_mlp_kernel<T, VEC>,
                                                           kMlpThreads, 0);
  }
  if (status != cudaSuccess) return status;
  const int64_t pixels = params.shape.outer * params.shape.inner;
  const int64_t resident = int64_t(sms) * (blocks_per_sm > 0 ? blocks_per_sm : 1);
  const int64_t needed = ceil_div(pixels, kMlpThreads);
  pit_pixel_mlp_kernel<T, VEC><<<needed < resident ? needed : resident, kMlpThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace
}  // namespace pid

extern "C" int pid_pit_pixel_mlp(pid_dtype dtype, pid_row_shape shape, pid_rows pixels, const void* norm_weight,
                                 pid_rows shift, pid_rows scale, pid_rows gate, const void* fc1_weight,
                                 const void* fc1_bias, const void* fc2_weight, const void* fc2_bias, float eps,
                                 pid_rows out, cudaStream_t stream) {
  if (shape.outer < 0 || shape.inner < 0 || shape.width != PID_PIXEL_WIDTH) return cudaErrorInvalidValue;
  if (shape.outer * shape.inner == 0) return cudaSuccess;
  const pid::MlpParams params{shape,      pixels,   shift,      scale,    gate, out, norm_weight,
                              fc1_weight, fc1_bias, fc2_weight, fc2_bias, eps};
  return pid::dispatch_float(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    constexpr int kVec = pid::kAccessBytes / sizeof(T);
    bool vectorized = true;
    for (const pid_rows* view : {&pixels, &shift, &scale, &gate, &out}) {
      vectorized = vectorized && pid::rows_aligned16(*view, shape, sizeof(T));
    }
    return vectorized ? pid::launch<T, kVec>(params, stream) : pid::launch<T, 1>(params, stream);
  });
}
