// gated_residual: x + gate * y, and its fusion with the next
// rmsnorm_modulate, which reads x, gate and y once and writes both x' and the
// modulated x'. The gate is a strided view of the modulation; see rows.cuh.
#include "rows.cuh"

extern "C" int pid_gated_residual(pid_dtype dtype, pid_row_shape shape, pid_rows x, pid_rows gate, pid_rows y,
                                  pid_rows out, cudaStream_t stream) {
  pid::RowParams params{};
  params.shape = shape;
  params.x = x;
  params.gate = gate;
  params.y = y;
  params.out = out;
  const pid_rows* views[] = {&x, &gate, &y, &out};
  return pid::launch_rows<pid::RowOp::kGatedResidual>(dtype, params, views, 4, stream);
}

extern "C" int pid_gated_residual_rmsnorm_modulate(pid_dtype dtype, pid_row_shape shape, pid_rows x, pid_rows gate,
                                                   pid_rows y, const void* weight, pid_rows shift, pid_rows scale,
                                                   float eps, pid_rows residual_out, pid_rows modulated_out,
                                                   cudaStream_t stream) {
  pid::RowParams params{};
  params.shape = shape;
  params.x = x;
  params.gate = gate;
  params.y = y;
  params.shift = shift;
  params.scale = scale;
  params.out = modulated_out;
  params.residual_out = residual_out;
  params.weight = weight;
  params.eps = eps;
  const pid_rows* views[] = {&x, &gate, &y, &shift, &scale, &residual_out, &modulated_out};
  return pid::launch_rows<pid::RowOp::kGatedResidualNormModulate>(dtype, params, views, 7, stream);
}
