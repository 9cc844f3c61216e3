// Q4_K x Q8_K products over tiles of 4 weight rows x up to 4 tokens. Per super-block of 256 values, a panel holds
// each row's nibbles widened to bytes in activation order, its sub-block scales as int16 lanes and its mins; the
// micro-kernel multiplies unsigned nibbles by signed activations (vpmaddubsw: at most 2 * 15 * 128, no
// saturation), applies the sub-block scales while widening to int32 (VNNI vpdpwssd), and takes the mins times the
// activation's 16-value sums the same way, so every integer is exact and only float sums are reordered against
// vec_dot: y = sum_sb x.d * (d * sum(sc * q * x) - dmin * sum(m * bsum)).
#include "kernels/gemm_q4_k.h"

#include <algorithm>
#include <vector>

#include "kernels/error.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "kernels/vec_dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__) && defined(__F16C__)
#define MOERIG_GEMM_VNNI512 1
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start some results from a self-initialised "undefined" vector, which its flow
// analysis reports as uninitialised once inlined here (a known false positive of the headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace moerig::kernels {
namespace {

#if MOERIG_GEMM_VNNI512

constexpr int kPanelRows = 4;
constexpr int kMaxTokens = 4;
// Per row and super-block: 4 x 64 quant bytes, 4 x 32 int16 scales, 16 int16 mins, d and dmin (padded to 64).
constexpr int kScaleOffset = 256, kMinOffset = 512, kDOffset = 544, kSbBytes = 576;

void pack_super_block(const BlockQ4_K& b, uint8_t* dst) {
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

// Panel of rows [r, r + 4) (rows past row_end repeat the last row; their results are dropped), super-block major.
void build_panel(const WeightView& w, int64_t r, int64_t row_end, int64_t num_sb, uint8_t* panel) {
    const size_t bytes = static_cast<size_t>(num_sb) * sizeof(BlockQ4_K);
    for (int i = 0; i < kPanelRows; ++i) {
        if (r + kPanelRows + i < row_end) {
            const char* next = static_cast<const char*>(w.row(r + kPanelRows + i));
            for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
        }
        const auto* b = static_cast<const BlockQ4_K*>(w.row(std::min(r + i, row_end - 1)));
        for (int64_t s = 0; s < num_sb; ++s) pack_super_block(b[s], panel + (s * kPanelRows + i) * kSbBytes);
    }
}

template <int T>
void micro_tile(const uint8_t* panel, const BlockQ8_K* const* x, int64_t num_sb, float out[kPanelRows][kMaxTokens]) {
    __m512 acc[kPanelRows][T];
    for (auto& row : acc) {
        for (auto& a : row) a = _mm512_setzero_ps();
    }
    for (int64_t s = 0; s < num_sb; ++s) {
        for (int i = 0; i < kPanelRows; ++i) {
            const uint8_t* pp = panel + (s * kPanelRows + i) * kSbBytes;
            const auto* d = reinterpret_cast<const float*>(pp + kDOffset);
            const __m512i mins =
                _mm512_zextsi256_si512(_mm256_load_si256(reinterpret_cast<const __m256i*>(pp + kMinOffset)));
            for (int t = 0; t < T; ++t) {
                const BlockQ8_K& xb = x[t][s];
                __m512i sum = _mm512_setzero_si512();
                for (int j = 0; j < 4; ++j) {
                    const __m512i p =
                        _mm512_maddubs_epi16(_mm512_load_si512(pp + 64 * j), _mm512_loadu_si512(xb.qs + 64 * j));
                    sum = _mm512_dpwssd_epi32(sum, p, _mm512_load_si512(pp + kScaleOffset + 64 * j));
                }
                const __m512i bsums =
                    _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)));
                const __m512i msum = _mm512_dpwssd_epi32(_mm512_setzero_si512(), bsums, mins);
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d[0] * xb.d), acc[i][t]);
                acc[i][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_set1_ps(d[1] * xb.d), acc[i][t]);
            }
        }
    }
    for (int i = 0; i < kPanelRows; ++i) {
        for (int t = 0; t < T; ++t) out[i][t] = _mm512_reduce_add_ps(acc[i][t]);
    }
}

struct AlignedScratch {
    std::vector<uint8_t> bytes;
    uint8_t* get(size_t n) {
        if (bytes.size() < n + 64) bytes.resize(n + 64);
        auto p = reinterpret_cast<uintptr_t>(bytes.data());
        return bytes.data() + ((64 - p % 64) % 64);
    }
};

void run_tiles(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    const int64_t num_sb = w.cols / kQK_K;
    thread_local AlignedScratch scratch;
    uint8_t* panel = scratch.get(static_cast<size_t>(num_sb * kPanelRows * kSbBytes));
    float out[kPanelRows][kMaxTokens];
    for (int64_t r = row_begin; r < row_end; r += kPanelRows) {
        build_panel(w, r, row_end, num_sb, panel);
        const int num_rows = static_cast<int>(std::min<int64_t>(kPanelRows, row_end - r));
        for (int64_t t = 0; t < num_tokens; t += kMaxTokens) {
            const auto* x = reinterpret_cast<const BlockQ8_K* const*>(acts + t);
            const int num_t = static_cast<int>(std::min<int64_t>(kMaxTokens, num_tokens - t));
            switch (num_t) {
                case 4:
                    micro_tile<4>(panel, x, num_sb, out);
                    break;
                case 3:
                    micro_tile<3>(panel, x, num_sb, out);
                    break;
                case 2:
                    micro_tile<2>(panel, x, num_sb, out);
                    break;
                default:
                    micro_tile<1>(panel, x, num_sb, out);
                    break;
            }
            for (int j = 0; j < num_t; ++j) {
                for (int i = 0; i < num_rows; ++i) y[t + j][r + i] = out[i][j];
            }
        }
    }
}

#else  // portable: the per-row dot product (the activations are plain Q8_K rows)

void run_tiles(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    const VecDotFn dot = vec_dot_fn(DType::Q4_K);
    for (int64_t t = 0; t < num_tokens; ++t) {
        for (int64_t r = row_begin; r < row_end; ++r) y[t][r] = dot(w.row(r), acts[t], w.cols);
    }
}

#endif

}  // namespace

bool gemm_q4_k_supported() {
#if MOERIG_GEMM_VNNI512
    return true;
#else
    return false;
#endif
}

void gemm_q4_k(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    MOERIG_CHECK(w.type == DType::Q4_K, UnsupportedError, "gemm_q4_k: weight type {} is not Q4_K", dtype_name(w.type));
    MOERIG_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, ConfigError,
                 "gemm_q4_k: rows [{}, {}) are outside the {} rows of the weight", row_begin, row_end, w.rows);
    if (row_begin == row_end || num_tokens <= 0) return;
    run_tiles(w, row_begin, row_end, acts, y, num_tokens);
}

}  // namespace moerig::kernels
