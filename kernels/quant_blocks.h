// Byte layouts of ggml's quantisation blocks, identical to the data inside GGUF files.
// Plain structs with no dependencies so that CUDA twins (C++17, no fmt) can include this header too.
// Half-precision fields are raw IEEE binary16 bits (uint16_t); see kernels/quant.h for conversions.
#pragma once

#include <cstdint>

namespace moerig::kernels {

inline constexpr int kQK = 32;     // elements per block of the 32-wide types (Q4_0 ... Q8_0, MXFP4)
inline constexpr int kQK_K = 256;  // elements per super-block of the K-quants
inline constexpr int kKScaleBytes = 12;

/// x = (q - 8) * d, q in [0, 15]; element j in low nibble of qs[j], j + 16 in the high nibble.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK / 2];
};
/// x = q * d + m, q in [0, 15]; nibble order as Q4_0.
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK / 2];
};
/// x = (q - 16) * d, q in [0, 31]; fifth bits of elements 0..31 in the bits of qh (little endian).
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
/// x = q * d + m, q in [0, 31].
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};
/// x = q * d, q in [-127, 127].
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};
/// Activation block for K-quant dot products: x = q * d, with sums of each 16 quants.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};
/// 16 sub-blocks of 16: x = d * (scales & 15) * q - dmin * (scales >> 4), q in [0, 3].
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
/// 16 sub-blocks of 16: x = d * (scale6 - 32) * (q - 4 * !hbit), 2 low bits in qs, high bit in hmask.
struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[kKScaleBytes];
    uint16_t d;
};
/// 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes: x = d * sc * q - dmin * m.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qs[kQK_K / 2];
};
/// As Q4_K plus a fifth bit per element in qh.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleBytes];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
/// 16 sub-blocks of 16 with int8 scales: x = d * scale * (q - 32), q in [0, 63] (4 low bits in ql, 2 in qh).
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};
/// OCP microscaling FP4: E2M1 values scaled by 2^(e - 127); nibble order as Q4_0.
struct BlockMXFP4 {
    uint8_t e;
    uint8_t qs[kQK / 2];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
                  sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockQ8_K) == 292 &&
                  sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockMXFP4) == 17,
              "block layouts must match ggml byte for byte");

/// E2M1 code points times two (ggml's table): value = kMxfp4Values[nibble] * 2^(e - 128).
inline constexpr int8_t kMxfp4Values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

}  // namespace moerig::kernels
