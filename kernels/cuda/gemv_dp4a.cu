// DP4A GEMV: a warp per weight row; warp-shuffle reduction. Q8_0/Q4_0: each lane takes every 32nd block, keeps
// the block's weights as packed int32 words in registers and reuses them for up to kMaxVecs activation vectors;
// blocks are 34 or 18 bytes, so only 2-byte aligned: words are assembled from 16-bit loads. K-quants: eight
// lanes share a 256-value super-block (kernels/kquant_dp4a.h), so a warp reads four consecutive blocks per step,
// Q4_K/Q5_K quants with 128-bit loads; the same kernel serves the expert-indexed products of MoE decode.
#include <cuda_fp16.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/cuda/op_error.h"
#include "kernels/kquant_dp4a.h"

namespace moerig::kernels::cuda {
namespace {

constexpr int kBlock = 32;
constexpr int kWarpsPerCta = 4;
constexpr int kMaxVecs = 8;

int64_t scales_offset(int64_t num_vecs, int64_t num_cols) {
    return (num_vecs * num_cols + 15) / 16 * 16;
}

__global__ void quantize_kernel(const float* x, int64_t num_blocks_total, int8_t* q, float* d, int* sums) {
    const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
    if (b >= num_blocks_total) return;
    const int lane = threadIdx.x % 32;
    const float v = x[b * kBlock + lane];
    float amax = fabsf(v);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    const int qi = static_cast<int>(roundf(v * inv));
    q[b * kBlock + lane] = static_cast<int8_t>(qi);
    int sum = qi;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) {
        d[b] = __half2float(__float2half_rn(scale));
        sums[b] = sum;
    }
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

/// Arguments of the K-quant kernel. Dense products: one slot (blockIdx.y = 0) with num_vecs vectors. Expert-
/// indexed products: slot s multiplies matrix ids[s] by vector s / slots_per_x (num_vecs = 1).
struct KqParams {
    const uint8_t* w;
    int64_t row_bytes;
    int64_t matrix_bytes;
    const int32_t* ids;  // nullptr: dense
    int64_t num_rows;
    int num_blocks;  // super-blocks per row
    const int8_t* xq;
    const float* xd;
    const int* xs;
    int64_t num_cols;
    int64_t slots_per_x;
    int num_vecs;
    float* y;
    int64_t y_stride;  // between slots
};

constexpr int kKqBlocksPerStep = 32 / kq::kPartsPerBlock;

template <DType T, int kVecs>
__global__ void __launch_bounds__(kWarpsPerCta * 32) gemv_kquant_kernel(KqParams p) {
    using K = kq::KQuantDp4a<T>;
    const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerCta) + threadIdx.x / 32;
    if (row >= p.num_rows) return;  // whole warps leave; no CTA-wide synchronisation follows
    const int lane = threadIdx.x % 32;
    const int part = lane % kq::kPartsPerBlock;
    const int64_t slot = blockIdx.y;
    float* y = p.y + slot * p.y_stride;
    const uint8_t* w = p.w;
    if (p.ids != nullptr) {
        const int32_t e = p.ids[slot];
        if (e < 0) {  // expert not held here: defined zeros, so a combine may read the slot
            if (lane == 0) y[row] = 0.0f;
            return;
        }
        w += static_cast<int64_t>(e) * p.matrix_bytes;
    }
    const uint8_t* wrow = w + row * p.row_bytes;
    const int64_t vec0 = slot / p.slots_per_x;
    const int64_t num_act_blocks = p.num_cols / kq::kActBlock;
    float acc[kVecs];
#pragma unroll
    for (int v = 0; v < kVecs; ++v) acc[v] = 0.0f;
#pragma unroll 2
    for (int b = lane / kq::kPartsPerBlock; b < p.num_blocks; b += kKqBlocksPerStep) {
        const typename K::Part wp = K::unpack(wrow + static_cast<int64_t>(b) * K::kBlockBytes, part);
#pragma unroll
        for (int v = 0; v < kVecs; ++v) {
            if (v >= p.num_vecs) break;
            const int64_t vec = vec0 + v;
            const int64_t ab = vec * num_act_blocks + static_cast<int64_t>(b) * kq::kActBlocksPerSuper;
            acc[v] += K::dot(wp, part, p.xq + vec * p.num_cols + static_cast<int64_t>(b) * kq::kSuperBlock, p.xd + ab,
                             p.xs + ab);
        }
    }
#pragma unroll
    for (int v = 0; v < kVecs; ++v) {
        if (v >= p.num_vecs) break;
        float s = acc[v];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0) y[v * p.num_rows + row] = s;
    }
}

bool is_kquant(DType type) {
    return type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K;
}

/// Launches the K-quant kernel with the smallest vector count template that covers p.num_vecs.
template <DType T>
void launch_kquant(const KqParams& p, int64_t num_slots, cudaStream_t stream) {
    const dim3 grid(static_cast<unsigned>((p.num_rows + kWarpsPerCta - 1) / kWarpsPerCta),
                    static_cast<unsigned>(num_slots));
    const dim3 block(kWarpsPerCta * 32);
    if (p.num_vecs <= 1) {
        gemv_kquant_kernel<T, 1><<<grid, block, 0, stream>>>(p);
    } else if (p.num_vecs <= 2) {
        gemv_kquant_kernel<T, 2><<<grid, block, 0, stream>>>(p);
    } else if (p.num_vecs <= 4) {
        gemv_kquant_kernel<T, 4><<<grid, block, 0, stream>>>(p);
    } else {
        gemv_kquant_kernel<T, kMaxVecs><<<grid, block, 0, stream>>>(p);
    }
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void launch_kquant(DType type, const KqParams& p, int64_t num_slots, cudaStream_t stream) {
    switch (type) {
        case DType::Q4_K:
            launch_kquant<DType::Q4_K>(p, num_slots, stream);
            break;
        case DType::Q5_K:
            launch_kquant<DType::Q5_K>(p, num_slots, stream);
            break;
        default:
            launch_kquant<DType::Q6_K>(p, num_slots, stream);
            break;
    }
}

int kquant_align(DType type) {
    return type == DType::Q6_K ? kq::KQuantDp4a<DType::Q6_K>::kAlign : kq::KQuantDp4a<DType::Q4_K>::kAlign;
}

constexpr int64_t kMaxSlotsPerLaunch = 65535;

/// Where quantize_q8_activations puts the int8 values, the per-32 scales and the per-32 sums.
struct ActivationLayout {
    const int8_t* q;
    const float* d;
    const int* sums;
    ActivationLayout(const void* xq, int64_t num_vecs, int64_t num_cols) {
        const auto* base = static_cast<const uint8_t*>(xq);
        q = static_cast<const int8_t*>(xq);
        d = reinterpret_cast<const float*>(base + scales_offset(num_vecs, num_cols));
        sums = reinterpret_cast<const int*>(d + num_vecs * (num_cols / kBlock));
    }
};

}  // namespace

bool gemv_dp4a_supported(DType type) {
    return type == DType::Q8_0 || type == DType::Q4_0 || is_kquant(type);
}

bool gemv_dp4a_indexed_supported(DType type) {
    return is_kquant(type);
}

size_t gemv_dp4a_weight_alignment(DType type) {
    return is_kquant(type) ? static_cast<size_t>(kquant_align(type)) : 2;
}

int64_t q8_activation_bytes(int64_t num_vecs, int64_t num_cols) {
    return scales_offset(num_vecs, num_cols) + num_vecs * (num_cols / kBlock) * 8;
}

void quantize_q8_activations(const float* x, int64_t num_vecs, int64_t num_cols, void* xq, cudaStream_t stream) {
    MOERIG_OP_REQUIRE(num_vecs >= 0 && num_cols > 0 && num_cols % kBlock == 0, "cuda::quantize_q8_activations");
    const int64_t total = num_vecs * (num_cols / kBlock);
    if (total == 0) return;
    const ActivationLayout a(xq, num_vecs, num_cols);
    constexpr int kWarps = 8;
    const auto grid = static_cast<unsigned>((total + kWarps - 1) / kWarps);
    quantize_kernel<<<grid, kWarps * 32, 0, stream>>>(x, total, const_cast<int8_t*>(a.q), const_cast<float*>(a.d),
                                                      const_cast<int*>(a.sums));
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

void gemv_dp4a(DType type, const void* w, int64_t num_rows, int64_t num_cols, const void* xq, int64_t num_vecs,
               float* y, cudaStream_t stream) {
    constexpr const char* kOp = "cuda::gemv_dp4a";
    if (!gemv_dp4a_supported(type)) throw_unsupported(kOp, "weight type is not Q8_0, Q4_0, Q4_K, Q5_K or Q6_K");
    MOERIG_OP_REQUIRE(num_rows > 0 && num_cols > 0 && num_cols % kBlock == 0 && num_vecs >= 0, kOp);
    MOERIG_OP_REQUIRE(reinterpret_cast<uintptr_t>(w) % gemv_dp4a_weight_alignment(type) == 0 &&
                          reinterpret_cast<uintptr_t>(xq) % 16 == 0,
                      kOp);
    if (is_kquant(type)) MOERIG_OP_REQUIRE(num_cols % kq::kSuperBlock == 0, kOp);
    if (num_vecs == 0) return;
    const int64_t num_blocks = num_cols / kBlock;
    const ActivationLayout a(xq, num_vecs, num_cols);
    if (is_kquant(type)) {
        const int64_t num_super = num_cols / kq::kSuperBlock;
        KqParams p{};
        p.w = static_cast<const uint8_t*>(w);
        p.row_bytes = static_cast<int64_t>(dtype_bytes(type, static_cast<uint64_t>(num_cols)));
        p.num_rows = num_rows;
        p.num_blocks = static_cast<int>(num_super);
        p.num_cols = num_cols;
        p.slots_per_x = 1;
        for (int64_t v0 = 0; v0 < num_vecs; v0 += kMaxVecs) {
            p.num_vecs = static_cast<int>(num_vecs - v0 < kMaxVecs ? num_vecs - v0 : kMaxVecs);
            p.xq = a.q + v0 * num_cols;
            p.xd = a.d + v0 * num_blocks;
            p.xs = a.sums + v0 * num_blocks;
            p.y = y + v0 * num_rows;
            launch_kquant(type, p, 1, stream);
        }
        return;
    }
    const size_t row_bytes = static_cast<size_t>(num_blocks) * (type == DType::Q8_0 ? 34 : 18);
    const auto grid = static_cast<unsigned>((num_rows + kWarpsPerCta - 1) / kWarpsPerCta);
    for (int64_t v0 = 0; v0 < num_vecs; v0 += kMaxVecs) {
        const int n = static_cast<int>(num_vecs - v0 < kMaxVecs ? num_vecs - v0 : kMaxVecs);
        const int8_t* qv = a.q + v0 * num_cols;
        const float* dv = a.d + v0 * num_blocks;
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

void gemv_dp4a_indexed(DType type, const void* w, int64_t matrix_bytes, int64_t num_rows, int64_t num_cols,
                       const int32_t* expert_ids, int64_t num_slots, const void* xq, int64_t num_x_vecs,
                       int64_t slots_per_x, float* y, int64_t y_stride, cudaStream_t stream) {
    constexpr const char* kOp = "cuda::gemv_dp4a_indexed";
    if (!gemv_dp4a_indexed_supported(type)) throw_unsupported(kOp, "weight type is not Q4_K, Q5_K or Q6_K");
    MOERIG_OP_REQUIRE(num_rows > 0 && num_cols > 0 && num_cols % kq::kSuperBlock == 0 && num_slots >= 0, kOp);
    MOERIG_OP_REQUIRE(slots_per_x >= 1 && num_x_vecs * slots_per_x >= num_slots && y_stride >= num_rows, kOp);
    const auto align = static_cast<int64_t>(gemv_dp4a_weight_alignment(type));
    MOERIG_OP_REQUIRE(reinterpret_cast<uintptr_t>(w) % align == 0 && matrix_bytes % align == 0 &&
                          reinterpret_cast<uintptr_t>(xq) % 16 == 0,
                      kOp);
    if (num_slots == 0) return;
    const int64_t num_blocks = num_cols / kBlock;
    const ActivationLayout a(xq, num_x_vecs, num_cols);
    KqParams p{};
    p.w = static_cast<const uint8_t*>(w);
    p.row_bytes = static_cast<int64_t>(dtype_bytes(type, static_cast<uint64_t>(num_cols)));
    p.matrix_bytes = matrix_bytes;
    p.num_rows = num_rows;
    p.num_blocks = static_cast<int>(num_cols / kq::kSuperBlock);
    p.num_cols = num_cols;
    p.slots_per_x = slots_per_x;
    p.num_vecs = 1;
    p.y_stride = y_stride;
    // grid.y is at most 65535: launch in chunks of whole vectors' slots.
    const int64_t chunk = kMaxSlotsPerLaunch / slots_per_x * slots_per_x;
    for (int64_t s0 = 0; s0 < num_slots; s0 += chunk) {
        const int64_t n = num_slots - s0 < chunk ? num_slots - s0 : chunk;
        const int64_t v0 = s0 / slots_per_x;
        p.ids = expert_ids + s0;
        p.xq = a.q + v0 * num_cols;
        p.xd = a.d + v0 * num_blocks;
        p.xs = a.sums + v0 * num_blocks;
        p.y = y + s0 * y_stride;
        launch_kquant(type, p, n, stream);
    }
}

}  // namespace moerig::kernels::cuda
