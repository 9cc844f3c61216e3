// Element-wise kernels: grid-stride loops, one value per thread per step.
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
    const int64_t blocks = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(blocks < 65535LL * 16 ? blocks : 65535LL * 16);
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* y, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void swiglu_oai_kernel(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float g = fminf(gate[i], limit);
        const float u = fminf(fmaxf(up[i], -limit), limit);
        y[i] = g / (1.0f + expf(-alpha * g)) * (u + 1.0f);
    }
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        y[i] = a[i] + b[i];
    }
}

}  // namespace

void swiglu(const float* gate, const float* up, float* y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, y, n);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void swiglu_oai(const float* gate, const float* up, float* y, int64_t n, float alpha, float limit,
                cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_oai_kernel<<<grid_for(n), kThreads, 0, stream>>>(gate, up, y, n, alpha, limit);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    add_kernel<<<grid_for(n), kThreads, 0, stream>>>(a, b, y, n);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
