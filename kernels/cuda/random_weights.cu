// Random weight generation: a splitmix64 hash of (seed, word index) gives every 32-bit word its bits, then the
// scale fields of each block are overwritten with sane values.
#include <cuda_fp16.h>

#include "kernels/cuda/check.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/op_error.h"
#include "kernels/cuda/random_weights.h"

namespace moerig::kernels::cuda {
namespace {

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/// fp16 bits of a positive value in [2^-10, 2^-7): biased exponents 5..7 and a random mantissa.
__device__ __forceinline__ uint16_t random_scale_bits(uint64_t h) {
    const uint32_t exponent = 5u + static_cast<uint32_t>((h >> 10) % 3u);
    return static_cast<uint16_t>((exponent << 10) | (h & 0x3FFu));
}

__global__ void random_bytes_kernel(uint32_t* words, int64_t num_words, uint64_t seed) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_words;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        words[i] = static_cast<uint32_t>(splitmix64(seed * 0x100000001B3ull + static_cast<uint64_t>(i)));
    }
}

__global__ void random_floats_kernel(uint8_t* dst, int64_t num_elems, int elem_bytes, uint64_t seed) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_elems;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const uint64_t h = splitmix64(seed ^ (static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull));
        const float v = (static_cast<float>(h >> 40) / 16777216.0f * 2.0f - 1.0f) * 0.05f;
        if (elem_bytes == 4) {
            reinterpret_cast<float*>(dst)[i] = v;
        } else if (elem_bytes == 2 && seed & 1u) {  // caller encodes BF16 in the seed's low bit
            reinterpret_cast<uint16_t*>(dst)[i] = static_cast<uint16_t>(__float_as_uint(v) >> 16);
        } else {
            reinterpret_cast<__half*>(dst)[i] = __float2half(v);
        }
    }
}

/// Rewrites the scale fields of each block: offsets of up to two fp16 scales, or the E8M0 byte of MXFP4.
__global__ void fix_scales_kernel(uint8_t* dst, int64_t num_blocks, int block_bytes, int off_a, int off_b, bool e8m0,
                                  uint64_t seed) {
    for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < num_blocks;
         b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        uint8_t* blk = dst + b * block_bytes;
        const uint64_t h = splitmix64(seed + 0x51ED27ull * static_cast<uint64_t>(b));
        if (e8m0) {
            blk[0] = static_cast<uint8_t>(119 + (h % 4));  // 2^-9 .. 2^-6 per half-unit
            continue;
        }
        const uint16_t a = random_scale_bits(h);
        blk[off_a] = static_cast<uint8_t>(a & 0xFF);
        blk[off_a + 1] = static_cast<uint8_t>(a >> 8);
        if (off_b >= 0) {
            const uint16_t s = random_scale_bits(h >> 20);
            blk[off_b] = static_cast<uint8_t>(s & 0xFF);
            blk[off_b + 1] = static_cast<uint8_t>(s >> 8);
        }
    }
}

unsigned grid_for(int64_t n) {
    const int64_t blocks = (n + 255) / 256;
    return static_cast<unsigned>(blocks < 65535LL * 16 ? blocks : 65535LL * 16);
}

}  // namespace

void fill_random_weights(DType type, void* dst, int64_t num_elems, uint64_t seed, cudaStream_t stream) {
    constexpr const char* kOp = "cuda::fill_random_weights";
    if (!gemv_supported(type)) throw_unsupported(kOp, "type has no CUDA decoder");
    if (num_elems <= 0) return;
    auto* bytes = static_cast<uint8_t*>(dst);
    if (type == DType::F32 || type == DType::F16 || type == DType::BF16) {
        const int elem_bytes = type == DType::F32 ? 4 : 2;
        const uint64_t s = type == DType::BF16 ? (seed | 1u) : (seed & ~uint64_t{1});
        random_floats_kernel<<<grid_for(num_elems), 256, 0, stream>>>(bytes, num_elems, elem_bytes, s);
        MOERIG_CUDA_CHECK(cudaGetLastError());
        return;
    }
    int block_elems = 0, block_bytes = 0, off_a = 0, off_b = -1;
    bool e8m0 = false;
    switch (type) {
        case DType::Q8_0:
            block_elems = 32, block_bytes = 34;
            break;
        case DType::Q4_0:
            block_elems = 32, block_bytes = 18;
            break;
        case DType::MXFP4:
            block_elems = 32, block_bytes = 17, e8m0 = true;
            break;
        case DType::Q4_K:
            block_elems = 256, block_bytes = 144, off_b = 2;
            break;
        case DType::Q5_K:
            block_elems = 256, block_bytes = 176, off_b = 2;
            break;
        default:
            block_elems = 256, block_bytes = 210, off_a = 208;
            break;  // Q6_K
    }
    MOERIG_OP_REQUIRE(num_elems % block_elems == 0, kOp);
    MOERIG_OP_REQUIRE(reinterpret_cast<uintptr_t>(dst) % 4 == 0, kOp);
    const int64_t num_blocks = num_elems / block_elems;
    const int64_t total_bytes = num_blocks * block_bytes;
    const int64_t num_words = total_bytes / 4;
    random_bytes_kernel<<<grid_for(num_words), 256, 0, stream>>>(reinterpret_cast<uint32_t*>(bytes), num_words, seed);
    MOERIG_CUDA_CHECK(cudaGetLastError());
    if (total_bytes % 4 != 0) {  // the last few bytes (odd block sizes): zero is a valid quant
        MOERIG_CUDA_CHECK(cudaMemsetAsync(bytes + num_words * 4, 0, total_bytes - num_words * 4, stream));
    }
    fix_scales_kernel<<<grid_for(num_blocks), 256, 0, stream>>>(bytes, num_blocks, block_bytes, off_a, off_b, e8m0,
                                                                seed);
    MOERIG_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moerig::kernels::cuda
