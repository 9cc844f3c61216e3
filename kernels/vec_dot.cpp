// Dot products of weight rows (every supported type) with activations quantised as llama.cpp does:
// Q8_0 for the 32-wide types and MXFP4, Q8_K for K-quants, F16/BF16 for F16/BF16 weights, F32 for F32. Integer sums per
// block, then one float multiply-add per block. A portable scalar version of every kernel, and AVX2 versions (maddubs,
// or VNNI dpbusd where the build targets it) of the types MoE checkpoints use.
#include "kernels/vec_dot.h"

#include <cstring>

#include "kernels/matmul.h"
#include "kernels/quant.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define MOERIG_VEC_AVX2 1
#include <immintrin.h>
#endif

namespace moerig::kernels {
namespace {

// Block scales are converted once per 32 or 256 values: keep the conversion inline (F16C when available).
#if MOERIG_VEC_AVX2
inline float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}
#else
inline float h2f(uint16_t h) {
    return fp16_to_fp32(h);
}
#endif

inline float e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? 0x00200000u << e : static_cast<uint32_t>(e - 1) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// Q3_K: 16 6-bit scales (stored with +32 offset) from 12 packed bytes.
inline void unpack_q3_scales(const uint8_t* packed, int8_t out[16]) {
    for (int j = 0; j < 16; ++j) {
        int sc = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        sc |= ((packed[8 + j % 4] >> (2 * (j / 4))) & 3) << 4;
        out[j] = static_cast<int8_t>(sc - 32);
    }
}

// ---- scalar kernels ----------------------------------------------------------------------------------

float dot_f32_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const float*>(vw);
    const auto* x = static_cast<const float*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += w[i] * x[i];
    return sum;
}

// Half weights with half activations (as ggml-cpu): the product of two F16 (BF16) values is exact in float,
// so only the order of the float additions differs from ggml_vec_dot_f16 / the tinyBLAS F16 kernel.
float dot_f16_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const uint16_t*>(vw);
    const auto* x = static_cast<const uint16_t*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += h2f(w[i]) * h2f(x[i]);
    return sum;
}

float dot_bf16_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const uint16_t*>(vw);
    const auto* x = static_cast<const uint16_t*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += bf16_to_fp32(w[i]) * bf16_to_fp32(x[i]);
    return sum;
}

float dot_q4_0_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ4_0*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK; ++i) {
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += ((w[i].qs[j] & 0xF) - 8) * x[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + kQK / 2];
        }
        sum += sumi * h2f(w[i].d) * h2f(x[i].d);
    }
    return sum;
}

float dot_q4_1_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ4_1*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK; ++i) {
        int sumi = 0, sumx = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += (w[i].qs[j] & 0xF) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + kQK / 2];
            sumx += x[i].qs[j] + x[i].qs[j + kQK / 2];
        }
        const float dx = h2f(x[i].d);
        sum += sumi * h2f(w[i].d) * dx + sumx * h2f(w[i].m) * dx;
    }
    return sum;
}

template <bool kHasMin, class Block>
float dot_q5_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const Block*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK; ++i) {
        uint32_t qh;
        std::memcpy(&qh, w[i].qh, 4);
        int sumi = 0, sumx = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = (w[i].qs[j] & 0xF) | (((qh >> j) << 4) & 0x10);
            const int q1 = (w[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
            const int off = kHasMin ? 0 : 16;
            sumi += (q0 - off) * x[i].qs[j] + (q1 - off) * x[i].qs[j + kQK / 2];
            sumx += x[i].qs[j] + x[i].qs[j + kQK / 2];
        }
        const float dx = h2f(x[i].d);
        sum += sumi * h2f(w[i].d) * dx;
        if constexpr (kHasMin) sum += sumx * h2f(w[i].m) * dx;
    }
    return sum;
}

float dot_q8_0_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ8_0*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK; ++i) {
        int sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += w[i].qs[j] * x[i].qs[j];
        sum += sumi * h2f(w[i].d) * h2f(x[i].d);
    }
    return sum;
}

float dot_mxfp4_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockMXFP4*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK; ++i) {
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += kMxfp4Values[w[i].qs[j] & 0xF] * x[i].qs[j] + kMxfp4Values[w[i].qs[j] >> 4] * x[i].qs[j + kQK / 2];
        }
        sum += sumi * e8m0_half(w[i].e) * h2f(x[i].d);
    }
    return sum;
}

float dot_q8_k_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ8_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int sumi = 0;
        for (int j = 0; j < kQK_K; ++j) sumi += w[i].qs[j] * x[i].qs[j];
        sum += sumi * w[i].d * x[i].d;
    }
    return sum;
}

float dot_q2_k_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ2_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const int8_t* q8 = x[i].qs;
        int summs = 0, sumi = 0;
        for (int j = 0; j < 16; ++j) summs += x[i].bsums[j] * (w[i].scales[j] >> 4);
        int is = 0;
        for (int half = 0; half < 2; ++half) {
            const uint8_t* q2 = w[i].qs + 32 * half;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; ++k, ++is) {
                    int s = 0;
                    for (int l = 0; l < 16; ++l) s += ((q2[16 * k + l] >> shift) & 3) * q8[l + 16 * k];
                    sumi += (w[i].scales[is] & 0xF) * s;
                }
                q8 += 32;
            }
        }
        sum += x[i].d * (h2f(w[i].d) * sumi - h2f(w[i].dmin) * summs);
    }
    return sum;
}

float dot_q3_k_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ3_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int8_t scales[16];
        unpack_q3_scales(w[i].scales, scales);
        const int8_t* q8 = x[i].qs;
        int sumi = 0;
        // Sub-block is = 2 * bit + k covers elements 16 * is ... with 2-bit plane `bit` of qs[32*half + l] and
        // bit `bit` of hmask[l] (GCC 12's loop vectoriser miscompiled a running uint8_t mask here).
        for (int bit = 0; bit < 8; ++bit) {
            const uint8_t* q3 = w[i].qs + 32 * (bit / 4);
            const int shift = 2 * (bit % 4);
            for (int k = 0; k < 2; ++k) {
                int s = 0;
                for (int l = 16 * k; l < 16 * k + 16; ++l) {
                    const int q = ((q3[l] >> shift) & 3) - (((w[i].hmask[l] >> bit) & 1) ? 0 : 4);
                    s += q * q8[32 * bit + l];
                }
                sumi += scales[2 * bit + k] * s;
            }
        }
        sum += x[i].d * h2f(w[i].d) * sumi;
    }
    return sum;
}

float dot_q4_k_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ4_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sc[8], mn[8];
        unpack_k4_scales(w[i].scales, sc, mn);
        int sumi = 0, summs = 0;
        for (int j = 0; j < 8; ++j) summs += mn[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        for (int j = 0; j < 4; ++j) {
            const uint8_t* q4 = w[i].qs + 32 * j;
            const int8_t* q8 = x[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; ++l) {
                s0 += (q4[l] & 0xF) * q8[l];
                s1 += (q4[l] >> 4) * q8[l + 32];
            }
            sumi += sc[2 * j] * s0 + sc[2 * j + 1] * s1;
        }
        sum += x[i].d * (h2f(w[i].d) * sumi - h2f(w[i].dmin) * summs);
    }
    return sum;
}

float dot_q5_k_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ5_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sc[8], mn[8];
        unpack_k4_scales(w[i].scales, sc, mn);
        int sumi = 0, summs = 0;
        for (int j = 0; j < 8; ++j) summs += mn[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        for (int j = 0; j < 4; ++j) {
            const uint8_t* q4 = w[i].qs + 32 * j;
            const int8_t* q8 = x[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; ++l) {
                const int h0 = (w[i].qh[l] >> (2 * j)) & 1, h1 = (w[i].qh[l] >> (2 * j + 1)) & 1;
                s0 += ((q4[l] & 0xF) | (h0 << 4)) * q8[l];
                s1 += ((q4[l] >> 4) | (h1 << 4)) * q8[l + 32];
            }
            sumi += sc[2 * j] * s0 + sc[2 * j + 1] * s1;
        }
        sum += x[i].d * (h2f(w[i].d) * sumi - h2f(w[i].dmin) * summs);
    }
    return sum;
}

float dot_q6_k_scalar(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ6_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    float sum = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int sumi = 0;
        for (int half = 0; half < 2; ++half) {
            const uint8_t* ql = w[i].ql + 64 * half;
            const uint8_t* qh = w[i].qh + 32 * half;
            const int8_t* sc = w[i].scales + 8 * half;
            const int8_t* q8 = x[i].qs + 128 * half;
            int s[8] = {};
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                s[is + 0] += (((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32) * q8[l];
                s[is + 2] += (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
                s[is + 4] += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
                s[is + 6] += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
            }
            for (int k = 0; k < 8; ++k) sumi += sc[k] * s[k];
        }
        sum += x[i].d * h2f(w[i].d) * sumi;
    }
    return sum;
}

#if MOERIG_VEC_AVX2
// ---- AVX2 kernels ------------------------------------------------------------------------------------

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum_i32(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(v);
}

// Sums of u8 x s8 products in groups of 4 -> 8 int32 (u < 128 or products small enough not to saturate).
inline __m256i dot_u8_s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// Signed x signed via |a| and sign(a) applied to b (both in [-127, 127]).
inline __m256i dot_s8_s8(__m256i a, __m256i b) {
    return dot_u8_s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// 16 packed nibbles -> 32 bytes: element j in byte j (low nibbles first, then high), as the 32-wide blocks.
inline __m256i unpack_nibbles_32(const uint8_t* qs) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

float dot_f32_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const float*>(vw);
    const auto* x = static_cast<const float*>(vx);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) sum += w[i] * x[i];
    return sum;
}

template <bool kBf16>
inline __m256 load8_half(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kBf16) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
        return _mm256_cvtph_ps(h);
    }
}

// Both operands half (F16 or BF16), widened to float; products are exact, sums are float FMAs in 4 x 8 lanes
// (ggml_vec_dot_f16 and llamafile's tinyBLAS also accumulate widened products in float vector lanes).
template <bool kBf16>
float dot_half_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const uint16_t*>(vw);
    const auto* x = static_cast<const uint16_t*>(vx);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load8_half<kBf16>(w + i), load8_half<kBf16>(x + i), a0);
        a1 = _mm256_fmadd_ps(load8_half<kBf16>(w + i + 8), load8_half<kBf16>(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load8_half<kBf16>(w + i + 16), load8_half<kBf16>(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load8_half<kBf16>(w + i + 24), load8_half<kBf16>(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load8_half<kBf16>(w + i), load8_half<kBf16>(x + i), a0);
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; ++i) {
        sum += kBf16 ? bf16_to_fp32(w[i]) * bf16_to_fp32(x[i]) : h2f(w[i]) * h2f(x[i]);
    }
    return sum;
}

float dot_q8_0_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ8_0*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / kQK;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = dot_s8_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs)),
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)));
        const __m256i p1 = dot_s8_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i + 1].qs)),
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i + 1].qs)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(x[i].d)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i + 1].d) * h2f(x[i + 1].d)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; ++i) {
        const __m256i p0 = dot_s8_s8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs)),
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(x[i].d)), _mm256_cvtepi32_ps(p0), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

float dot_q4_0_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ4_0*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    const __m256i k8 = _mm256_set1_epi8(8);
    auto block = [&](int64_t i) {
        const __m256i q = _mm256_sub_epi8(unpack_nibbles_32(w[i].qs), k8);
        return _mm256_cvtepi32_ps(dot_s8_s8(q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs))));
    };
    // Two independent accumulators: one FMA chain per block would bound the loop by FMA latency.
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / kQK;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(x[i].d)), block(i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i + 1].d) * h2f(x[i + 1].d)), block(i + 1), acc1);
    }
    for (; i < nb; ++i) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(x[i].d)), block(i), acc0);
    return hsum(_mm256_add_ps(acc0, acc1));
}

float dot_mxfp4_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockMXFP4*>(vw);
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Values)));
    auto block = [&](int64_t i) {
        const __m256i q = _mm256_shuffle_epi8(table, unpack_nibbles_32(w[i].qs));
        return _mm256_cvtepi32_ps(dot_s8_s8(q, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs))));
    };
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int64_t nb = n / kQK;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(e8m0_half(w[i].e) * h2f(x[i].d)), block(i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(e8m0_half(w[i + 1].e) * h2f(x[i + 1].d)), block(i + 1), acc1);
    }
    for (; i < nb; ++i) acc0 = _mm256_fmadd_ps(_mm256_set1_ps(e8m0_half(w[i].e) * h2f(x[i].d)), block(i), acc0);
    return hsum(_mm256_add_ps(acc0, acc1));
}

// Sum over 8 sub-blocks of mins[j] * (bsums[2j] + bsums[2j+1]).
inline int k4_min_sum(const int16_t* bsums, const uint8_t* mn) {
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums));
    const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    const __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn)));
    return hsum_i32(_mm_madd_epi16(pairs, mins));
}

float dot_q4_k_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ4_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sc[8], mn[8];
        unpack_k4_scales(w[i].scales, sc, mn);
        acc_min += x[i].d * h2f(w[i].dmin) * k4_min_sum(x[i].bsums, mn);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * j));
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * j));
            const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * j + 32));
            // maddubs: |15 * 127 * 2| fits int16, then scale pairs to int32.
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(sc[2 * j]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * h2f(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - acc_min;
}

float dot_q5_k_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ5_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        uint8_t sc[8], mn[8];
        unpack_k4_scales(w[i].scales, sc, mn);
        acc_min += x[i].d * h2f(w[i].dmin) * k4_min_sum(x[i].bsums, mn);
        __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qh));
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; ++j) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * j));
            // Bits 2j and 2j+1 of qh are the fifth bits of the two sub-blocks; consume two bits per step.
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
            qh = _mm256_srli_epi16(qh, 2);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * j));
            const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 64 * j + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), _mm256_set1_epi16(sc[2 * j]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * h2f(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - acc_min;
}

// Two sub-block scales as a 16-lane int16 vector: lanes 0-7 (first 16 bytes' pairs) get a, 8-15 get b.
inline __m256i scale_pair(int8_t a, int8_t b) {
    return _mm256_set_m128i(_mm_set1_epi16(b), _mm_set1_epi16(a));
}

float dot_q6_k_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ6_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        // The -32 offset of every quant, applied once through the 16-value sums of the activations.
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].bsums));
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales)));
        __m256i sumi = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
        sumi = _mm256_sub_epi32(_mm256_setzero_si256(), sumi);
        for (int half = 0; half < 2; ++half) {
            const uint8_t* ql = w[i].ql + 64 * half;
            const int8_t* sc = w[i].scales + 8 * half;
            const int8_t* q8 = x[i].qs + 128 * half;
            const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
            const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
            const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qh + 32 * half));
            const __m256i q1 =
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
            const __m256i q2 =
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
            const __m256i q3 =
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
            const __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
            const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8));
            const __m256i x2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 32));
            const __m256i x3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64));
            const __m256i x4 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 96));
            // maddubs: 63 * 127 * 2 fits int16.
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(q1, x1), scale_pair(sc[0], sc[1]));
            const __m256i p2 = _mm256_madd_epi16(_mm256_maddubs_epi16(q2, x2), scale_pair(sc[2], sc[3]));
            const __m256i p3 = _mm256_madd_epi16(_mm256_maddubs_epi16(q3, x3), scale_pair(sc[4], sc[5]));
            const __m256i p4 = _mm256_madd_epi16(_mm256_maddubs_epi16(q4, x4), scale_pair(sc[6], sc[7]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p1, p2), _mm256_add_epi32(p3, p4)));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * h2f(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc);
}
float dot_q2_k_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ2_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float acc_min = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const __m128i sc_packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[i].scales));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc_packed, 4), _mm_set1_epi8(0x0F)));
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].bsums));
        const __m256i pm = _mm256_madd_epi16(bs, mins);
        acc_min += x[i].d * h2f(w[i].dmin) *
                   hsum_i32(_mm_add_epi32(_mm256_castsi256_si128(pm), _mm256_extracti128_si256(pm, 1)));
        __m256i sumi = _mm256_setzero_si256();
        for (int half = 0; half < 2; ++half) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * half));
            for (int p = 0; p < 4; ++p) {
                const int is = 8 * half + 2 * p;  // bytes 0-15 are sub-block is, 16-31 are is + 1
                const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3);
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 128 * half + 32 * p));
                const __m256i prod = _mm256_maddubs_epi16(v, xv);
                const __m256i scales =
                    _mm256_set_m128i(_mm_set1_epi16(w[i].scales[is + 1] & 0xF), _mm_set1_epi16(w[i].scales[is] & 0xF));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(prod, scales));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * h2f(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - acc_min;
}

float dot_q3_k_avx2(const void* vw, const void* vx, int64_t n) {
    const auto* w = static_cast<const BlockQ3_K*>(vw);
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int8_t sc[16];
        unpack_q3_scales(w[i].scales, sc);
        // Quants are stored as q + 4 in [0, 7] (low 2 bits, plus 4 when the hmask bit is set); the -4 offset
        // is applied once through the activation sums.
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].bsums));
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc)));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 2));
        __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].hmask));
        for (int half = 0; half < 2; ++half) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i].qs + 32 * half));
            for (int p = 0; p < 4; ++p) {
                const int bit = 4 * half + p;
                const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(hm, one), 2);
                hm = _mm256_srli_epi16(hm, 1);
                const __m256i v = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3), hi);
                const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * bit));
                const __m256i prod = _mm256_maddubs_epi16(v, xv);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(prod, scale_pair(sc[2 * bit], sc[2 * bit + 1])));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x[i].d * h2f(w[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc);
}
#endif  // MOERIG_VEC_AVX2

}  // namespace

VecDotFn vec_dot_fn(DType weight, bool scalar_only) {
#if MOERIG_VEC_AVX2
    if (!scalar_only) {
        switch (weight) {
            case DType::F32:
                return dot_f32_avx2;
            case DType::F16:
                return dot_half_avx2<false>;
            case DType::BF16:
                return dot_half_avx2<true>;
            case DType::Q4_0:
                return dot_q4_0_avx2;
            case DType::Q8_0:
                return dot_q8_0_avx2;
            case DType::MXFP4:
                return dot_mxfp4_avx2;
            case DType::Q2_K:
                return dot_q2_k_avx2;
            case DType::Q3_K:
                return dot_q3_k_avx2;
            case DType::Q4_K:
                return dot_q4_k_avx2;
            case DType::Q5_K:
                return dot_q5_k_avx2;
            case DType::Q6_K:
                return dot_q6_k_avx2;
            default:
                break;
        }
    }
#endif
    switch (weight) {
        case DType::F32:
            return dot_f32_scalar;
        case DType::F16:
            return dot_f16_scalar;
        case DType::BF16:
            return dot_bf16_scalar;
        case DType::Q4_0:
            return dot_q4_0_scalar;
        case DType::Q4_1:
            return dot_q4_1_scalar;
        case DType::Q5_0:
            return dot_q5_scalar<false, BlockQ5_0>;
        case DType::Q5_1:
            return dot_q5_scalar<true, BlockQ5_1>;
        case DType::Q8_0:
            return dot_q8_0_scalar;
        case DType::MXFP4:
            return dot_mxfp4_scalar;
        case DType::Q8_K:
            return dot_q8_k_scalar;
        case DType::Q2_K:
            return dot_q2_k_scalar;
        case DType::Q3_K:
            return dot_q3_k_scalar;
        case DType::Q4_K:
            return dot_q4_k_scalar;
        case DType::Q5_K:
            return dot_q5_k_scalar;
        case DType::Q6_K:
            return dot_q6_k_scalar;
        default:
            return nullptr;
    }
}

}  // namespace moerig::kernels
