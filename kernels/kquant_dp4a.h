// Integer dot products of one K-quant weight super-block (Q4_K, Q5_K, Q6_K) with int8 activations quantised
// per 32 values (int8 q, float scale d, and the integer sum of q for the Q4_K/Q5_K min term: the Q8_1 idea),
// through 4-way int8 dot products (DP4A). The functions are __host__ __device__: the CUDA GEMV
// (kernels/cuda/gemv_dp4a.cu) runs them per lane, and the CPU tests run the same code with an emulated dp4a,
// so the bit and index math is checked on machines without a GPU. Plain C++17, no other dependencies.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define MOERIG_KQ_HD __host__ __device__ __forceinline__
#else
#define MOERIG_KQ_HD inline
#endif
#ifdef __CUDA_ARCH__
#define MOERIG_KQ_UNROLL _Pragma("unroll")
#else
#define MOERIG_KQ_UNROLL
#endif

namespace moerig::kernels::kq {

inline constexpr int kActBlock = 32;      // activation values per scale and sum
inline constexpr int kSuperBlock = 256;   // values per K-quant super-block
inline constexpr int kPartsPerBlock = 8;  // lanes sharing one super-block, 32 values each
inline constexpr int kActBlocksPerSuper = kSuperBlock / kActBlock;

/// c + the sum of the four products of the signed bytes of a and b (CUDA's __dp4a).
MOERIG_KQ_HD int dp4a(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    const auto ua = static_cast<uint32_t>(a), ub = static_cast<uint32_t>(b);
    for (int i = 0; i < 4; ++i) {
        c += static_cast<int>(static_cast<int8_t>(ua >> (8 * i))) * static_cast<int8_t>(ub >> (8 * i));
    }
    return c;
#endif
}

/// Byte-wise a - b, each byte modulo 256 (CUDA's __vsub4).
MOERIG_KQ_HD uint32_t vsub4(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
    return __vsub4(a, b);
#else
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= ((((a >> (8 * i)) & 0xFFu) - ((b >> (8 * i)) & 0xFFu)) & 0xFFu) << (8 * i);
    return r;
#endif
}

/// IEEE binary16 bits -> float.
MOERIG_KQ_HD float half_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {  // subnormal: mant * 2^-24, exact in float
        float f = static_cast<float>(mant) * (1.0f / 16777216.0f);
        std::memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

/// Four 32-bit words from a 16-byte aligned address (one 128-bit load on the device).
MOERIG_KQ_HD void load16(const void* p, int out[4]) {
#ifdef __CUDA_ARCH__
    const int4 v = *reinterpret_cast<const int4*>(p);
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
#else
    std::memcpy(out, p, 16);
#endif
}

/// Two 32-bit words from an 8-byte aligned address (one 64-bit load on the device).
MOERIG_KQ_HD void load8(const void* p, int out[2]) {
#ifdef __CUDA_ARCH__
    const int2 v = *reinterpret_cast<const int2*>(p);
    out[0] = v.x;
    out[1] = v.y;
#else
    std::memcpy(out, p, 8);
#endif
}

/// Two 32-bit words from a 2-byte aligned address (Q6_K blocks are 210 bytes), from 16-bit loads.
MOERIG_KQ_HD void load8_b2(const uint8_t* p, int out[2]) {
#ifdef __CUDA_ARCH__
    const auto* h = reinterpret_cast<const uint16_t*>(p);
    out[0] = static_cast<int>(static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16));
    out[1] = static_cast<int>(static_cast<uint32_t>(h[2]) | (static_cast<uint32_t>(h[3]) << 16));
#else
    std::memcpy(out, p, 8);
#endif
}

MOERIG_KQ_HD uint16_t load_u16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
    return *reinterpret_cast<const uint16_t*>(p);
#else
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
#endif
}

/// 6-bit scale and min of sub-block sb (0..7) of a Q4_K/Q5_K block (ggml's get_scale_min_k4, as
/// kernels::unpack_k4_scales), from the 12 packed scale bytes held as three little-endian words: selects and
/// shifts instead of byte loads, since sb differs between lanes.
MOERIG_KQ_HD void scale_min_k4(int sb, const uint32_t s[3], int& sc, int& m) {
    const int shift = 8 * (sb & 3);
    const uint32_t b0 = s[0] >> shift, b1 = s[1] >> shift, b2 = s[2] >> shift;  // bytes sb%4, 4 + sb%4, 8 + sb%4
    if (sb < 4) {
        sc = static_cast<int>(b0 & 63);
        m = static_cast<int>(b1 & 63);
    } else {
        sc = static_cast<int>((b2 & 0xF) | (((b0 >> 6) & 3) << 4));
        m = static_cast<int>(((b2 >> 4) & 0xF) | (((b1 >> 6) & 3) << 4));
    }
}

/// One lane's share of a Q4_K or Q5_K super-block. Part p takes quant bytes 16h .. 16h+15 (h = p % 2) of the
/// 64-value group j = p / 2: their low nibbles are values 64j + 16h + 0..15 of sub-block 2j ("lo"), their high
/// nibbles values 64j + 32 + 16h + 0..15 of sub-block 2j + 1 ("hi").
struct K4Part {
    int q_lo[4], q_hi[4];  // unsigned quants (< 32) in bytes, in value order
    float d_lo, d_hi;      // d * scale of sub-blocks 2j and 2j + 1
    float m_lo, m_hi;      // dmin * min of the two sub-blocks; 0 on the h = 1 lane (the min term is per 32 values)
};

/// One lane's share of a Q6_K super-block. Part p covers positions l0 .. l0+7 (l0 = 8 * (p % 4)) of half
/// hf = p / 4, in its four rows r: values 128 hf + 32 r + l0 .. l0+7, each row within one 16-value scale.
struct Q6Part {
    int q[4][2];  // signed quants q - 32 in bytes, per row
    float d[4];   // d * scale of each row's 16-value sub-block
};

/// Per-type unpacking and dot product. Activations of one super-block: xq its 256 int8 values (16-byte
/// aligned), xd its 8 per-32 scales, xs the 8 integer sums of the int8 values.
template <moerig::DType T>
struct KQuantDp4a;

template <bool kFifthBit>
MOERIG_KQ_HD K4Part unpack_k4(const uint8_t* blk, int part) {
    // Q4_K: d, dmin, scales[12], qs[128]. Q5_K: d, dmin, scales[12], qh[32], qs[128]. Both 16-byte aligned
    // multiples, so every 16-byte run below is aligned when the block is.
    const int j = part >> 1, h = part & 1;
    int head[4];  // d and dmin (fp16), then the 12 scale bytes
    load16(blk, head);
    const auto dd = static_cast<uint32_t>(head[0]);
    const float d = half_to_float(static_cast<uint16_t>(dd & 0xFFFF));
    const float dmin = half_to_float(static_cast<uint16_t>(dd >> 16));
    const uint32_t scales[3] = {static_cast<uint32_t>(head[1]), static_cast<uint32_t>(head[2]),
                                static_cast<uint32_t>(head[3])};
    int sc_lo, m_lo, sc_hi, m_hi;
    scale_min_k4(2 * j, scales, sc_lo, m_lo);
    scale_min_k4(2 * j + 1, scales, sc_hi, m_hi);
    K4Part w;
    w.d_lo = d * static_cast<float>(sc_lo);
    w.d_hi = d * static_cast<float>(sc_hi);
    w.m_lo = h == 0 ? dmin * static_cast<float>(m_lo) : 0.0f;
    w.m_hi = h == 0 ? dmin * static_cast<float>(m_hi) : 0.0f;
    int qs[4];
    load16(blk + (kFifthBit ? 48 : 16) + 32 * j + 16 * h, qs);
    int qh[4] = {0, 0, 0, 0};
    if (kFifthBit) load16(blk + 16 + 16 * h, qh);  // qh byte l: bit 2j is value 64j + l's fifth bit, 2j+1 of +32
    MOERIG_KQ_UNROLL
    for (int i = 0; i < 4; ++i) {
        const auto q = static_cast<uint32_t>(qs[i]);
        uint32_t lo = q & 0x0F0F0F0Fu, hi = (q >> 4) & 0x0F0F0F0Fu;
        if (kFifthBit) {
            const auto b = static_cast<uint32_t>(qh[i]);
            lo |= ((b >> (2 * j)) & 0x01010101u) << 4;
            hi |= ((b >> (2 * j + 1)) & 0x01010101u) << 4;
        }
        w.q_lo[i] = static_cast<int>(lo);
        w.q_hi[i] = static_cast<int>(hi);
    }
    return w;
}

MOERIG_KQ_HD float dot_k4(const K4Part& w, int part, const int8_t* xq, const float* xd, const int* xs) {
    const int j = part >> 1, h = part & 1;
    int x_lo[4], x_hi[4];
    load16(xq + 64 * j + 16 * h, x_lo);
    load16(xq + 64 * j + 32 + 16 * h, x_hi);
    int s_lo = 0, s_hi = 0;
    MOERIG_KQ_UNROLL
    for (int i = 0; i < 4; ++i) {
        s_lo = dp4a(w.q_lo[i], x_lo[i], s_lo);
        s_hi = dp4a(w.q_hi[i], x_hi[i], s_hi);
    }
    return xd[2 * j] * (w.d_lo * static_cast<float>(s_lo) - w.m_lo * static_cast<float>(xs[2 * j])) +
           xd[2 * j + 1] * (w.d_hi * static_cast<float>(s_hi) - w.m_hi * static_cast<float>(xs[2 * j + 1]));
}

template <>
struct KQuantDp4a<moerig::DType::Q4_K> {
    using Part = K4Part;
    static constexpr int kBlockBytes = 144;
    static constexpr int kAlign = 16;  // weight rows must start at this alignment
    MOERIG_KQ_HD static Part unpack(const uint8_t* blk, int part) { return unpack_k4<false>(blk, part); }
    MOERIG_KQ_HD static float dot(const Part& w, int part, const int8_t* xq, const float* xd, const int* xs) {
        return dot_k4(w, part, xq, xd, xs);
    }
};

template <>
struct KQuantDp4a<moerig::DType::Q5_K> {
    using Part = K4Part;
    static constexpr int kBlockBytes = 176;
    static constexpr int kAlign = 16;
    MOERIG_KQ_HD static Part unpack(const uint8_t* blk, int part) { return unpack_k4<true>(blk, part); }
    MOERIG_KQ_HD static float dot(const Part& w, int part, const int8_t* xq, const float* xd, const int* xs) {
        return dot_k4(w, part, xq, xd, xs);
    }
};

template <>
struct KQuantDp4a<moerig::DType::Q6_K> {
    using Part = Q6Part;
    static constexpr int kBlockBytes = 210;
    static constexpr int kAlign = 2;
    // ql[128], qh[64], scales[16] (int8), d. In half hf, ql byte l (< 32) holds rows 0 (low nibble) and 2 (high),
    // ql byte 32 + l rows 1 and 3; qh byte l holds the two high bits of rows 0..3 at bits 0, 2, 4, 6.
    MOERIG_KQ_HD static Part unpack(const uint8_t* blk, int part) {
        const int hf = part >> 2, l0 = 8 * (part & 3);
        int ql_a[2], ql_b[2], qh[2];
        load8_b2(blk + 64 * hf + l0, ql_a);
        load8_b2(blk + 64 * hf + 32 + l0, ql_b);
        load8_b2(blk + 128 + 32 * hf + l0, qh);
        const float d = half_to_float(load_u16(blk + 208));
        const auto* sc = reinterpret_cast<const int8_t*>(blk + 192 + 8 * hf + l0 / 16);
        Part w;
        MOERIG_KQ_UNROLL
        for (int r = 0; r < 4; ++r) w.d[r] = d * static_cast<float>(sc[2 * r]);
        MOERIG_KQ_UNROLL
        for (int i = 0; i < 2; ++i) {
            const auto a = static_cast<uint32_t>(ql_a[i]), b = static_cast<uint32_t>(ql_b[i]);
            const auto h = static_cast<uint32_t>(qh[i]);
            const uint32_t rows[4] = {
                (a & 0x0F0F0F0Fu) | ((h & 0x03030303u) << 4),
                (b & 0x0F0F0F0Fu) | (((h >> 2) & 0x03030303u) << 4),
                ((a >> 4) & 0x0F0F0F0Fu) | (((h >> 4) & 0x03030303u) << 4),
                ((b >> 4) & 0x0F0F0F0Fu) | (((h >> 6) & 0x03030303u) << 4),
            };
            MOERIG_KQ_UNROLL
            for (int r = 0; r < 4; ++r) w.q[r][i] = static_cast<int>(vsub4(rows[r], 0x20202020u));
        }
        return w;
    }
    MOERIG_KQ_HD static float dot(const Part& w, int part, const int8_t* xq, const float* xd, const int*) {
        const int hf = part >> 2, l0 = 8 * (part & 3);
        float sum = 0.0f;
        MOERIG_KQ_UNROLL
        for (int r = 0; r < 4; ++r) {
            const int ab = 4 * hf + r;  // activation block of row r
            int x[2];
            load8(xq + kActBlock * ab + l0, x);
            const int s = dp4a(w.q[r][1], x[1], dp4a(w.q[r][0], x[0], 0));
            sum += xd[ab] * (w.d[r] * static_cast<float>(s));
        }
        return sum;
    }
};

/// The whole super-block's dot product: the sum of its kPartsPerBlock lane shares (what a warp reduces).
template <moerig::DType T>
MOERIG_KQ_HD float block_dot(const uint8_t* blk, const int8_t* xq, const float* xd, const int* xs) {
    float sum = 0.0f;
    for (int p = 0; p < kPartsPerBlock; ++p) {
        sum += KQuantDp4a<T>::dot(KQuantDp4a<T>::unpack(blk, p), p, xq, xd, xs);
    }
    return sum;
}

/// block_dot for a type known at run time (Q4_K, Q5_K or Q6_K; anything else is a caller error and reads as Q6_K).
MOERIG_KQ_HD float block_dot(moerig::DType type, const uint8_t* blk, const int8_t* xq, const float* xd, const int* xs) {
    switch (type) {
        case moerig::DType::Q4_K:
            return block_dot<moerig::DType::Q4_K>(blk, xq, xd, xs);
        case moerig::DType::Q5_K:
            return block_dot<moerig::DType::Q5_K>(blk, xq, xd, xs);
        default:
            return block_dot<moerig::DType::Q6_K>(blk, xq, xd, xs);
    }
}

}  // namespace moerig::kernels::kq
