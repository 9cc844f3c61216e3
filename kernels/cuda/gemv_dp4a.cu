// DP4A GEMV: a warp per weight row; each lane takes every 32nd block, keeps the block's weights as packed
// int32 words in registers and reuses them for up to kMaxVecs activation vectors; warp-shuffle reduction.
// Weight blocks are 34 (Q8_0) or 18 (Q4_0) bytes, so only 2-byte aligned: words are assembled from 16-bit loads.
#include <cuda_fp16.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/cuda/op_error.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kBlock = 32;
constexpr int kWarpsPerCta = 4;
constexpr int kMaxVecs = 8;

int64_t scales_offset(int64_t num_vecs, int64_t num_cols) {
    return (num_vecs * num_cols + 15) / 16 * 16;
}

__global__ void quantize_kernel(const float* x, int64_t num_blocks_total, int8_t* q, float* d) {
    const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
    if (b >= num_blocks_total) return;
    const int lane = threadIdx.x % 32;
    const float v = x[b * kBlock + lane];
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    q[b * kBlock + lane] = static_cast<int8_t>(roundf(v * inv));
    if (lane == 0) d[b] = __half2float(__float2half_rn(scale));
}

__device__ __forceinline__ int load_int_b2(const uint8_t* p) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return static_cast<int>(static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16));
}

template <DType T>
__global__ void __launch_bounds__(kWarpsPerCta * 32)
    gemv_dp4a_kernel(const uint8_t* w, int64_t num_rows, int64_t num_blocks, size_t row_bytes, const int8_t* xq,
                     const float* xd, int64_t num_cols, int num_vecs, float* y) {
    const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerCta) + threadIdx.x / 32;
    if (row >= num_rows) return;
    const int lane = threadIdx.x % 32;
    constexpr int kBlockBytes = T == DType::Q8_0 ? 34 : 18;
    const uint8_t* wrow = w + static_cast<size_t>(row) * row_bytes;
    float acc[kMaxVecs];
#pragma unroll
    for (int v = 0; v < kMaxVecs; ++v) acc[v] = 0.0f;
    for (int64_t b = lane; b < num_blocks; b += 32) {
        const uint8_t* blk = wrow + b * kBlockBytes;
        const float dw = __half2float(*reinterpret_cast<const __half*>(blk));
        int wi[8];
        if (T == DType::Q8_0) {
#pragma unroll
            for (int i = 0; i < 8; ++i) wi[i] = load_int_b2(blk + 2 + 4 * i);
        } else {
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int packed = load_int_b2(blk + 2 + 4 * i);
                wi[i] = packed & 0x0F0F0F0F;             // elements 4i .. 4i+3
                wi[i + 4] = (packed >> 4) & 0x0F0F0F0F;  // elements 16+4i .. 16+4i+3
            }
        }
#pragma unroll
        for (int v = 0; v < kMaxVecs; ++v) {
            if (v >= num_vecs) break;
            const int* xi = reinterpret_cast<const int*>(xq + v * num_cols + b * kBlock);
            int sumi = 0;
#pragma unroll
            for (int i = 0; i < 8; ++i) sumi = __dp4a(wi[i], xi[i], sumi);
            if (T == DType::Q4_0) {
                int sx = 0;
#pragma unroll
                for (int i = 0; i < 8; ++i) sx = __dp4a(0x01010101, xi[i], sx);
                sumi -= 8 * sx;
            }
            acc[v] += static_cast<float>(sumi) * (dw * xd[v * num_blocks + b]);
        }
    }
#pragma unroll
    for (int v = 0; v < kMaxVecs; ++v) {
        if (v >= num_vecs) break;
        float s = acc[v];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) y[v * num_rows + row] = s;
    }
}

}  // namespace

bool gemv_dp4a_supported(DType type) {
    return type == DType::Q8_0 || type == DType::Q4_0;
}

int64_t q8_activation_bytes(int64_t num_vecs, int64_t num_cols) {
    return scales_offset(num_vecs, num_cols) + num_vecs * (num_cols / kBlock) * 4;
}

void quantize_q8_activations(const float* x, int64_t num_vecs, int64_t num_cols, void* xq, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(num_vecs >= 0 && num_cols > 0 && num_cols % kBlock == 0, "cuda::quantize_q8_activations");
    const int64_t total = num_vecs * (num_cols / kBlock);
    if (total == 0) return;
    auto* q = static_cast<int8_t*>(xq);
    auto* d = reinterpret_cast<float*>(static_cast<uint8_t*>(xq) + scales_offset(num_vecs, num_cols));
    constexpr int kWarps = 8;
    const auto grid = static_cast<unsigned>((total + kWarps - 1) / kWarps);
    quantize_kernel<<<grid, kWarps * 32, 0, stream>>>(x, total, q, d);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void gemv_dp4a(DType type, const void* w, int64_t num_rows, int64_t num_cols, const void* xq, int64_t num_vecs,
               float* y, cudaStream_t stream) {
    constexpr const char* kOp = "cuda::gemv_dp4a";
    if (!gemv_dp4a_supported(type)) throw_unsupported(kOp, "weight type is not Q8_0 or Q4_0");
    MOERIG_OP_REQUIRE(num_rows > 0 && num_cols > 0 && num_cols % kBlock == 0 && num_vecs >= 0, kOp);
    MOERIG_OP_REQUIRE(reinterpret_cast<uintptr_t>(w) % 2 == 0 && reinterpret_cast<uintptr_t>(xq) % 16 == 0, kOp);
    if (num_vecs == 0) return;
    const int64_t num_blocks = num_cols / kBlock;
    const size_t row_bytes = static_cast<size_t>(num_blocks) * (type == DType::Q8_0 ? 34 : 18);
    const auto* q = static_cast<const int8_t*>(xq);
    const auto* d = reinterpret_cast<const float*>(static_cast<const uint8_t*>(xq) + scales_offset(num_vecs, num_cols));
    const auto grid = static_cast<unsigned>((num_rows + kWarpsPerCta - 1) / kWarpsPerCta);
    for (int64_t v0 = 0; v0 < num_vecs; v0 += kMaxVecs) {
        const int n = static_cast<int>(num_vecs - v0 < kMaxVecs ? num_vecs - v0 : kMaxVecs);
        const int8_t* qv = q + v0 * num_cols;
        const float* dv = d + v0 * num_blocks;
        float* yv = y + v0 * num_rows;
        if (type == DType::Q8_0) {
            gemv_dp4a_kernel<DType::Q8_0><<<grid, kWarpsPerCta * 32, 0, stream>>>(
                static_cast<const uint8_t*>(w), num_rows, num_blocks, row_bytes, qv, dv, num_cols, n, yv);
        } else {
            gemv_dp4a_kernel<DType::Q4_0><<<grid, kWarpsPerCta * 32, 0, stream>>>(
                static_cast<const uint8_t*>(w), num_rows, num_blocks, row_bytes, qv, dv, num_cols, n, yv);
        }
        MOERIG_CUDA_CHECK(cudaGetLastError());
    }
}

}  // namespace moerig::kernels::cuda
