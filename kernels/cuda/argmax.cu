// Argmax: one CTA per row; each thread scans a strided slice, then warp and block reductions of (value, index).
#include <cfloat>

#include "kernels/cuda/argmax.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/op_error.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kNone = 0x7fffffff;

__device__ __forceinline__ bool better(float v, int i, float best_v, int best_i) {
    return best_i == kNone ? !(v != v) && i != kNone : (v > best_v || (v == best_v && i < best_i));
}

__global__ void argmax_kernel(const float* logits, int64_t n, int32_t* out) {
    const float* row = logits + static_cast<int64_t>(blockIdx.x) * n;
    float best_v = -INFINITY;
    int best_i = kNone;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
        const float v = row[i];
        if (better(v, static_cast<int>(i), best_v, best_i)) {
            best_v = v;
            best_i = static_cast<int>(i);
        }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best_v, off);
        const int oi = __shfl_xor_sync(0xffffffffu, best_i, off);
        if (better(ov, oi, best_v, best_i)) {
            best_v = ov;
            best_i = oi;
        }
    }
    __shared__ float s_v[kThreads / 32];
    __shared__ int s_i[kThreads / 32];
    if (threadIdx.x % 32 == 0) {
        s_v[threadIdx.x / 32] = best_v;
        s_i[threadIdx.x / 32] = best_i;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = s_v[0];
        int idx = s_i[0];
        for (int wi = 1; wi < kThreads / 32; ++wi) {
            if (better(s_v[wi], s_i[wi], v, idx)) {
                v = s_v[wi];
                idx = s_i[wi];
            }
        }
        out[blockIdx.x] = idx == kNone ? 0 : idx;
    }
}

}  // namespace

void argmax_rows(const float* logits, int64_t num_rows, int64_t n, int32_t* out, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(n > 0 && n < kNone && num_rows < (1LL << 31), "cuda::argmax_rows");
    if (num_rows <= 0) return;
    argmax_kernel<<<static_cast<unsigned>(num_rows), kThreads, 0, stream>>>(logits, n, out);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
