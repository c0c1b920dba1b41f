// C ABI of the PiD CUDA kernels: raw pointers, sizes, strides, a dtype and a stream.
//
// Nothing here needs torch: the kernels compile with plain nvcc, and bindings.cpp is
// the only file that sees at::Tensor. Every function returns a cudaError_t
// (cudaSuccess, cudaErrorInvalidValue for arguments it cannot run, or the launch's
// error) and enqueues its work on `stream` without synchronizing.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { PID_FLOAT32 = 0, PID_FLOAT16 = 1, PID_BFLOAT16 = 2 } pid_dtype;

// A [outer, inner, width] view whose last dimension is contiguous; strides in elements.
// Strides of 0 broadcast (the MM-DiT modulation over tokens); a dimension of extent 1
// may carry any stride.
typedef struct {
  void* data;
  int64_t stride_outer;
  int64_t stride_inner;
} pid_rows;

typedef struct {
  int64_t outer;
  int64_t inner;
  int64_t width;
} pid_row_shape;

// The row kernels (rmsnorm_modulate, gated_residual and their fusion) hold a row in
// registers: at most PID_MAX_ROW_BYTES bytes of it (width * element size).
enum { PID_MAX_ROW_BYTES = 32768 };

// out = rms_norm(x) * weight * (1 + scale) + shift, statistics in float32.
int pid_rmsnorm_modulate(pid_dtype dtype, pid_row_shape shape, pid_rows x, const void* weight, pid_rows shift,
                         pid_rows scale, float eps, pid_rows out, cudaStream_t stream);

// out = x + gate * y.
int pid_gated_residual(pid_dtype dtype, pid_row_shape shape, pid_rows x, pid_rows gate, pid_rows y, pid_rows out,
                       cudaStream_t stream);

// residual_out = x + gate * y (rounded to dtype), modulated_out = rmsnorm_modulate(residual_out).
int pid_gated_residual_rmsnorm_modulate(pid_dtype dtype, pid_row_shape shape, pid_rows x, pid_rows gate, pid_rows y,
                                        const void* weight, pid_rows shift, pid_rows scale, float eps,
                                        pid_rows residual_out, pid_rows modulated_out, cudaStream_t stream);

// The PiT MLP half per pixel: x + gate * fc2(gelu(fc1(rmsnorm_modulate(x)))).
// Pixel width 16 and hidden width 64 only; weights are contiguous [64, 16] and [16, 64].
enum { PID_PIXEL_WIDTH = 16, PID_PIXEL_HIDDEN = 64 };
int pid_pit_pixel_mlp(pid_dtype dtype, pid_row_shape shape, pid_rows pixels, const void* norm_weight, pid_rows shift,
                      pid_rows scale, pid_rows gate, const void* fc1_weight, const void* fc1_bias,
                      const void* fc2_weight, const void* fc2_bias, float eps, pid_rows out, cudaStream_t stream);

// [B, 3, H, W] (any strides) in [-1, 1] -> contiguous uint8 [B, H, W, 3]:
// (clamp(x) + 1) * 127.5 truncated, or rounded half to even when round_to_nearest.
int pid_image_to_uint8(pid_dtype dtype, int64_t batch, int64_t height, int64_t width, const void* images,
                       const int64_t strides[4], int round_to_nearest, uint8_t* out, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
