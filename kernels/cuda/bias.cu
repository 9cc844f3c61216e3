// Row-broadcast kernels: grid-stride loops over every (row, column) value.
#include "kernels/cuda/bias.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
    const int64_t blocks = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(blocks < 65535LL * 16 ? blocks : 65535LL * 16);
}

__global__ void add_bias_rows_kernel(float* y, const float* bias, int64_t total, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        y[i] += bias[i % n];
    }
}

__global__ void add_indexed_bias_kernel(float* y, int64_t y_stride, const float* bias, const int32_t* ids,
                                        int64_t total, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t s = i / n, c = i % n;
        const int32_t e = ids[s];
        if (e >= 0) y[s * y_stride + c] += bias[static_cast<int64_t>(e) * n + c];
    }
}

__global__ void scale_rows_by_sigmoid_gate_kernel(float* y, const float* g, int64_t total, int64_t n) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float gr = g[i / n];
        const float s = (gr / (1.0f + expf(-gr))) / gr;
        y[i] *= s;
    }
}

}  // namespace

void add_bias_rows(float* y, const float* bias, int64_t num_rows, int64_t n, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(n > 0 && num_rows >= 0, "cuda::add_bias_rows");
    const int64_t total = num_rows * n;
    if (total == 0) return;
    add_bias_rows_kernel<<<grid_for(total), kThreads, 0, stream>>>(y, bias, total, n);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void add_indexed_bias(float* y, int64_t y_stride, const float* bias, const int32_t* ids, int64_t num_slots, int64_t n,
                      cudaStream_t stream) {
    MOERIG_OP_REQUIRE(n > 0 && num_slots >= 0 && y_stride >= n, "cuda::add_indexed_bias");
    const int64_t total = num_slots * n;
    if (total == 0) return;
    add_indexed_bias_kernel<<<grid_for(total), kThreads, 0, stream>>>(y, y_stride, bias, ids, total, n);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void scale_rows_by_sigmoid_gate(float* y, const float* g, int64_t num_rows, int64_t n, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(n > 0 && num_rows >= 0, "cuda::scale_rows_by_sigmoid_gate");
    const int64_t total = num_rows * n;
    if (total == 0) return;
    scale_rows_by_sigmoid_gate_kernel<<<grid_for(total), kThreads, 0, stream>>>(y, g, total, n);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
