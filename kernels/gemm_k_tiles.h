// Internal to kernels/: the entry checks, tile driver and micro-kernel shared by the K-quant prefill GEMMs
// (gemm_q4_k.cpp, gemm_q6_k.cpp). Each weight type supplies only a Kernel description (see run_checked) with how
// one super-block of 256 values is unpacked into a panel entry; the micro-kernel, the panel builder and the walk
// over 4-row x 4-token tiles are the same.
//
// A panel entry (one row, one super-block) holds the quants widened to unsigned bytes in activation order, the
// scale of every 16-value group as int16 lanes (one per vpmaddubsw pair), 16 int16 factors for the activation's
// 16-value sums and up to two float scales. The micro-kernel forms two exact int32 sums per super-block,
//   sum  = sum(scale * q * x)   (vpmaddubsw: unsigned quants <= 63 times signed bytes, no saturation; VNNI)
//   msum = sum(factor * bsum)   (bsum: the Q8_K block's 16-value sums),
// and adds them as the weight type's dot product does (see Combine), so only float sums are reordered.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/error.h"
#include "kernels/matmul.h"
#include "kernels/quant_blocks.h"
#include "kernels/simd_vnni512.h"
#include "kernels/vec_dot.h"

namespace moerig::kernels::gemm_k {

/// How a super-block's two integer sums become its float contribution.
enum class Combine {
    /// Q4_K: x.d * (d0 * sum - d1 * msum), the mins applied in float as ggml does.
    kFloatMins,
    /// Q6_K: x.d * d0 * (sum - 32 * msum), the -32 offset of every quant applied in int32 as ggml does.
    kIntOffset32,
};

#if MOERIG_GEMM_VNNI512

/// Whether this build has the integer tiles; without them the GEMMs run the per-row dot product.
constexpr bool kHasTiles = true;

constexpr int kPanelRows = 4;
constexpr int kMaxTokens = 4;
// Per row and super-block: 4 x 64 quant bytes, 4 x 32 int16 scales, 16 int16 bsum factors, two floats (d0, d1),
// padded to a multiple of 64 bytes.
constexpr int kScaleOffset = 256, kMinOffset = 512, kDOffset = 544, kSbBytes = 576;

// Panel of rows [r, r + 4) (rows past row_end repeat the last row; their results are dropped), super-block major.
template <typename Kernel>
void build_panel(const WeightView& w, int64_t r, int64_t row_end, int64_t num_sb, uint8_t* panel) {
    using Block = typename Kernel::Block;
    const size_t bytes = static_cast<size_t>(num_sb) * sizeof(Block);
    for (int i = 0; i < kPanelRows; ++i) {
        if (r + kPanelRows + i < row_end) {
            const char* next = static_cast<const char*>(w.row(r + kPanelRows + i));
            for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
        }
        const auto* b = static_cast<const Block*>(w.row(std::min(r + i, row_end - 1)));
        for (int64_t s = 0; s < num_sb; ++s) Kernel::pack(b[s], panel + (s * kPanelRows + i) * kSbBytes);
    }
}

template <Combine C, int T>
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
                if constexpr (C == Combine::kFloatMins) {
                    acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d[0] * xb.d), acc[i][t]);
                    acc[i][t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_set1_ps(d[1] * xb.d), acc[i][t]);
                } else {
                    const __m512i isum = _mm512_sub_epi32(sum, _mm512_slli_epi32(msum, 5));
                    acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d[0] * xb.d), acc[i][t]);
                }
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

/// Rows [row_begin, row_end) x tokens [0, num_tokens): one panel per 4 rows, every token tile run over it.
template <typename Kernel>
void run_tiles(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
               int64_t num_tokens) {
    const int64_t num_sb = w.cols / kQK_K;
    thread_local AlignedScratch scratch;
    uint8_t* panel = scratch.get(static_cast<size_t>(num_sb * kPanelRows * kSbBytes));
    float out[kPanelRows][kMaxTokens];
    for (int64_t r = row_begin; r < row_end; r += kPanelRows) {
        build_panel<Kernel>(w, r, row_end, num_sb, panel);
        const int num_rows = static_cast<int>(std::min<int64_t>(kPanelRows, row_end - r));
        for (int64_t t = 0; t < num_tokens; t += kMaxTokens) {
            const auto* x = reinterpret_cast<const BlockQ8_K* const*>(acts + t);
            const int num_t = static_cast<int>(std::min<int64_t>(kMaxTokens, num_tokens - t));
            switch (num_t) {
                case 4:
                    micro_tile<Kernel::kCombine, 4>(panel, x, num_sb, out);
                    break;
                case 3:
                    micro_tile<Kernel::kCombine, 3>(panel, x, num_sb, out);
                    break;
                case 2:
                    micro_tile<Kernel::kCombine, 2>(panel, x, num_sb, out);
                    break;
                default:
                    micro_tile<Kernel::kCombine, 1>(panel, x, num_sb, out);
                    break;
            }
            for (int j = 0; j < num_t; ++j) {
                for (int i = 0; i < num_rows; ++i) y[t + j][r + i] = out[i][j];
            }
        }
    }
}

#else  // portable: the per-row dot product (the activations are plain Q8_K rows)

constexpr bool kHasTiles = false;

inline void run_rows_dot(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts,
                         float* const* y, int64_t num_tokens) {
    const VecDotFn dot = vec_dot_fn(w.type);
    for (int64_t t = 0; t < num_tokens; ++t) {
        for (int64_t r = row_begin; r < row_end; ++r) y[t][r] = dot(w.row(r), acts[t], w.cols);
    }
}

#endif

/// The body of a K-quant GEMM entry point: checks the weight type and the row range, then runs rows
/// [row_begin, row_end) x tokens [0, num_tokens) over the tiles, or the per-row dot product where they are not
/// built. Kernel describes the weight type:
///   kName (the entry point, for messages), kType (its DType), Block (its super-block),
///   kCombine (how its sums combine), static void pack(const Block&, uint8_t* panel_entry) (needed only with the
///   tiles).
template <typename Kernel>
void run_checked(const WeightView& w, int64_t row_begin, int64_t row_end, const void* const* acts, float* const* y,
                 int64_t num_tokens) {
    MOERIG_CHECK(w.type == Kernel::kType, UnsupportedError, "{}: weight type {} is not {}", Kernel::kName,
                 dtype_name(w.type), dtype_name(Kernel::kType));
    MOERIG_CHECK(0 <= row_begin && row_begin <= row_end && row_end <= w.rows, ConfigError,
                 "{}: rows [{}, {}) are outside the {} rows of the weight", Kernel::kName, row_begin, row_end, w.rows);
    if (row_begin == row_end || num_tokens <= 0) return;
#if MOERIG_GEMM_VNNI512
    run_tiles<Kernel>(w, row_begin, row_end, acts, y, num_tokens);
#else
    run_rows_dot(w, row_begin, row_end, acts, y, num_tokens);
#endif
}

}  // namespace moerig::kernels::gemm_k
