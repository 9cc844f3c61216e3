// Q4_K x Q8_K products over tiles of 4 weight rows x up to 4 tokens. Per super-block of 256 values, a panel holds
// each row's nibbles widened to bytes in activation order, its sub-block scales as int16 lanes and its mins; the
// micro-kernel multiplies unsigned nibbles by signed activations (vpmaddubsw: at most 2 * 15 * 128, no
// saturation), applies the sub-block scales while widening to int32 (VNNI vpdpwssd), and takes the mins times the
// activation's 16-value sums the same way, so every integer is exact and only float sums are reordered against
// vec_dot: y = sum_sb x.d * (d * sum(sc * q * x) - dmin * sum(m * bsum)). The tile walk and micro-kernel are
// gemm_k_tiles.h's; this file only unpacks a Q4_K super-block into a panel entry.
#include "kernels/gemm_q4_k.h"

#include "kernels/gemm_k_tiles.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"

namespace moerig::kernels {
namespace {

// The weight type as gemm_k::run_checked needs it.
struct Q4K {
    static constexpr const char* kName = "gemm_q4_k";
    static constexpr DType kType = DType::Q4_K;
    using Block = BlockQ4_K;
    static constexpr gemm_k::Combine kCombine = gemm_k::Combine::kFloatMins;
    static void pack(const BlockQ4_K& b, uint8_t* dst);  // defined where the tiles are built
};

#if MOERIG_GEMM_VNNI512

using namespace gemm_k;

void Q4K::pack(const BlockQ4_K& b, uint8_t* dst) {
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int j = 0; j < 4; ++j) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs + 32 * j));
        const __m256i lo = _mm256_and_si256(q, low4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low4);
        _mm512_store_si512(dst + 64 * j, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
    }
    uint8_t sc[8], mn[8];
    unpack_k4_scales(b.scales, sc, mn);
    for (int j = 0; j < 4; ++j) {
        const __m512i s = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(sc[2 * j])),
                                             _mm256_set1_epi16(sc[2 * j + 1]), 1);
        _mm512_store_si512(dst + kScaleOffset + 64 * j, s);
    }
    auto* mins = reinterpret_cast<int16_t*>(dst + kMinOffset);
    for (int k = 0; k < 8; ++k) mins[2 * k] = mins[2 * k + 1] = mn[k];
    auto* d = reinterpret_cast<float*>(dst + kDOffset);
    d[0] = _cvtsh_ss(b.d);
    d[1] = _cvtsh_ss(b.dmin);
}

#endif

}  // namespace

bool gemm_q4_k_supported() {
    return gemm_k::kHasTiles;
}

void gemm_q4_k(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    gemm_k::run_checked<Q4K>(w, row_begin, row_end, acts, y, num_tokens);
}

}  // namespace moerig::kernels
