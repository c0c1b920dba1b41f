// Torch bindings: the CUDA implementations of the torch.ops.pid_cuda.* operators.
//
// The schemas, the fake (shape) implementations and the CPU reference implementations
// are registered from Python (pid_kernels/cuda/loader.py and the op modules), so that
// torch.compile and the tests see the operators even where this library was not built.
// Here each operator checks what the kernels rely on, turns tensors into the C ABI of
// pid_kernels.h and launches on the current stream. Callers (the op modules) hand over
// 3-D [outer, inner, C] views whose modulation operands are already expanded to x's shape.
#include <Python.h>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "pid_kernels.h"

namespace {

pid_dtype dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return PID_FLOAT32;
    case at::kHalf: return PID_FLOAT16;
    case at::kBFloat16: return PID_BFLOAT16;
    default: TORCH_CHECK(false, "pid_cuda: unsupported dtype ", t.scalar_type());
  }
}

// x: the [outer, inner, C] tensor whose shape the row operands share.
void check_rows(const at::Tensor& t, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.device() == x.device(), "pid_cuda: ", name, " must be on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "pid_cuda: ", name, " is ", t.scalar_type(), ", x is ",
              x.scalar_type());
  TORCH_CHECK(t.dim() == 3 && t.sizes() == x.sizes(), "pid_cuda: ", name, " must have x's shape ", x.sizes(),
              ", got ", t.sizes());
  TORCH_CHECK(t.stride(2) == 1 || t.size(2) == 1, "pid_cuda: ", name, " needs a contiguous last dimension");
}

void check_vector(const at::Tensor& t, int64_t size, const at::Tensor& x, const char* name) {
  TORCH_CHECK(t.is_cuda() && t.device() == x.device(), "pid_cuda: ", name, " must be on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "pid_cuda: ", name, " is ", t.scalar_type(), ", x is ",
              x.scalar_type());
  TORCH_CHECK(t.is_contiguous() && t.numel() == size, "pid_cuda: ", name, " must be contiguous with ", size,
              " elements");
}

pid_rows rows_of(const at::Tensor& t) { return {const_cast<void*>(t.const_data_ptr()), t.stride(0), t.stride(1)}; }

pid_row_shape shape_of(const at::Tensor& x) { return {x.size(0), x.size(1), x.size(2)}; }

cudaStream_t stream_of(const at::Tensor& x) { return c10::cuda::getCurrentCUDAStream(x.device().index()).stream(); }

void check_launch(int status, const char* op) {
  TORCH_CHECK(status == cudaSuccess, "pid_cuda::", op, ": ", cudaGetErrorString(static_cast<cudaError_t>(status)));
}

at::Tensor rmsnorm_modulate(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& shift,
                            const at::Tensor& scale, double eps) {
  check_rows(x, x, "x");
  check_rows(shift, x, "shift");
  check_rows(scale, x, "scale");
  check_vector(weight, x.size(2), x, "weight");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  check_launch(pid_rmsnorm_modulate(dtype_of(x), shape_of(x), rows_of(x), weight.const_data_ptr(), rows_of(shift),
                                    rows_of(scale), static_cast<float>(eps), rows_of(out), stream_of(x)),
               "rmsnorm_modulate");
  return out;
}

at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
  check_rows(x, x, "x");
  check_rows(gate, x, "gate");
  check_rows(y, x, "y");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  check_launch(pid_gated_residual(dtype_of(x), shape_of(x), rows_of(x), rows_of(gate), rows_of(y), rows_of(out),
                                  stream_of(x)),
               "gated_residual");
  return out;
}

std::tuple<at::Tensor, at::Tensor> gated_residual_rmsnorm_modulate(const at::Tensor& x, const at::Tensor& gate,
                                                                   const at::Tensor& y, const at::Tensor& weight,
                                                                   const at::Tensor& shift, const at::Tensor& scale,
                                                                   double eps) {
  check_rows(x, x, "x");
  check_rows(gate, x, "gate");
  check_rows(y, x, "y");
  check_rows(shift, x, "shift");
  check_rows(scale, x, "scale");
  check_vector(weight, x.size(2), x, "weight");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor updated = at::empty(x.sizes(), x.options());
  at::Tensor modulated = at::empty(x.sizes(), x.options());
  check_launch(pid_gated_residual_rmsnorm_modulate(dtype_of(x), shape_of(x), rows_of(x), rows_of(gate), rows_of(y),
                                                   weight.const_data_ptr(), rows_of(shift), rows_of(scale),
                                                   static_cast<float>(eps), rows_of(updated), rows_of(modulated),
                                                   stream_of(x)),
               "gated_residual_rmsnorm_modulate");
  return {updated, modulated};
}

at::Tensor pit_pixel_mlp(const at::Tensor& pixels, const at::Tensor& norm_weight, const at::Tensor& shift,
                         const at::Tensor& scale, const at::Tensor& gate, const at::Tensor& fc1_weight,
                         const at::Tensor& fc1_bias, const at::Tensor& fc2_weight, const at::Tensor& fc2_bias,
                         double eps) {
  check_rows(pixels, pixels, "pixels");
  TORCH_CHECK(pixels.size(2) == PID_PIXEL_WIDTH, "pid_cuda::pit_pixel_mlp: pixel width must be ", PID_PIXEL_WIDTH);
  check_rows(shift, pixels, "shift");
  check_rows(scale, pixels, "scale");
  check_rows(gate, pixels, "gate");
  check_vector(norm_weight, PID_PIXEL_WIDTH, pixels, "norm_weight");
  check_vector(fc1_weight, PID_PIXEL_HIDDEN * PID_PIXEL_WIDTH, pixels, "fc1_weight");
  check_vector(fc1_bias, PID_PIXEL_HIDDEN, pixels, "fc1_bias");
  check_vector(fc2_weight, PID_PIXEL_WIDTH * PID_PIXEL_HIDDEN, pixels, "fc2_weight");
  check_vector(fc2_bias, PID_PIXEL_WIDTH, pixels, "fc2_bias");
  TORCH_CHECK(fc1_weight.size(0) == PID_PIXEL_HIDDEN, "pid_cuda::pit_pixel_mlp: fc1_weight must be [64, 16]");
  const c10::cuda::CUDAGuard guard(pixels.device());
  at::Tensor out = at::empty(pixels.sizes(), pixels.options());
  check_launch(pid_pit_pixel_mlp(dtype_of(pixels), shape_of(pixels), rows_of(pixels), norm_weight.const_data_ptr(),
                                 rows_of(shift), rows_of(scale), rows_of(gate), fc1_weight.const_data_ptr(),
                                 fc1_bias.const_data_ptr(), fc2_weight.const_data_ptr(), fc2_bias.const_data_ptr(),
                                 static_cast<float>(eps), rows_of(out), stream_of(pixels)),
               "pit_pixel_mlp");
  return out;
}

at::Tensor to_image(const at::Tensor& images, bool round_to_nearest) {
  TORCH_CHECK(images.is_cuda() && images.dim() == 4 && images.size(1) == 3,
              "pid_cuda::to_image: images must be a CUDA [B, 3, H, W] tensor");
  const c10::cuda::CUDAGuard guard(images.device());
  const int64_t batch = images.size(0), height = images.size(2), width = images.size(3);
  at::Tensor out = at::empty({batch, height, width, 3}, images.options().dtype(at::kByte));
  const int64_t strides[4] = {images.stride(0), images.stride(1), images.stride(2), images.stride(3)};
  check_launch(pid_image_to_uint8(dtype_of(images), batch, height, width, images.const_data_ptr(), strides,
                                  round_to_nearest ? 1 : 0, out.mutable_data_ptr<uint8_t>(), stream_of(images)),
               "to_image");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pid_cuda, CUDA, m) {
  m.impl("rmsnorm_modulate", &rmsnorm_modulate);
  m.impl("gated_residual", &gated_residual);
  m.impl("gated_residual_rmsnorm_modulate", &gated_residual_rmsnorm_modulate);
  m.impl("pit_pixel_mlp", &pit_pixel_mlp);
  m.impl("to_image", &to_image);
}

// `import pid_kernels._C` (the AOT build) loads this library, whose static initializer
// above registers the kernels; the Python module itself is empty. The JIT build loads
// the same library with torch.ops.load_library instead.
static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "CUDA kernels of torch.ops.pid_cuda", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module_def); }
