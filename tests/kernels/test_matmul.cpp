// Matmul: the fast path (quantised activations, SIMD, threads, row tiles) against the exact reference and the
// activation-rounded reference (llama.cpp's semantic) for every
// weight type over odd shapes and token counts; SIMD dot products against the scalar ones; gathered tokens,
// expert slices and row slices read the right bytes; bad shapes raise errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/error.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "tests/kernels/kernel_test_util.h"

using namespace moerig;
using namespace moerig::kernels;
using moerig::testing::nmse;
using moerig::testing::random_values;

namespace {

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                              DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                              DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4};

// matmul differs from the exact matmul_ref only by the activation conversion (weights are identical bytes).
// Quantising x to 8 bits per 32 (Q8_0) or 256 (Q8_K) values gives NMSE ~6e-5 / ~3e-4 on this data (see
// test_quant); rounding to F16 (unit roundoff u = 2^-11) or BF16 (u = 2^-8) gives NMSE ~u^2/3 = 1.3e-7 /
// 5e-6 at most; for random weights the product inherits that ratio. F32 weights only reorder float sums.
double matmul_bound(DType t) {
    switch (activation_type(t)) {
        case DType::F32:
            return 1e-10;
        case DType::F16:
            return 2e-7;
        case DType::BF16:
            return 8e-6;
        case DType::Q8_0:
            return 3e-4;
        default:
            return 1.5e-3;
    }
}

std::vector<uint8_t> quantized(DType t, int64_t rows, int64_t cols, uint32_t seed) {
    const auto w = random_values(rows * cols, seed, 0.05f);
    std::vector<uint8_t> q(row_bytes(t, cols) * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, w.data() + r * cols, q.data() + r * row_bytes(t, cols), cols);
    return q;
}

}  // namespace

TEST(Matmul, FastMatchesReferenceForEveryTypeShapeAndTokenCount) {
    ThreadPool pool(3);
    struct Shape {
        int64_t rows, cols_blocks_k, tokens;
    };
    // cols are multiples of 256 so every type (K-quants included) can be used; rows and tokens are odd on purpose.
    const Shape shapes[] = {{1, 1, 1}, {7, 2, 1}, {33, 1, 3}, {100, 3, 5}, {64, 2, 17}};
    for (DType t : kWeightTypes) {
        for (const auto& s : shapes) {
            const int64_t cols = 256 * s.cols_blocks_k;
            const auto wq = quantized(t, s.rows, cols, 11);
            const auto x = random_values(s.tokens * cols, 12);
            const WeightView w = WeightView::dense(t, s.rows, cols, wq.data());
            std::vector<float> y(s.rows * s.tokens, NAN), y_ref(s.rows * s.tokens);
            matmul_ref(w, x.data(), s.tokens, y_ref.data());
            matmul(w, x.data(), s.tokens, y.data(), pool);
            EXPECT_LE(nmse(y, y_ref), matmul_bound(t))
                << dtype_name(t) << " rows " << s.rows << " cols " << cols << " tokens " << s.tokens;
        }
    }
}

TEST(Matmul, FastEqualsActivationRoundedReferenceUpToFloatSumOrder) {
    // matmul_ref_act converts x exactly as the fast path does, so only the order of float additions differs
    // (integer block sums are exact): the products agree to float rounding for every type.
    ThreadPool pool(3);
    const int64_t rows = 37, cols = 512, tokens = 5;
    for (DType t : kWeightTypes) {
        const auto wq = quantized(t, rows, cols, 81);
        const auto x = random_values(tokens * cols, 82);
        const WeightView w = WeightView::dense(t, rows, cols, wq.data());
        std::vector<float> y(rows * tokens, NAN), y_ref(rows * tokens), y_exact(rows * tokens);
        matmul_ref_act(w, x.data(), tokens, y_ref.data());
        matmul(w, x.data(), tokens, y.data(), pool);
        EXPECT_LE(nmse(y, y_ref), 1e-11) << dtype_name(t);
        // And the rounded reference is not the exact one, except for F32 weights.
        matmul_ref(w, x.data(), tokens, y_exact.data());
        if (t != DType::F32) {
            EXPECT_GT(nmse(y_ref, y_exact), 1e-12) << dtype_name(t);
        }
    }
}

TEST(Matmul, HalfWeightsRoundActivationsToTheirOwnTypeAsLlamaCpp) {
    // ggml-cpu converts x to the weight's half type before the dot product: with a weight of 1.0, x = 1 + 2^-13
    // gives exactly 1 for F16 (11-bit mantissa) and x = 1 + 2^-10 exactly 1 for BF16 (8-bit mantissa).
    ThreadPool pool(1);
    const int64_t cols = 32;
    std::vector<float> ones(cols, 0.0f);
    ones[3] = 1.0f;
    for (DType t : {DType::F16, DType::BF16}) {
        std::vector<uint8_t> wq(row_bytes(t, cols));
        quantize_row(t, ones.data(), wq.data(), cols);
        std::vector<float> x(cols, 0.0f);
        x[3] = 1.0f + (t == DType::F16 ? 0x1p-13f : 0x1p-10f);
        float y = NAN, y_act = NAN, y_exact = NAN;
        const WeightView w = WeightView::dense(t, 1, cols, wq.data());
        matmul(w, x.data(), 1, &y, pool);
        matmul_ref_act(w, x.data(), 1, &y_act);
        matmul_ref(w, x.data(), 1, &y_exact);
        EXPECT_EQ(y, 1.0f) << dtype_name(t);
        EXPECT_EQ(y_act, 1.0f) << dtype_name(t);
        EXPECT_EQ(y_exact, x[3]) << dtype_name(t);
    }
}

TEST(Matmul, Q8ZeroActivationsUseGgmlCpuScaleAndRoundTiesToEven) {
    // ggml-cpu's x86 quantize_row_q8_0: scale 127 / max|x| and round-to-nearest-even. With max|x| = 127 the
    // scale is 1, so x = 2.5 quantises to 2 (the reference quantizer's roundf would give 3) and x = 3.5 to 4.
    ThreadPool pool(1);
    const int64_t cols = 32;
    BlockQ8_0 wb{};
    wb.d = fp32_to_fp16(1.0f);
    wb.qs[1] = 1;
    wb.qs[2] = 10;
    std::vector<float> x(cols, 0.0f);
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = 3.5f;
    float y = NAN, y_act = NAN;
    const WeightView w = WeightView::dense(DType::Q8_0, 1, cols, &wb);
    matmul(w, x.data(), 1, &y, pool);
    matmul_ref_act(w, x.data(), 1, &y_act);
    EXPECT_EQ(y, 2.0f + 10 * 4.0f);
    EXPECT_EQ(y_act, y);
}

TEST(Matmul, ThirtyTwoWideTypesAcceptColumnsThatAreNotMultiplesOf256) {
    ThreadPool pool(2);
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::MXFP4, DType::Q5_1, DType::F16}) {
        const int64_t rows = 9, cols = 96, tokens = 2;
        const auto wq = quantized(t, rows, cols, 3);
        const auto x = random_values(tokens * cols, 4);
        const WeightView w = WeightView::dense(t, rows, cols, wq.data());
        std::vector<float> y(rows * tokens), y_ref(rows * tokens);
        matmul_ref(w, x.data(), tokens, y_ref.data());
        matmul(w, x.data(), tokens, y.data(), pool);
        EXPECT_LE(nmse(y, y_ref), matmul_bound(t)) << dtype_name(t);
    }
}

TEST(Matmul, SimdDotEqualsScalarDotUpToFloatRounding) {
    const int64_t n = 1024;
    const auto x = random_values(n, 21);
    for (DType t : kWeightTypes) {
        const auto wq = quantized(t, 1, n, 22);
        const DType a = activation_type(t);
        std::vector<uint8_t> xq(row_bytes(a, n));
        quantize_row(a, x.data(), xq.data(), n);
        const float fast = vec_dot(t, wq.data(), xq.data(), n);
        const float scalar = vec_dot_scalar(t, wq.data(), xq.data(), n);
        // Integer block sums are exact in both; only the order of the per-block float adds differs.
        EXPECT_NEAR(fast, scalar, 1e-5f * (std::fabs(scalar) + 1.0f)) << dtype_name(t);
    }
}

TEST(Matmul, QuantisedDotEqualsDotOfDequantisedValues) {
    // The integer dot must reproduce sum(dequant(w) * dequant(x)) exactly up to float rounding: this pins the
    // block layout used by the dot product to the one used by dequantize_row.
    const int64_t n = 512;
    for (DType t : kWeightTypes) {
        const DType a = activation_type(t);
        if (a == DType::F32) continue;
        const auto wq = quantized(t, 1, n, 5);
        std::vector<uint8_t> xq(row_bytes(a, n));
        quantize_row(a, random_values(n, 6).data(), xq.data(), n);
        std::vector<float> wd(n), xd(n);
        dequantize_row(t, wq.data(), wd.data(), n);
        dequantize_row(a, xq.data(), xd.data(), n);
        double expect = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
            expect += static_cast<double>(wd[i]) * xd[i];
            mag += std::fabs(static_cast<double>(wd[i]) * xd[i]);
        }
        EXPECT_NEAR(vec_dot_scalar(t, wq.data(), xq.data(), n), expect, 1e-5 * mag) << dtype_name(t);
        EXPECT_NEAR(vec_dot(t, wq.data(), xq.data(), n), expect, 1e-5 * mag) << dtype_name(t);
    }
}

TEST(Matmul, PrefillSplitsTokensWhenRowsAreFewAndStillMatches) {
    ThreadPool pool(4);
    const int64_t rows = 8, cols = 512, tokens = 37;  // fewer row tiles than threads: tokens are split instead
    const auto wq = quantized(DType::Q4_K, rows, cols, 31);
    const auto x = random_values(tokens * cols, 32);
    const WeightView w = WeightView::dense(DType::Q4_K, rows, cols, wq.data());
    std::vector<float> y(rows * tokens), y_ref(rows * tokens);
    matmul_ref(w, x.data(), tokens, y_ref.data());
    matmul(w, x.data(), tokens, y.data(), pool);
    EXPECT_LE(nmse(y, y_ref), matmul_bound(DType::Q4_K));
}

TEST(Matmul, GatheredTokensOnAnExpertSliceMatchDenseProductOfCopies) {
    ThreadPool pool(3);
    const int64_t num_experts = 4, rows = 48, cols = 256, num_x = 10;
    const DType t = DType::Q6_K;
    const auto all = quantized(t, num_experts * rows, cols, 41);
    const auto x = random_values(num_x * 300, 42);  // x rows padded to 300 floats
    const int32_t x_rows[] = {7, 2, 9};
    const int32_t y_rows[] = {1, 4, 0};
    const int64_t expert_idx = 2;

    TokenRows io;
    io.x = x.data();
    io.x_stride = 300;
    io.x_rows = x_rows;
    std::vector<float> y(5 * 64, -1.0f);
    io.y = y.data();
    io.y_stride = 64;
    io.y_rows = y_rows;
    io.num_tokens = 3;
    const WeightView w = WeightView::expert(t, rows, cols, all.data(), expert_idx);
    matmul(w, io, pool);

    // The same product from copied inputs and a copied expert matrix.
    std::vector<float> xc(3 * cols), yc(3 * rows);
    for (int i = 0; i < 3; ++i) std::copy_n(x.data() + x_rows[i] * 300, cols, xc.data() + i * cols);
    std::vector<uint8_t> wc(all.begin() + expert_idx * rows * row_bytes(t, cols),
                            all.begin() + (expert_idx + 1) * rows * row_bytes(t, cols));
    matmul(WeightView::dense(t, rows, cols, wc.data()), xc.data(), 3, yc.data(), pool);
    for (int i = 0; i < 3; ++i) {
        for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(y[y_rows[i] * 64 + r], yc[i * rows + r]);
        for (int64_t r = rows; r < 64; ++r) ASSERT_EQ(y[y_rows[i] * 64 + r], -1.0f) << "wrote past the rows";
    }
    for (int64_t r = 0; r < 64; ++r) EXPECT_EQ(y[2 * 64 + r], -1.0f) << "row 2 is not a destination";
}

TEST(Matmul, RowSliceComputesTheSameRowsAsTheFullMatrix) {
    ThreadPool pool(2);
    const int64_t rows = 40, cols = 256;
    const auto wq = quantized(DType::Q4_K, rows, cols, 51);
    const auto x = random_values(cols, 52);
    const WeightView full = WeightView::dense(DType::Q4_K, rows, cols, wq.data());
    std::vector<float> y_full(rows), y_part(13);
    matmul(full, x.data(), 1, y_full.data(), pool);
    matmul(full.slice_rows(20, 33), x.data(), 1, y_part.data(), pool);
    for (int r = 0; r < 13; ++r) EXPECT_EQ(y_part[r], y_full[20 + r]);
    EXPECT_THROW(full.slice_rows(30, 41), ConfigError);
}

TEST(Matmul, ThreadCountDoesNotChangeResults) {
    const int64_t rows = 77, cols = 512, tokens = 6;
    const auto wq = quantized(DType::Q8_0, rows, cols, 61);
    const auto x = random_values(tokens * cols, 62);
    const WeightView w = WeightView::dense(DType::Q8_0, rows, cols, wq.data());
    std::vector<float> y1(rows * tokens), y4(rows * tokens);
    ThreadPool one(1), four(4);
    matmul(w, x.data(), tokens, y1.data(), one);
    matmul(w, x.data(), tokens, y4.data(), four);
    EXPECT_EQ(y1, y4);
}

TEST(Matmul, RejectsColumnsThatAreNotWholeBlocksAndUnsupportedTypes) {
    ThreadPool pool(1);
    std::vector<uint8_t> buf(4096);
    std::vector<float> x(512), y(16);
    EXPECT_THROW(matmul(WeightView{DType::Q8_0, 2, 48, buf.data(), 51}, x.data(), 1, y.data(), pool), ConfigError);
    EXPECT_THROW(matmul(WeightView{DType::IQ2_XXS, 1, 256, buf.data(), 66}, x.data(), 1, y.data(), pool),
                 UnsupportedError);
    EXPECT_THROW(matmul(WeightView{DType::Q4_K, 2, 256, buf.data(), 100}, x.data(), 1, y.data(), pool), ConfigError);
}

TEST(Matmul, NonFiniteActivationsPropagateInsteadOfBeingHidden) {
    ThreadPool pool(2);
    const int64_t rows = 4, cols = 256;
    const auto wq = quantized(DType::F16, rows, cols, 71);
    auto x = random_values(cols, 72);
    x[5] = NAN;
    std::vector<float> y(rows);
    matmul(WeightView::dense(DType::F16, rows, cols, wq.data()), x.data(), 1, y.data(), pool);
    for (float v : y) EXPECT_TRUE(std::isnan(v));
}
