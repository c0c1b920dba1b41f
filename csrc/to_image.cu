// to_image: [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], the last step before a file.
//
// Planar in, interleaved out. The fast path gives each thread 16 bytes of each colour
// plane (4 float32 or 8 half pixels) and writes their 12 or 24 interleaved bytes as
// 4-byte words; any other layout takes one thread per pixel through the strides.
#include "common.cuh"

namespace pid {
namespace {

constexpr int kThreads = 256;

// (clamp(v, -1, 1) + 1) * 127.5 rounded as float32 twice, never fused into an FMA, so
// the bytes equal the eager chain's; then truncated (release) or rounded half to even.
__device__ __forceinline__ uint32_t quantize(float v, bool round_to_nearest) {
  float scaled = __fmul_rn(__fadd_rn(fminf(fmaxf(v, -1.f), 1.f), 1.f), 127.5f);
  if (round_to_nearest) scaled = rintf(scaled);
  return __float2uint_rz(scaled);
}

template <typename T, int PIX>
__global__ void __launch_bounds__(kThreads)
    to_image_planar_kernel(const T* images, int64_t stride_batch, int64_t stride_channel, int64_t plane,
                           int64_t chunks, bool round_to_nearest, uint8_t* out) {
  const int64_t chunk = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (chunk >= chunks) return;
  const int64_t first = chunk * PIX;  // a chunk never straddles two images: plane % PIX == 0
  const T* src = images + (first / plane) * stride_batch + first % plane;
  float rgb[3][PIX];
#pragma unroll
  for (int c = 0; c < 3; ++c) load<T, PIX>(src + c * stride_channel, rgb[c]);
  uint32_t* dst = reinterpret_cast<uint32_t*>(out + first * 3);
#pragma unroll
  for (int word = 0; word < 3 * PIX / 4; ++word) {
    uint32_t packed = 0;
#pragma unroll
    for (int byte = 0; byte < 4; ++byte) {
      const int index = 4 * word + byte;  // pixel index / 3, channel index % 3
      packed |= quantize(rgb[index % 3][index / 3], round_to_nearest) << (8 * byte);
    }
    dst[word] = packed;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    to_image_strided_kernel(const T* images, int64_t sb, int64_t sc, int64_t sh, int64_t sw, int64_t height,
                            int64_t width, int64_t pixels, bool round_to_nearest, uint8_t* out) {
  const int64_t pixel = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (pixel >= pixels) return;
  const int64_t plane = height * width;
  const int64_t b = pixel / plane, y = pixel % plane / width, x = pixel % width;
  const T* src = images + b * sb + y * sh + x * sw;
#pragma unroll
  for (int c = 0; c < 3; ++c) out[pixel * 3 + c] = uint8_t(quantize(to_float(src[c * sc]), round_to_nearest));
}

}  // namespace
}  // namespace pid

extern "C" int pid_image_to_uint8(pid_dtype dtype, int64_t batch, int64_t height, int64_t width, const void* images,
                                  const int64_t strides[4], int round_to_nearest, uint8_t* out,
                                  cudaStream_t stream) {
  if (batch < 0 || height < 0 || width < 0) return cudaErrorInvalidValue;
  const int64_t plane = height * width, pixels = batch * plane;
  if (pixels == 0) return cudaSuccess;
  return pid::dispatch_float(dtype, [&](auto tag) -> cudaError_t {
    using T = typename decltype(tag)::type;
    constexpr int kPix = pid::kAccessBytes / sizeof(T);
    const int64_t sb = strides[0], sc = strides[1], sh = strides[2], sw = strides[3];
    const bool planar = sw == 1 && (height == 1 || sh == width) && plane % kPix == 0 &&
                        (sc * int64_t(sizeof(T))) % pid::kAccessBytes == 0 &&
                        (batch == 1 || (sb * int64_t(sizeof(T))) % pid::kAccessBytes == 0) &&
                        pid::aligned16(images) && reinterpret_cast<uintptr_t>(out) % 4 == 0;
    const T* src = static_cast<const T*>(images);
    if (planar) {
      const int64_t chunks = pixels / kPix;
      pid::to_image_planar_kernel<T, kPix><<<pid::ceil_div(chunks, pid::kThreads), pid::kThreads, 0, stream>>>(
          src, sb, sc, plane, chunks, round_to_nearest != 0, out);
    } else {
      pid::to_image_strided_kernel<T><<<pid::ceil_div(pixels, pid::kThreads), pid::kThreads, 0, stream>>>(
          src, sb, sc, sh, sw, height, width, pixels, round_to_nearest != 0, out);
    }
    return cudaGetLastError();
  });
}
