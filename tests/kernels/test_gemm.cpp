// The register-blocked prefill GEMMs (Q8_0 x Q8_0, Q4_K and Q6_K x Q8_K) against the per-row dot products they
// replace, over row and token counts that are not multiples of the 4 x 4 micro-tile and odd block counts; exact
// integer results at the quant limits (no saturation, exact offset corrections); gathered matmul calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <random>
#include <vector>

#include "kernels/error.h"
#include "kernels/gemm_q4_k.h"
#include "kernels/gemm_q6_k.h"
#include "kernels/gemm_q8_0.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "tests/kernels/kernel_test_util.h"

using namespace moerig;
using namespace moerig::kernels;
using moerig::testing::nmse;
using moerig::testing::random_values;

namespace {

// Activations quantised the way matmul does it (ggml-cpu's Q8_0: scale 127 / max|x|, ties to even).
std::vector<BlockQ8_0> quantize_act(const float* x, int64_t cols) {
    std::vector<BlockQ8_0> b(cols / kQK);
    for (int64_t i = 0; i < cols / kQK; ++i) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[i * kQK + j]));
        b[i].d = fp32_to_fp16(amax / 127.f);
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < kQK; ++j) b[i].qs[j] = static_cast<int8_t>(std::nearbyint(x[i * kQK + j] * id));
    }
    return b;
}

struct Packed {
    std::vector<uint8_t> bytes;
    std::vector<const void*> rows;
};

// 64-byte aligned packed rows, as matmul hands them to gemm_q8_0.
Packed pack_all(const std::vector<std::vector<BlockQ8_0>>& q, int64_t cols) {
    const size_t n = gemm_q8_0_packed_bytes(cols);
    Packed p;
    p.bytes.resize(n * q.size() + 64);
    uint8_t* base = p.bytes.data() + (64 - reinterpret_cast<uintptr_t>(p.bytes.data()) % 64) % 64;
    for (size_t t = 0; t < q.size(); ++t) {
        gemm_q8_0_pack(q[t].data(), cols, base + n * t);
        p.rows.push_back(base + n * t);
    }
    return p;
}

}  // namespace

TEST(GemmQ8_0, EqualsPerRowDotProductForOddRowTokenAndBlockCounts) {
    // Same int32 block sums, same float scale products; only the order of the float sums differs, so the
    // difference is float rounding of sums of ~cols/32 terms: NMSE far below 1e-10.
    const int64_t row_counts[] = {1, 3, 4, 5, 7, 9, 33};
    const int64_t col_counts[] = {32, 96, 256, 1024};
    for (int64_t cols : col_counts) {
        for (int64_t rows : row_counts) {
            for (int64_t tokens = 1; tokens <= 9; tokens += 2) {
                const auto wf = random_values(rows * cols, 31, 0.05f);
                std::vector<uint8_t> wq(row_bytes(DType::Q8_0, cols) * rows);
                for (int64_t r = 0; r < rows; ++r) {
                    quantize_row(DType::Q8_0, wf.data() + r * cols, wq.data() + r * row_bytes(DType::Q8_0, cols), cols);
                }
                const WeightView w = WeightView::dense(DType::Q8_0, rows, cols, wq.data());
                const auto x = random_values(tokens * cols, 32);
                std::vector<std::vector<BlockQ8_0>> xq;
                for (int64_t t = 0; t < tokens; ++t) xq.push_back(quantize_act(x.data() + t * cols, cols));
                const Packed packed = pack_all(xq, cols);
                std::vector<float> y(rows * tokens, NAN), y_dot(rows * tokens);
                std::vector<float*> ys;
                for (int64_t t = 0; t < tokens; ++t) ys.push_back(y.data() + t * rows);
                gemm_q8_0(w, 0, rows, packed.rows.data(), ys.data(), tokens);
                for (int64_t t = 0; t < tokens; ++t) {
                    for (int64_t r = 0; r < rows; ++r) {
                        y_dot[t * rows + r] = vec_dot(DType::Q8_0, w.row(r), xq[t].data(), cols);
                    }
                }
                EXPECT_LE(nmse(y, y_dot), 1e-11) << "rows " << rows << " cols " << cols << " tokens " << tokens;
            }
        }
    }
}

TEST(GemmQ8_0, IntegerSumsAreExactAtTheQuantLimits) {
    // Scales of 1 and quants of +-127: every product is +-16129 and the row sums are exact integers well below
    // 2^24, so any saturation or a wrong offset correction (activations are stored as q + 128) shows exactly.
    const int64_t rows = 6, cols = 5 * kQK, tokens = 5;
    std::vector<BlockQ8_0> wb(rows * cols / kQK);
    for (size_t i = 0; i < wb.size(); ++i) {
        wb[i].d = fp32_to_fp16(1.0f);
        for (int j = 0; j < kQK; ++j) wb[i].qs[j] = static_cast<int8_t>(((i + j) % 3 == 0) ? -127 : 127);
    }
    std::vector<std::vector<BlockQ8_0>> xq(tokens, std::vector<BlockQ8_0>(cols / kQK));
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t k = 0; k < cols / kQK; ++k) {
            xq[t][k].d = fp32_to_fp16(1.0f);
            for (int j = 0; j < kQK; ++j) {
                xq[t][k].qs[j] = static_cast<int8_t>((j + t) % 2 ? -127 : (t == 0 ? 127 : j - 16));
            }
        }
    }
    const WeightView w = WeightView::dense(DType::Q8_0, rows, cols, wb.data());
    const Packed packed = pack_all(xq, cols);
    std::vector<float> y(rows * tokens, NAN);
    std::vector<float*> ys;
    for (int64_t t = 0; t < tokens; ++t) ys.push_back(y.data() + t * rows);
    gemm_q8_0(w, 0, rows, packed.rows.data(), ys.data(), tokens);
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
            int64_t exact = 0;
            for (int64_t k = 0; k < cols / kQK; ++k) {
                for (int j = 0; j < kQK; ++j) exact += wb[r * (cols / kQK) + k].qs[j] * xq[t][k].qs[j];
            }
            EXPECT_EQ(y[t * rows + r], static_cast<float>(exact)) << "row " << r << " token " << t;
        }
    }
}

TEST(GemmQ8_0, RowRangeWritesOnlyItsRows) {
    const int64_t rows = 11, cols = 64, tokens = 3;
    const auto wf = random_values(rows * cols, 41, 0.05f);
    std::vector<uint8_t> wq(row_bytes(DType::Q8_0, cols) * rows);
    for (int64_t r = 0; r < rows; ++r) {
        quantize_row(DType::Q8_0, wf.data() + r * cols, wq.data() + r * row_bytes(DType::Q8_0, cols), cols);
    }
    const WeightView w = WeightView::dense(DType::Q8_0, rows, cols, wq.data());
    const auto x = random_values(tokens * cols, 42);
    std::vector<std::vector<BlockQ8_0>> xq;
    for (int64_t t = 0; t < tokens; ++t) xq.push_back(quantize_act(x.data() + t * cols, cols));
    const Packed packed = pack_all(xq, cols);
    std::vector<float> y(rows * tokens, -7.0f);
    std::vector<float*> ys;
    for (int64_t t = 0; t < tokens; ++t) ys.push_back(y.data() + t * rows);
    gemm_q8_0(w, 2, 7, packed.rows.data(), ys.data(), tokens);
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
            const float expected = vec_dot(DType::Q8_0, w.row(r), xq[t].data(), cols);
            if (r >= 2 && r < 7) {
                EXPECT_NEAR(y[t * rows + r], expected, 1e-4f * (1.0f + std::fabs(expected)));
            } else {
                EXPECT_EQ(y[t * rows + r], -7.0f) << "row " << r << " outside [2, 7) was written";
            }
        }
    }
}

TEST(GemmQ8_0, PrefillMatmulOnGatheredExpertTokensEqualsActivationRoundedReference) {
    // matmul routes Q8_0 with >= 2 tokens through the GEMM: a gathered call on an expert slice (as the MoE layer
    // makes) equals matmul_ref_act on copies of the rows, up to float summation order.
    ThreadPool pool(2);
    const int64_t num_experts = 3, rows = 37, cols = 160, num_x = 13;
    const auto wf = random_values(num_experts * rows * cols, 51, 0.05f);
    const size_t rb = row_bytes(DType::Q8_0, cols);
    std::vector<uint8_t> wq(rb * rows * num_experts);
    for (int64_t r = 0; r < rows * num_experts; ++r) quantize_row(DType::Q8_0, wf.data() + r * cols, &wq[r * rb], cols);
    const auto x = random_values(num_x * cols, 52);
    const std::vector<int32_t> x_rows = {12, 0, 5, 5, 9, 3, 1};
    const std::vector<int32_t> y_rows = {6, 0, 3, 1, 4, 2, 5};
    const int64_t tokens = static_cast<int64_t>(x_rows.size());
    const WeightView w = WeightView::expert(DType::Q8_0, rows, cols, wq.data(), 1);
    std::vector<float> y(tokens * rows, NAN);
    TokenRows io{x.data(), cols, x_rows.data(), y.data(), rows, y_rows.data(), tokens};
    matmul(w, io, pool);
    std::vector<float> xg(tokens * cols), y_ref(tokens * rows);
    for (int64_t t = 0; t < tokens; ++t) std::memcpy(&xg[t * cols], &x[x_rows[t] * cols], cols * sizeof(float));
    matmul_ref_act(w, xg.data(), tokens, y_ref.data());
    for (int64_t t = 0; t < tokens; ++t) {
        EXPECT_LE(nmse(&y[y_rows[t] * rows], &y_ref[t * rows], rows), 1e-11) << "token " << t;
    }
}

namespace {

using KGemmFn = void (*)(const WeightView&, int64_t, int64_t, const void* const*, float* const*, int64_t);

// gemm (a K-quant x Q8_K GEMM) against vec_dot over row counts that are not multiples of the 4-row panel, 1..6
// tokens (every micro-tile width) and one or three super-blocks. Weights are the quantizer's rows, or, with
// raw_blocks, random bytes (every quant, every scale byte including -128) with a small finite d.
void expect_k_gemm_equals_dot(DType type, KGemmFn gemm, bool raw_blocks) {
    const int64_t row_counts[] = {1, 4, 6, 13};
    const int64_t col_counts[] = {256, 768};
    const size_t block_bytes = dtype_traits(type).block_bytes;
    for (int64_t cols : col_counts) {
        for (int64_t rows : row_counts) {
            for (int64_t tokens = 1; tokens <= 6; ++tokens) {
                const size_t rb = row_bytes(type, cols), xb = row_bytes(DType::Q8_K, cols);
                std::vector<uint8_t> wq(rb * rows), xq(xb * tokens);
                if (raw_blocks) {
                    std::mt19937 rng(static_cast<uint32_t>(rows * 1000 + cols + tokens));
                    for (auto& byte : wq) byte = static_cast<uint8_t>(rng());
                    // Finite scales: d is the last field of Q6_K; Q4_K starts with d and dmin.
                    for (size_t off = 0; off < wq.size(); off += block_bytes) {
                        const uint16_t d = fp32_to_fp16(0.001f * static_cast<float>(1 + rng() % 100));
                        if (type == DType::Q6_K) {
                            std::memcpy(&wq[off + block_bytes - 2], &d, 2);
                        } else {
                            std::memcpy(&wq[off], &d, 2);
                            std::memcpy(&wq[off + 2], &d, 2);
                        }
                    }
                } else {
                    const auto wf = random_values(rows * cols, 61, 0.05f);
                    for (int64_t r = 0; r < rows; ++r) quantize_row(type, &wf[r * cols], &wq[r * rb], cols);
                }
                const auto x = random_values(tokens * cols, 62);
                std::vector<const void*> acts;
                for (int64_t t = 0; t < tokens; ++t) {
                    quantize_row(DType::Q8_K, &x[t * cols], &xq[t * xb], cols);
                    acts.push_back(&xq[t * xb]);
                }
                const WeightView w = WeightView::dense(type, rows, cols, wq.data());
                std::vector<float> y(rows * tokens, NAN), y_dot(rows * tokens);
                std::vector<float*> ys;
                for (int64_t t = 0; t < tokens; ++t) ys.push_back(y.data() + t * rows);
                gemm(w, 0, rows, acts.data(), ys.data(), tokens);
                for (int64_t t = 0; t < tokens; ++t) {
                    for (int64_t r = 0; r < rows; ++r) y_dot[t * rows + r] = vec_dot(type, w.row(r), acts[t], cols);
                }
                EXPECT_LE(nmse(y, y_dot), 1e-11) << dtype_name(type) << " rows " << rows << " cols " << cols
                                                 << " tokens " << tokens << (raw_blocks ? " (raw blocks)" : "");
            }
        }
    }
}

}  // namespace

TEST(GemmQ4_K, EqualsPerRowDotProductForOddRowAndTokenCounts) {
    // Activations are the Q8_K rows matmul makes; the GEMM's int32 sums (scaled nibble products, mins times
    // 16-value sums) are exact, so only the float accumulation order differs from vec_dot.
    expect_k_gemm_equals_dot(DType::Q4_K, gemm_q4_k, false);
    expect_k_gemm_equals_dot(DType::Q4_K, gemm_q4_k, true);
}

TEST(GemmQ4_K, LargestNibblesAndActivationsAreExact) {
    // All nibbles 15, all scales and mins 63, d = dmin = 1, activations -128 (Q8_K's most negative): the largest
    // vpmaddubsw pairs (2 * 15 * -128) and scaled sums; the result is an exact integer in float.
    const int64_t cols = 256, tokens = 3;
    BlockQ4_K b{};
    b.d = fp32_to_fp16(1.0f);
    b.dmin = fp32_to_fp16(1.0f);
    std::fill(std::begin(b.scales), std::end(b.scales), 0xFF);
    std::fill(std::begin(b.qs), std::end(b.qs), 0xFF);
    std::vector<BlockQ8_K> x(tokens);
    std::vector<const void*> acts;
    for (int64_t t = 0; t < tokens; ++t) {
        x[t].d = 1.0f;
        for (int j = 0; j < kQK_K; ++j) x[t].qs[j] = static_cast<int8_t>(t == 0 ? -128 : (j % 2 ? 127 : -128));
        for (int g = 0; g < kQK_K / 16; ++g) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += x[t].qs[16 * g + j];
            x[t].bsums[g] = static_cast<int16_t>(s);
        }
        acts.push_back(&x[t]);
    }
    const WeightView w = WeightView::dense(DType::Q4_K, 1, cols, &b);
    std::vector<float> y(tokens, NAN);
    std::vector<float*> ys;
    for (int64_t t = 0; t < tokens; ++t) ys.push_back(&y[t]);
    gemm_q4_k(w, 0, 1, acts.data(), ys.data(), tokens);
    for (int64_t t = 0; t < tokens; ++t) {
        int64_t sum_x = 0;
        for (int j = 0; j < kQK_K; ++j) sum_x += x[t].qs[j];
        EXPECT_EQ(y[t], static_cast<float>(63 * 15 * sum_x - 63 * sum_x)) << "token " << t;
    }
}

TEST(GemmQ6_K, EqualsPerRowDotProductForOddRowAndTokenCounts) {
    // Same int32 sums as vec_dot (scaled 6-bit products less 32 * scales times 16-value sums), so only the float
    // accumulation order differs; quantizer rows and raw random blocks (every scale byte, -128 included).
    expect_k_gemm_equals_dot(DType::Q6_K, gemm_q6_k, false);
    expect_k_gemm_equals_dot(DType::Q6_K, gemm_q6_k, true);
}

TEST(GemmQ6_K, IntegerSumsAreExactAtTheQuantLimits) {
    // Row 0: every quant 63 (+31 after the offset), scales -128; row 1: every quant 0 (-32), scales 127; row 2:
    // quants 0..63 cycling, scales cycling over -128..127. Tokens: all -128 (largest vpmaddubsw pairs, 2 * 63 *
    // -128), all 127, and alternating. In rows 0 and 1 every partial sum is an integer float holds exactly, so y
    // equals the exact integer product; row 2's int32 lanes may exceed 2^24 before the float sum, so it gets a
    // relative tolerance.
    const int64_t cols = 512, rows = 3, tokens = 3, num_sb = cols / kQK_K;
    std::vector<BlockQ6_K> wb(rows * num_sb);
    auto set_quant = [](BlockQ6_K& b, int i, int q) {
        // Value i of the block: half i / 128, quarter k = (i % 128) / 32 and lane l = i % 32 (ggml's layout).
        const int h = i / 128, k = (i % 128) / 32, l = i % 32;
        uint8_t& lo = b.ql[64 * h + 32 * (k % 2) + l];
        lo = static_cast<uint8_t>(k < 2 ? (lo & 0xF0) | (q & 0xF) : (lo & 0x0F) | ((q & 0xF) << 4));
        uint8_t& hi = b.qh[32 * h + l];
        hi = static_cast<uint8_t>((hi & ~(3 << (2 * k))) | ((q >> 4) << (2 * k)));
    };
    std::vector<int> q_of(rows * cols), sc_of(rows * cols / 16);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t s = 0; s < num_sb; ++s) {
            BlockQ6_K& b = wb[r * num_sb + s];
            b.d = fp32_to_fp16(1.0f);
            for (int g = 0; g < 16; ++g) {
                const int sc = r == 0 ? -128 : r == 1 ? 127 : (g * 17 + static_cast<int>(s) * 5) % 256 - 128;
                b.scales[g] = static_cast<int8_t>(sc);
                sc_of[(r * cols + s * kQK_K) / 16 + g] = sc;
            }
            for (int i = 0; i < kQK_K; ++i) {
                const int q = r == 0 ? 63 : r == 1 ? 0 : (i * 7 + static_cast<int>(s)) % 64;
                set_quant(b, i, q);
                q_of[r * cols + s * kQK_K + i] = q;
            }
        }
    }
    std::vector<BlockQ8_K> x(tokens * num_sb);
    std::vector<const void*> acts;
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t s = 0; s < num_sb; ++s) {
            BlockQ8_K& xb = x[t * num_sb + s];
            xb.d = 1.0f;
            for (int j = 0; j < kQK_K; ++j)
                xb.qs[j] = static_cast<int8_t>(t == 0 ? -128 : t == 1 ? 127 : (j % 2 ? 127 : -128));
            for (int g = 0; g < kQK_K / 16; ++g) {
                int sum = 0;
                for (int j = 0; j < 16; ++j) sum += xb.qs[16 * g + j];
                xb.bsums[g] = static_cast<int16_t>(sum);
            }
        }
        acts.push_back(&x[t * num_sb]);
    }
    const WeightView w = WeightView::dense(DType::Q6_K, rows, cols, wb.data());
    std::vector<float> y(rows * tokens, NAN);
    std::vector<float*> ys;
    for (int64_t t = 0; t < tokens; ++t) ys.push_back(y.data() + t * rows);
    gemm_q6_k(w, 0, rows, acts.data(), ys.data(), tokens);
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
            int64_t exact = 0;
            for (int64_t c = 0; c < cols; ++c) {
                exact += static_cast<int64_t>(sc_of[(r * cols + c) / 16]) * (q_of[r * cols + c] - 32) *
                         x[t * num_sb + c / kQK_K].qs[c % kQK_K];
            }
            if (r < 2) {
                EXPECT_EQ(y[t * rows + r], static_cast<float>(exact)) << "row " << r << " token " << t;
                EXPECT_EQ(vec_dot(DType::Q6_K, w.row(r), acts[t], cols), static_cast<float>(exact))
                    << "vec_dot row " << r << " token " << t;
            } else {
                EXPECT_NEAR(y[t * rows + r], static_cast<float>(exact), 1e-6 * std::fabs(static_cast<double>(exact)))
                    << "row " << r << " token " << t;
            }
        }
    }
}

TEST(GemmQ6_K, RowRangeWritesOnlyItsRowsAndBadCallsThrow) {
    const int64_t rows = 11, cols = 256, tokens = 5;
    const auto wf = random_values(rows * cols, 71, 0.05f);
    const size_t rb = row_bytes(DType::Q6_K, cols), xb = row_bytes(DType::Q8_K, cols);
    std::vector<uint8_t> wq(rb * rows), xq(xb * tokens);
    for (int64_t r = 0; r < rows; ++r) quantize_row(DType::Q6_K, &wf[r * cols], &wq[r * rb], cols);
    const auto x = random_values(tokens * cols, 72);
    std::vector<const void*> acts;
    for (int64_t t = 0; t < tokens; ++t) {
        quantize_row(DType::Q8_K, &x[t * cols], &xq[t * xb], cols);
        acts.push_back(&xq[t * xb]);
    }
    const WeightView w = WeightView::dense(DType::Q6_K, rows, cols, wq.data());
    std::vector<float> y(rows * tokens, -7.0f);
    std::vector<float*> ys;
    for (int64_t t = 0; t < tokens; ++t) ys.push_back(y.data() + t * rows);
    gemm_q6_k(w, 3, 9, acts.data(), ys.data(), tokens);
    for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
            const float expected = vec_dot(DType::Q6_K, w.row(r), acts[t], cols);
            if (r >= 3 && r < 9) {
                EXPECT_NEAR(y[t * rows + r], expected, 1e-5f * (1.0f + std::fabs(expected))) << "row " << r;
            } else {
                EXPECT_EQ(y[t * rows + r], -7.0f) << "row " << r << " outside [3, 9) was written";
            }
        }
    }
    EXPECT_THROW(gemm_q6_k(w, 4, 12, acts.data(), ys.data(), tokens), ConfigError);
    EXPECT_THROW(gemm_q6_k(w, 5, 4, acts.data(), ys.data(), tokens), ConfigError);
    const WeightView q4 = WeightView::dense(DType::Q4_K, 1, cols, wq.data());
    EXPECT_THROW(gemm_q6_k(q4, 0, 1, acts.data(), ys.data(), tokens), UnsupportedError);
}

TEST(GemmKQuants, PrefillMatmulOnGatheredExpertTokensEqualsActivationRoundedReference) {
    // matmul routes Q4_K and Q6_K with >= 3 tokens through the GEMMs: gathered calls on an expert slice (as the
    // MoE layer makes), on both sides of that threshold and over several tiles, equal matmul_ref_act on copies
    // of the rows up to float summation order.
    ThreadPool pool(2);
    const int64_t num_experts = 3, rows = 37, cols = 512, num_x = 13;
    const std::vector<int32_t> all_x_rows = {12, 0, 5, 5, 9, 3, 1, 7, 2};
    const std::vector<int32_t> all_y_rows = {6, 0, 3, 1, 8, 4, 2, 7, 5};
    for (DType type : {DType::Q4_K, DType::Q6_K}) {
        const auto wf = random_values(num_experts * rows * cols, 81, 0.05f);
        const size_t rb = row_bytes(type, cols);
        std::vector<uint8_t> wq(rb * rows * num_experts);
        for (int64_t r = 0; r < rows * num_experts; ++r) quantize_row(type, &wf[r * cols], &wq[r * rb], cols);
        const auto x = random_values(num_x * cols, 82);
        const WeightView w = WeightView::expert(type, rows, cols, wq.data(), 2);
        for (int64_t tokens : {2, 3, 9}) {
            const std::vector<int32_t> x_rows(all_x_rows.begin(), all_x_rows.begin() + tokens);
            std::vector<int32_t> y_rows;
            for (int64_t t = 0; t < tokens; ++t) {
                y_rows.push_back(static_cast<int32_t>(std::count_if(all_y_rows.begin(), all_y_rows.begin() + tokens,
                                                                    [&](int32_t v) { return v < all_y_rows[t]; })));
            }
            std::vector<float> y(tokens * rows, NAN);
            TokenRows io{x.data(), cols, x_rows.data(), y.data(), rows, y_rows.data(), tokens};
            matmul(w, io, pool);
            std::vector<float> xg(tokens * cols), y_ref(tokens * rows);
            for (int64_t t = 0; t < tokens; ++t) {
                std::memcpy(&xg[t * cols], &x[x_rows[t] * cols], cols * sizeof(float));
            }
            matmul_ref_act(w, xg.data(), tokens, y_ref.data());
            for (int64_t t = 0; t < tokens; ++t) {
                EXPECT_LE(nmse(&y[y_rows[t] * rows], &y_ref[t * rows], rows), 1e-11)
                    << dtype_name(type) << " tokens " << tokens << " token " << t;
            }
        }
    }
}
