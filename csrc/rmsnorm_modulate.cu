// rmsnorm_modulate: adaLN's rms_norm(x) * weight * (1 + scale) + shift, one pass over x.
// Covers the MM-DiT tokens (C = 1536, shift/scale broadcast over tokens) and the PiT
// attention-half prologue (pixels of width 16, shift/scale per pixel); see rows.cuh.
#include "rows.cuh"

extern "C" int pid_rmsnorm_modulate(pid_dtype dtype, pid_row_shape shape, pid_rows x, const void* weight,
                                    pid_rows shift, pid_rows scale, float eps, pid_rows out, cudaStream_t stream) {
  pid::RowParams params{};
  params.shape = shape;
  params.x = x;
  params.shift = shift;
  params.scale = scale;
  params.out = out;
  params.weight = weight;
  params.eps = eps;
  const pid_rows* views[] = {&x, &shift, &scale, &out};
  return pid::launch_rows<pid::RowOp::kNormModulate>(dtype, params, views, 4, stream);
}
