// Device-side decoding of ggml quantisation blocks, shared by the dequantise, GEMV and GEMM kernels.
// Each block type is split into kParts lane-sized parts; a part decodes kRuns runs of kRunLen
// consecutive values, so that a warp reads a block's bytes in coalesced words and x in vector loads.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace moerig::kernels::cuda::dev {

// Decoders are host-callable too, so that their bit layouts can be checked against the CPU on any machine.
#define MOERIG_HD __host__ __device__ __forceinline__
#ifdef __CUDA_ARCH__
#define MOERIG_UNROLL _Pragma("unroll")
#else
#define MOERIG_UNROLL
#endif

MOERIG_HD float bits_to_float(uint32_t bits) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(bits);
#else
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

/// Exact u - bias for a small integer u < 2^23 and bias <= 256, without the quarter-rate int-to-float
/// conversion: the bits 0x4B000000|u are the float 2^23 + u.
MOERIG_HD float small_uint_to_float(uint32_t u, float bias = 0.0f) {
    return bits_to_float(0x4B000000u | u) - (8388608.0f + bias);
}

MOERIG_HD float half_bits_to_float(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
MOERIG_HD float bf16_bits_to_float(uint16_t h) {
    return bits_to_float(static_cast<uint32_t>(h) << 16);
}
MOERIG_HD uint16_t load_u16(const uint8_t* p) {
    return *reinterpret_cast<const uint16_t*>(p);
}
MOERIG_HD uint32_t load_u32(const uint8_t* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}
/// ggml's E8M0_TO_FP32_HALF: 2^(e - 128).
MOERIG_HD float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
    return bits_to_float(bits);
}
/// E2M1 code point times two (kMxfp4Values), computed instead of looked up to avoid divergent loads.
MOERIG_HD float mxfp4_value(uint32_t nib) {
    const uint32_t m = nib & 7u;
    const int mag = m < 4 ? static_cast<int>(m) : static_cast<int>((2u + (m & 1u)) << ((m >> 1) - 1));
    return static_cast<float>((nib & 8u) ? -mag : mag);
}
/// 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block (ggml get_scale_min_k4).
MOERIG_HD void scale_min_k4(int j, const uint8_t* q, float& sc, float& m) {
    if (j < 4) {
        sc = small_uint_to_float(q[j] & 63);
        m = small_uint_to_float(q[j + 4] & 63);
    } else {
        sc = small_uint_to_float((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        m = small_uint_to_float((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/// Per-type decoding. Primary template left undefined: only the specialisations below exist.
template <moerig::DType T>
struct Quant;

// Float types: a virtual block of 32 values, one per lane; `valid` bounds the last block of a row.
template <>
struct Quant<moerig::DType::F32> {
    static constexpr int kBlockElems = 32, kBlockBytes = 128, kParts = 32, kRuns = 1, kRunLen = 1;
    static constexpr bool kBounded = true;
    MOERIG_HD static int col(int part, int) { return part; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        v[0] = reinterpret_cast<const float*>(b)[part];
    }
};
template <>
struct Quant<moerig::DType::F16> {
    static constexpr int kBlockElems = 32, kBlockBytes = 64, kParts = 32, kRuns = 1, kRunLen = 1;
    static constexpr bool kBounded = true;
    MOERIG_HD static int col(int part, int) { return part; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        v[0] = half_bits_to_float(reinterpret_cast<const uint16_t*>(b)[part]);
    }
};
template <>
struct Quant<moerig::DType::BF16> {
    static constexpr int kBlockElems = 32, kBlockBytes = 64, kParts = 32, kRuns = 1, kRunLen = 1;
    static constexpr bool kBounded = true;
    MOERIG_HD static int col(int part, int) { return part; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        v[0] = bf16_bits_to_float(reinterpret_cast<const uint16_t*>(b)[part]);
    }
};

// Q8_0 (34 bytes, 2-byte aligned): 8 parts of 4 consecutive values.
template <>
struct Quant<moerig::DType::Q8_0> {
    static constexpr int kBlockElems = 32, kBlockBytes = 34, kParts = 8, kRuns = 1, kRunLen = 4;
    static constexpr bool kBounded = false;
    MOERIG_HD static int col(int part, int) { return 4 * part; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        const float d = half_bits_to_float(load_u16(b));
        const uint32_t lo = load_u16(b + 2 + 4 * part);
        const uint32_t hi = load_u16(b + 4 + 4 * part);
        const uint32_t q = lo | (hi << 16);
        MOERIG_UNROLL
        for (int t = 0; t < 4; ++t) v[t] = small_uint_to_float(((q >> (8 * t)) & 0xFF) ^ 0x80u, 128.0f) * d;
    }
};

// Q4_0 (18 bytes): part p holds qs[2p], qs[2p+1] -> values 2p, 2p+1 (low nibbles) and 16+2p, 17+2p.
template <>
struct Quant<moerig::DType::Q4_0> {
    static constexpr int kBlockElems = 32, kBlockBytes = 18, kParts = 8, kRuns = 2, kRunLen = 2;
    static constexpr bool kBounded = false;
    MOERIG_HD static int col(int part, int run) { return 2 * part + 16 * run; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        const float d = half_bits_to_float(load_u16(b));
        const uint32_t q = load_u16(b + 2 + 2 * part);
        v[0] = small_uint_to_float(q & 0xF, 8.0f) * d;
        v[1] = small_uint_to_float((q >> 8) & 0xF, 8.0f) * d;
        v[2] = small_uint_to_float((q >> 4) & 0xF, 8.0f) * d;
        v[3] = small_uint_to_float((q >> 12) & 0xF, 8.0f) * d;
    }
};

// MXFP4 (17 bytes, byte aligned): same nibble order as Q4_0.
template <>
struct Quant<moerig::DType::MXFP4> {
    static constexpr int kBlockElems = 32, kBlockBytes = 17, kParts = 8, kRuns = 2, kRunLen = 2;
    static constexpr bool kBounded = false;
    MOERIG_HD static int col(int part, int run) { return 2 * part + 16 * run; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        const float d = e8m0_half(b[0]);
        const uint32_t q0 = b[1 + 2 * part];
        const uint32_t q1 = b[2 + 2 * part];
        v[0] = mxfp4_value(q0 & 0xF) * d;
        v[1] = mxfp4_value(q1 & 0xF) * d;
        v[2] = mxfp4_value(q0 >> 4) * d;
        v[3] = mxfp4_value(q1 >> 4) * d;
    }
};

// Q4_K (144 bytes, 4-byte aligned): part l reads qs word l; il = l/8 selects 64 values, j = 4*(l%8).
template <>
struct Quant<moerig::DType::Q4_K> {
    static constexpr int kBlockElems = 256, kBlockBytes = 144, kParts = 32, kRuns = 2, kRunLen = 4;
    static constexpr bool kBounded = false;
    MOERIG_HD static int col(int part, int run) { return 64 * (part >> 3) + 4 * (part & 7) + 32 * run; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        const int il = part >> 3;
        const float d = half_bits_to_float(load_u16(b));
        const float dmin = half_bits_to_float(load_u16(b + 2));
        const uint8_t* scales = b + 4;
        const uint32_t q = load_u32(b + 16 + 4 * part);
        float sc0, m0, sc1, m1;
        scale_min_k4(2 * il, scales, sc0, m0);
        scale_min_k4(2 * il + 1, scales, sc1, m1);
        const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
        MOERIG_UNROLL
        for (int t = 0; t < 4; ++t) {
            v[t] = d0 * small_uint_to_float((q >> (8 * t)) & 0xF) - mm0;
            v[4 + t] = d1 * small_uint_to_float((q >> (8 * t + 4)) & 0xF) - mm1;
        }
    }
};

// Q5_K (176 bytes): as Q4_K plus the fifth bits in qh (bit 2*il for the low run, 2*il+1 for the high).
template <>
struct Quant<moerig::DType::Q5_K> {
    static constexpr int kBlockElems = 256, kBlockBytes = 176, kParts = 32, kRuns = 2, kRunLen = 4;
    static constexpr bool kBounded = false;
    MOERIG_HD static int col(int part, int run) { return 64 * (part >> 3) + 4 * (part & 7) + 32 * run; }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        const int il = part >> 3;
        const int j = 4 * (part & 7);
        const float d = half_bits_to_float(load_u16(b));
        const float dmin = half_bits_to_float(load_u16(b + 2));
        const uint8_t* scales = b + 4;
        const uint32_t h = load_u32(b + 16 + j);
        const uint32_t q = load_u32(b + 48 + 4 * part);
        float sc0, m0, sc1, m1;
        scale_min_k4(2 * il, scales, sc0, m0);
        scale_min_k4(2 * il + 1, scales, sc1, m1);
        const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
        MOERIG_UNROLL
        for (int t = 0; t < 4; ++t) {
            const uint32_t hb = h >> (8 * t);
            const uint32_t lo = ((q >> (8 * t)) & 0xF) + (((hb >> (2 * il)) & 1u) << 4);
            const uint32_t hi = ((q >> (8 * t + 4)) & 0xF) + (((hb >> (2 * il + 1)) & 1u) << 4);
            v[t] = d0 * small_uint_to_float(lo) - mm0;
            v[4 + t] = d1 * small_uint_to_float(hi) - mm1;
        }
    }
};

// Q6_K (210 bytes, 2-byte aligned): part l covers ql bytes 4l..4l+3 of half h = l/16. Within a half, ql
// bytes 0..31 hold quant rows 0 (low nibble) and 2 (high), bytes 32..63 rows 1 and 3; row r's two high bits
// sit at bit 2r of qh[32h + li].
template <>
struct Quant<moerig::DType::Q6_K> {
    static constexpr int kBlockElems = 256, kBlockBytes = 210, kParts = 32, kRuns = 2, kRunLen = 4;
    static constexpr bool kBounded = false;
    MOERIG_HD static int col(int part, int run) {
        const int h = part >> 4, j = 4 * (part & 15);
        const int row = (j < 32 ? 0 : 1) + 2 * run;
        return 128 * h + 32 * row + (j & 31);
    }
    MOERIG_HD static void decode(const uint8_t* b, int part, float* v) {
        const int h = part >> 4, j = 4 * (part & 15);
        const int li = j & 31;
        const int row_lo = j < 32 ? 0 : 1, row_hi = row_lo + 2;
        const uint32_t ql = load_u16(b + 64 * h + j) | (static_cast<uint32_t>(load_u16(b + 64 * h + j + 2)) << 16);
        const uint32_t qh =
            load_u16(b + 128 + 32 * h + li) | (static_cast<uint32_t>(load_u16(b + 128 + 32 * h + li + 2)) << 16);
        const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
        const float d = half_bits_to_float(load_u16(b + 208));
        const float d_lo = d * static_cast<float>(sc[8 * h + 2 * row_lo + li / 16]);
        const float d_hi = d * static_cast<float>(sc[8 * h + 2 * row_hi + li / 16]);
        MOERIG_UNROLL
        for (int t = 0; t < 4; ++t) {
            const uint32_t hb = qh >> (8 * t);
            const uint32_t q_lo = ((ql >> (8 * t)) & 0xF) | (((hb >> (2 * row_lo)) & 3u) << 4);
            const uint32_t q_hi = ((ql >> (8 * t + 4)) & 0xF) | (((hb >> (2 * row_hi)) & 3u) << 4);
            v[t] = d_lo * small_uint_to_float(q_lo, 32.0f);
            v[4 + t] = d_hi * small_uint_to_float(q_hi, 32.0f);
        }
    }
};

/// Calls f.template operator()<T>() for the runtime type; returns false for types without a decoder.
template <typename F>
inline bool dispatch_type(moerig::DType type, F&& f) {
    using moerig::DType;
    switch (type) {
        case DType::F32:
            f.template operator()<DType::F32>();
            return true;
        case DType::F16:
            f.template operator()<DType::F16>();
            return true;
        case DType::BF16:
            f.template operator()<DType::BF16>();
            return true;
        case DType::Q8_0:
            f.template operator()<DType::Q8_0>();
            return true;
        case DType::Q4_0:
            f.template operator()<DType::Q4_0>();
            return true;
        case DType::MXFP4:
            f.template operator()<DType::MXFP4>();
            return true;
        case DType::Q4_K:
            f.template operator()<DType::Q4_K>();
            return true;
        case DType::Q5_K:
            f.template operator()<DType::Q5_K>();
            return true;
        case DType::Q6_K:
            f.template operator()<DType::Q6_K>();
            return true;
        default:
            return false;
    }
}

}  // namespace moerig::kernels::cuda::dev
