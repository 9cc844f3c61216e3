// RMSNorm: one CTA per row, block reduction of the sum of squares, then a scaling pass.
#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/rms_norm.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rms_norm_kernel(const float* x, const float* weight, float* y, int64_t n, float eps) {
    const float* xr = x + blockIdx.x * n;
    float* yr = y + blockIdx.x * n;
    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) sum += xr[i] * xr[i];
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    __shared__ float warp_sums[kThreads / 32];
    if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sum;
    __syncthreads();
    float total = 0.0f;
    for (int wi = 0; wi < kThreads / 32; ++wi) total += warp_sums[wi];
    const float scale = 1.0f / sqrtf(total / static_cast<float>(n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
        const float v = xr[i] * scale;
        yr[i] = weight != nullptr ? v * weight[i] : v;
    }
}

}  // namespace

void rms_norm_rows(const float* x, const float* weight, float* y, int64_t num_rows, int64_t n, float eps,
                   cudaStream_t stream) {
    MOERIG_OP_REQUIRE(n > 0 && num_rows >= 0 && num_rows < (1LL << 31), "cuda::rms_norm_rows");
    if (num_rows == 0) return;
    rms_norm_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(x, weight, y, n, eps);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
