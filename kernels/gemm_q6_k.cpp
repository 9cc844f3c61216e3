// Q6_K x Q8_K products over tiles of 4 weight rows x up to 4 tokens (gemm_k_tiles.h). A panel entry holds each
// row's 6-bit quants as unsigned bytes 0..63 in activation order (vpmaddubsw: at most 2 * 63 * 128, no
// saturation), the signed scale of every 16 values as int16 lanes, and the same 16 scales again as the factors of
// the activation's 16-value sums: the -32 offset of every quant is sum(sc * 32 * bsum), taken off in int32 as
// vec_dot does, so y = sum_sb x.d * d * (sum(sc * q * x) - 32 * sum(sc * bsum)) with exact integers.
#include "kernels/gemm_q6_k.h"

#include "kernels/gemm_k_tiles.h"
#include "kernels/quant_blocks.h"

namespace moerig::kernels {
namespace {

// The weight type as gemm_k::run_checked needs it.
struct Q6K {
    static constexpr const char* kName = "gemm_q6_k";
    static constexpr DType kType = DType::Q6_K;
    using Block = BlockQ6_K;
    static constexpr gemm_k::Combine kCombine = gemm_k::Combine::kIntOffset32;
    static void pack(const BlockQ6_K& b, uint8_t* dst);  // defined where the tiles are built
};

#if MOERIG_GEMM_VNNI512

using namespace gemm_k;

// int16 lane k of a 64-value chunk's scale vector covers values 2k and 2k + 1, i.e. scale k / 8 of the chunk.
alignas(64) constexpr int16_t kScaleLane[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};

void Q6K::pack(const BlockQ6_K& b, uint8_t* dst) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x30);
    // Half h holds values [128h, 128h + 128): low nibbles of ql[0..64) then high nibbles, two qh bits each.
    for (int h = 0; h < 2; ++h) {
        const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h));
        const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h));
        const __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m3));
        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m3));
        const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m3));
        const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), m3));
        _mm512_store_si512(dst + 128 * h, _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1));
        _mm512_store_si512(dst + 128 * h + 64, _mm512_inserti64x4(_mm512_castsi256_si512(q2), q3, 1));
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    const __m512i sc = _mm512_castsi256_si512(sc16);
    const __m512i lane = _mm512_load_si512(kScaleLane);
    for (int j = 0; j < 4; ++j) {
        const __m512i idx = _mm512_add_epi16(lane, _mm512_set1_epi16(static_cast<int16_t>(4 * j)));
        _mm512_store_si512(dst + kScaleOffset + 64 * j, _mm512_permutexvar_epi16(idx, sc));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + kMinOffset), sc16);
    auto* d = reinterpret_cast<float*>(dst + kDOffset);
    d[0] = _cvtsh_ss(b.d);
    d[1] = 0.0f;
}

#endif

}  // namespace

bool gemm_q6_k_supported() {
    return gemm_k::kHasTiles;
}

void gemm_q6_k(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    gemm_k::run_checked<Q6K>(w, row_begin, row_end, acts, y, num_tokens);
}

}  // namespace moerig::kernels
