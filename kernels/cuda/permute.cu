// Permutation kernels: one CTA per destination (or source) row, threads over the row's values.
#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/permute.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 2147483647LL;

__global__ void gather_kernel(const float* src, int64_t src_stride, const int32_t* row_ids, int64_t dim, float* dst,
                              int64_t dst_stride) {
    const int64_t i = blockIdx.x;
    const int32_t r = row_ids[i];
    float* d = dst + i * dst_stride;
    for (int64_t c = threadIdx.x; c < dim; c += kThreads) d[c] = r >= 0 ? src[r * src_stride + c] : 0.0f;
}

__global__ void combine_kernel(const float* src, int64_t src_stride, const int32_t* slot_ids, const float* weights,
                               int64_t k, int64_t dim, float* dst, int64_t dst_stride, bool accumulate) {
    const int64_t t = blockIdx.x;
    float* d = dst + t * dst_stride;
    for (int64_t c = threadIdx.x; c < dim; c += kThreads) {
        float acc = accumulate ? d[c] : 0.0f;
        for (int64_t j = 0; j < k; ++j) {
            const int64_t s = slot_ids != nullptr ? slot_ids[t * k + j] : t * k + j;
            if (s >= 0) acc += weights[t * k + j] * src[s * src_stride + c];
        }
        d[c] = acc;
    }
}

__global__ void scatter_add_kernel(const float* src, int64_t src_stride, const int32_t* row_ids, const float* weights,
                                   int64_t dim, float* dst, int64_t dst_stride) {
    const int64_t i = blockIdx.x;
    const int32_t r = row_ids[i];
    if (r < 0) return;
    const float w = weights != nullptr ? weights[i] : 1.0f;
    for (int64_t c = threadIdx.x; c < dim; c += kThreads)
        atomicAdd(dst + r * dst_stride + c, w * src[i * src_stride + c]);
}

}  // namespace

void gather_rows(const float* src, int64_t src_stride, const int32_t* row_ids, int64_t num_rows, int64_t dim,
                 float* dst, int64_t dst_stride, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(num_rows <= kMaxGrid && dim >= 0, "cuda::gather_rows");
    if (num_rows <= 0 || dim == 0) return;
    gather_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(src, src_stride, row_ids, dim, dst,
                                                                            dst_stride);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void combine_rows(const float* src, int64_t src_stride, const int32_t* slot_ids, const float* weights,
                  int64_t num_tokens, int64_t k, int64_t dim, float* dst, int64_t dst_stride, bool accumulate,
                  cudaStream_t stream) {
    MOERIG_OP_REQUIRE(num_tokens <= kMaxGrid && k >= 0 && dim >= 0, "cuda::combine_rows");
    if (num_tokens <= 0 || dim == 0) return;
    combine_kernel<<<static_cast<unsigned>(num_tokens), kThreads, 0, stream>>>(src, src_stride, slot_ids, weights, k,
                                                                               dim, dst, dst_stride, accumulate);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void scatter_add_rows(const float* src, int64_t src_stride, const int32_t* row_ids, const float* weights,
                      int64_t num_rows, int64_t dim, float* dst, int64_t dst_stride, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(num_rows <= kMaxGrid && dim >= 0, "cuda::scatter_add_rows");
    if (num_rows <= 0 || dim == 0) return;
    scatter_add_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(src, src_stride, row_ids, weights, dim,
                                                                                 dst, dst_stride);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
