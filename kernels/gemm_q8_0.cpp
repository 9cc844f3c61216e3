// Q8_0 x Q8_0 products over tiles of 4 weight rows x up to 4 tokens, two 32-value blocks per 512-bit vector.
// Activations are stored unsigned (q + 128) so one VNNI vpdpbusd multiplies them by the signed weights; the
// accumulator starts at -128 * (sum of the weights), which cancels the offset exactly. Each 4-row panel (weights,
// that correction and the weight scales per pair of blocks) is built once and reused for every token, so the
// inner loop is dpbusd, convert, scale product and FMA per row x token: the int32 block sums are exact and only
// the float accumulation order differs from vec_dot.
#include "kernels/gemm_q8_0.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/error.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "kernels/simd_vnni512.h"

namespace moerig::kernels {
namespace {

constexpr int kPairBytes = 2 * kQK;                           // quants of two blocks
constexpr int kActPairBytes = kPairBytes + 16 * 4;            // + 16 float scales (8 per block)
constexpr int kPanelRows = 4;                                 // weight rows per micro-tile
constexpr int kPanelRowBytes = kPairBytes + 16 * 4 + 16 * 4;  // quants, int32 correction, float scales
constexpr int kMaxTokens = 4;                                 // tokens per micro-tile

int64_t num_pairs(int64_t cols) {
    return (cols / kQK + 1) / 2;
}

// 64-byte aligned scratch that grows and is kept per thread.
struct AlignedScratch {
    std::vector<uint8_t> bytes;
    uint8_t* get(size_t n) {
        if (bytes.size() < n + 64) bytes.resize(n + 64);
        auto p = reinterpret_cast<uintptr_t>(bytes.data());
        return bytes.data() + ((64 - p % 64) % 64);
    }
};

#if MOERIG_GEMM_VNNI512

// Two blocks of a weight row as one vector: quants, -128 * (sums of 4 quants), scales (8 lanes per block).
inline void pack_weight_pair(const BlockQ8_0* b, bool two, uint8_t* dst) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    const __m256i hi = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)) : _mm256_setzero_si256();
    const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    const __m512i sum128 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), q);
    const __m128i halves = _mm_insert_epi16(_mm_cvtsi32_si128(b[0].d), two ? b[1].d : 0, 1);
    const __m512 d = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                           _mm512_castps128_ps512(_mm_cvtph_ps(halves)));
    _mm512_store_si512(dst, q);
    _mm512_store_si512(dst + 64, _mm512_sub_epi32(_mm512_setzero_si512(), sum128));
    _mm512_store_ps(dst + 128, d);
}

// Panel of rows [r, r + 4) (rows past row_end repeat the last row; their results are dropped). The next four
// rows are prefetched meanwhile: the micro-tiles over every token run before they are needed.
void build_panel(const WeightView& w, int64_t r, int64_t row_end, int64_t pairs, uint8_t* panel) {
    const int64_t nb = w.cols / kQK;
    const size_t bytes = static_cast<size_t>(nb) * sizeof(BlockQ8_0);
    for (int i = 0; i < kPanelRows; ++i) {
        if (r + kPanelRows + i < row_end) {
            const char* next = static_cast<const char*>(w.row(r + kPanelRows + i));
            for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
        }
        const auto* b = static_cast<const BlockQ8_0*>(w.row(std::min(r + i, row_end - 1)));
        for (int64_t p = 0; p < nb / 2; ++p) {
            pack_weight_pair(b + 2 * p, true, panel + (p * kPanelRows + i) * kPanelRowBytes);
        }
        if (nb % 2) pack_weight_pair(b + nb - 1, false, panel + ((pairs - 1) * kPanelRows + i) * kPanelRowBytes);
    }
}

template <int T>
void micro_tile(const uint8_t* panel, const uint8_t* const* x, int64_t pairs, float out[kPanelRows][kMaxTokens]) {
    __m512 acc[kPanelRows][T];
    for (auto& row : acc) {
        for (auto& a : row) a = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < pairs; ++p) {
        const uint8_t* pp = panel + p * kPanelRows * kPanelRowBytes;
        __m512i wq[kPanelRows];
        __m512 wd[kPanelRows];
        for (int i = 0; i < kPanelRows; ++i) {
            wq[i] = _mm512_load_si512(pp + i * kPanelRowBytes);
            wd[i] = _mm512_load_ps(pp + i * kPanelRowBytes + 128);
        }
        for (int t = 0; t < T; ++t) {
            const uint8_t* xp = x[t] + p * kActPairBytes;
            const __m512i xq = _mm512_load_si512(xp);
            const __m512 xd = _mm512_load_ps(xp + kPairBytes);
            for (int i = 0; i < kPanelRows; ++i) {
                const __m512i corr = _mm512_load_si512(pp + i * kPanelRowBytes + 64);
                const __m512i s = _mm512_dpbusd_epi32(corr, xq, wq[i]);
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(wd[i], xd), acc[i][t]);
            }
        }
    }
    for (int i = 0; i < kPanelRows; ++i) {
        for (int t = 0; t < T; ++t) out[i][t] = _mm512_reduce_add_ps(acc[i][t]);
    }
}

void run_tiles(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    const int64_t pairs = num_pairs(w.cols);
    thread_local AlignedScratch scratch;
    uint8_t* panel = scratch.get(static_cast<size_t>(pairs * kPanelRows * kPanelRowBytes));
    float out[kPanelRows][kMaxTokens];
    for (int64_t r = row_begin; r < row_end; r += kPanelRows) {
        build_panel(w, r, row_end, pairs, panel);
        const int num_rows = static_cast<int>(std::min<int64_t>(kPanelRows, row_end - r));
        for (int64_t t = 0; t < num_tokens; t += kMaxTokens) {
            const auto* x = reinterpret_cast<const uint8_t* const*>(acts + t);
            const int num_t = static_cast<int>(std::min<int64_t>(kMaxTokens, num_tokens - t));
            switch (num_t) {
                case 4:
                    micro_tile<4>(panel, x, pairs, out);
                    break;
                case 3:
                    micro_tile<3>(panel, x, pairs, out);
                    break;
                case 2:
                    micro_tile<2>(panel, x, pairs, out);
                    break;
                default:
                    micro_tile<1>(panel, x, pairs, out);
                    break;
            }
            for (int j = 0; j < num_t; ++j) {
                for (int i = 0; i < num_rows; ++i) y[t + j][r + i] = out[i][j];
            }
        }
    }
}

#else  // portable: the same arithmetic on the packed layout, one row x token at a time

void run_tiles(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    const int64_t nb = w.cols / kQK;
    for (int64_t r = row_begin; r < row_end; ++r) {
        const auto* b = static_cast<const BlockQ8_0*>(w.row(r));
        for (int64_t t = 0; t < num_tokens; ++t) {
            const auto* x = static_cast<const uint8_t*>(acts[t]);
            float sum = 0.0f;
            for (int64_t k = 0; k < nb; ++k) {
                const uint8_t* xp = x + (k / 2) * kActPairBytes;
                const uint8_t* xq = xp + (k % 2) * kQK;
                float xd;
                std::memcpy(&xd, xp + kPairBytes + (k % 2) * 32, sizeof(float));
                int32_t s = 0;
                for (int j = 0; j < kQK; ++j) s += (static_cast<int32_t>(xq[j]) - 128) * b[k].qs[j];
                sum += static_cast<float>(s) * (fp16_to_fp32(b[k].d) * xd);
            }
            y[t][r] = sum;
        }
    }
}

#endif

}  // namespace

bool gemm_q8_0_supported() {
#if MOERIG_GEMM_VNNI512
    return true;
#else
    return false;
#endif
}

size_t gemm_q8_0_packed_bytes(int64_t cols) {
    return static_cast<size_t>(num_pairs(cols) * kActPairBytes);
}

void gemm_q8_0_pack(const void* x_q8_0, int64_t cols, void* dst) {
    MOERIG_CHECK(cols % kQK == 0, ConfigError, "gemm_q8_0_pack: {} columns is not a whole number of {}-blocks", cols,
                 kQK);
    const auto* b = static_cast<const BlockQ8_0*>(x_q8_0);
    auto* out = static_cast<uint8_t*>(dst);
    const int64_t nb = cols / kQK;
    for (int64_t p = 0; p < num_pairs(cols); ++p) {
        uint8_t* q = out + p * kActPairBytes;
        float* d = reinterpret_cast<float*>(q + kPairBytes);
        for (int h = 0; h < 2; ++h) {
            const int64_t k = 2 * p + h;
            // A missing second block of an odd count is x = 0 with scale 0 (its weights read as zero too).
            const float dk = k < nb ? fp16_to_fp32(b[k].d) : 0.0f;
            for (int j = 0; j < kQK; ++j) {
                q[h * kQK + j] = static_cast<uint8_t>((k < nb ? static_cast<int>(b[k].qs[j]) : 0) + 128);
            }
            std::fill(d + 8 * h, d + 8 * h + 8, dk);
        }
    }
}

void gemm_q8_0(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    MOERIG_CHECK(w.type == DType::Q8_0, UnsupportedError, "gemm_q8_0: weight type {} is not Q8_0", dtype_name(w.type));
    MOERIG_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, ConfigError,
                 "gemm_q8_0: rows [{}, {}) are outside the {} rows of the weight", row_begin, row_end, w.rows);
    if (row_begin == row_end || num_tokens <= 0) return;
    run_tiles(w, row_begin, row_end, acts, y, num_tokens);
}

}  // namespace moerig::kernels
