// Internal to kernels/: per-type dot products of one weight row with one quantised activation row.
// matmul.cpp picks a function once per call and runs it over rows and tokens.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"

namespace moerig::kernels {

/// w_row: n values of the weight type; x: n values of activation_type(weight type).
using VecDotFn = float (*)(const void* w_row, const void* x, int64_t n);

/// 6-bit scales and mins of Q4_K/Q5_K sub-blocks, from the 12 packed bytes (see BlockQ4_K).
inline void unpack_k4_scales(const uint8_t* packed, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t w[3];
    std::memcpy(w, packed, 12);
    const uint32_t sc_lo = w[0] & 0x3f3f3f3f;
    const uint32_t mn_lo = w[1] & 0x3f3f3f3f;
    const uint32_t sc_hi = (w[2] & 0x0f0f0f0f) | (((w[0] >> 6) & 0x03030303) << 4);
    const uint32_t mn_hi = ((w[2] >> 4) & 0x0f0f0f0f) | (((w[1] >> 6) & 0x03030303) << 4);
    std::memcpy(sc, &sc_lo, 4);
    std::memcpy(sc + 4, &sc_hi, 4);
    std::memcpy(mn, &mn_lo, 4);
    std::memcpy(mn + 4, &mn_hi, 4);
}

/// The fastest dot product for the weight type on this build, or the portable scalar one.
/// Returns nullptr for types matmul does not support.
VecDotFn vec_dot_fn(DType weight, bool scalar_only = false);

}  // namespace moerig::kernels
