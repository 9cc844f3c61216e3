// Dequantisation kernel: one thread per (block, part), writing the part's runs of values.
#include "kernels/cuda/check.h"
#include "kernels/cuda/dequantize.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/quant_dev.cuh"

namespace moerig::kernels::cuda {
namespace {

using dev::Quant;
using moerig::DType;

template <DType T>
__global__ void dequantize_kernel(const uint8_t* src, int64_t num_elems, int64_t num_blocks, float* dst) {
    using Q = Quant<T>;
    constexpr int kVals = Q::kRuns * Q::kRunLen;
    const int64_t num_threads = num_blocks * Q::kParts;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < num_threads;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int64_t b = idx / Q::kParts;
        const int part = static_cast<int>(idx % Q::kParts);
        const int64_t valid = num_elems - b * Q::kBlockElems;
        if (Q::kBounded && part >= valid) continue;
        float v[kVals];
        Q::decode(src + b * Q::kBlockBytes, part, v);
        float* out = dst + b * Q::kBlockElems;
#pragma unroll
        for (int run = 0; run < Q::kRuns; ++run)
#pragma unroll
            for (int i = 0; i < Q::kRunLen; ++i) out[Q::col(part, run) + i] = v[run * Q::kRunLen + i];
    }
}

struct DequantizeLaunch {
    const void* src;
    int64_t num_elems;
    float* dst;
    cudaStream_t stream;

    template <DType T>
    void operator()() {
        using Q = Quant<T>;
        if (!Q::kBounded && num_elems % Q::kBlockElems != 0) {
            throw_bad_args("cuda::dequantize", "num_elems must be a whole number of blocks");
        }
        const int64_t num_blocks = (num_elems + Q::kBlockElems - 1) / Q::kBlockElems;
        const int64_t num_threads = num_blocks * Q::kParts;
        constexpr int kThreads = 256;
        const int64_t grid = std::min<int64_t>((num_threads + kThreads - 1) / kThreads, 65535LL * 8);
        dequantize_kernel<T><<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(static_cast<const uint8_t*>(src),
                                                                                   num_elems, num_blocks, dst);
        MOERIG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace

void dequantize(DType type, const void* src, int64_t num_elems, float* dst, cudaStream_t stream) {
    if (num_elems <= 0) return;
    if (!gemv_supported(type)) throw_unsupported("cuda::dequantize", "type has no CUDA decoder");
    DequantizeLaunch launch{src, num_elems, dst, stream};
    dev::dispatch_type(type, launch);
}

}  // namespace moerig::kernels::cuda
