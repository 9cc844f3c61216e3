// The DP4A int8 GEMV against the CPU's llama.cpp semantic (matmul_ref_act: activations rounded to Q8_0, exact
// integer block dots): the quantised activations equal quantize_row(Q8_0)'s, and the products agree to float
// summation order for Q8_0 and Q4_0 weights over odd row counts and batches of 1..19 vectors.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/cuda/matmul_path.h"
#include "kernels/error.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "kernels/quant_blocks.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

TEST(CudaDp4a, QuantisedActivationsEqualTheCpuQ8_0Quantiser) {
    MOERIG_REQUIRE_GPU();
    constexpr int64_t kVecs = 3, kCols = 256;
    auto x = random_floats(static_cast<size_t>(kVecs * kCols), 7);
    x[5] = 0;  // an all-zero block must give d = 0 and zeros
    for (int i = 32; i < 64; ++i) x[static_cast<size_t>(i)] = 0;
    DeviceArray<float> d_x(x);
    DeviceArray<uint8_t> d_q(static_cast<size_t>(q8_activation_bytes(kVecs, kCols)));
    quantize_q8_activations(d_x.get(), kVecs, kCols, d_q.get(), nullptr);
    const auto got = d_q.download();
    const int64_t nb = kCols / 32;
    const size_t scales = static_cast<size_t>((kVecs * kCols + 15) / 16 * 16);
    for (int64_t v = 0; v < kVecs; ++v) {
        std::vector<BlockQ8_0> ref(static_cast<size_t>(nb));
        quantize_row(DType::Q8_0, x.data() + v * kCols, ref.data(), kCols);
        for (int64_t b = 0; b < nb; ++b) {
            float d = 0;
            std::memcpy(&d, got.data() + scales + static_cast<size_t>(v * nb + b) * 4, 4);
            EXPECT_EQ(d, fp16_to_fp32(ref[static_cast<size_t>(b)].d)) << "vec " << v << " block " << b;
            for (int j = 0; j < 32; ++j) {
                const auto q = static_cast<int8_t>(got[static_cast<size_t>(v * kCols + b * 32 + j)]);
                ASSERT_EQ(q, ref[static_cast<size_t>(b)].qs[j]) << "vec " << v << " block " << b << " value " << j;
            }
        }
    }
}

class CudaDp4aTest : public ::testing::TestWithParam<DType> {};

TEST_P(CudaDp4aTest, MatchesMatmulRefActOverOddShapesAndBatches) {
    MOERIG_REQUIRE_GPU();
    const DType type = GetParam();
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 32}, {7, 96}, {129, 512}, {300, 2048}};
    for (const auto& [rows, cols] : shapes) {
        const auto w = quantized_matrix(type, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
        DeviceArray<uint8_t> d_w(w);
        for (int64_t vecs : {int64_t{1}, int64_t{2}, int64_t{8}, int64_t{19}}) {
            const auto x = random_floats(static_cast<size_t>(vecs * cols), static_cast<uint32_t>(vecs + rows));
            std::vector<float> ref(static_cast<size_t>(vecs * rows));
            matmul_ref_act(WeightView::dense(type, rows, cols, w.data()), x.data(), vecs, ref.data());
            DeviceArray<float> d_x(x);
            DeviceArray<uint8_t> d_q(static_cast<size_t>(q8_activation_bytes(vecs, cols)));
            DeviceArray<float> d_y(static_cast<size_t>(vecs * rows));
            quantize_q8_activations(d_x.get(), vecs, cols, d_q.get(), nullptr);
            gemv_dp4a(type, d_w.get(), rows, cols, d_q.get(), vecs, d_y.get(), nullptr);
            EXPECT_LE(nmse(ref, d_y.download()), 1e-10)
                << dtype_name(type) << " " << rows << "x" << cols << " vecs " << vecs;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaDp4aTest, ::testing::Values(DType::Q8_0, DType::Q4_0),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(CudaDp4a, RejectsOtherTypesAndPartialBlocks) {
    MOERIG_REQUIRE_GPU();
    DeviceArray<uint8_t> buf(4096);
    DeviceArray<float> y(64);
    EXPECT_THROW(gemv_dp4a(DType::Q2_K, buf.get(), 4, 256, buf.get(), 1, y.get(), nullptr), UnsupportedError);
    EXPECT_THROW(gemv_dp4a(DType::Q8_0, buf.get(), 4, 40, buf.get(), 1, y.get(), nullptr), ConfigError);
    EXPECT_FALSE(gemv_dp4a_supported(DType::F16));
    EXPECT_EQ(q8_activation_bytes(2, 64), 128 + 2 * 2 * 4 + 2 * 2 * 4);  // values, scales, sums
}

TEST(CudaMatmulPath, PicksTheKernelByBatchTypeAndAlignment) {
    // A host decision (no GPU needed): addresses stand for device pointers.
    alignas(16) static const unsigned char w[64] = {}, x[64] = {};
    const auto* xf = reinterpret_cast<const float*>(x);
    EXPECT_EQ(matmul_path(DType::Q4_K, w, xf, 256, 1, true), MatmulPath::kGemvDp4a);
    EXPECT_EQ(matmul_path(DType::Q4_K, w, xf, 256, kGemvMaxVecs, true), MatmulPath::kGemvDp4a);
    EXPECT_EQ(matmul_path(DType::Q4_K, w, xf, 256, kGemvMaxVecs + 1, true), MatmulPath::kGemm);
    EXPECT_EQ(matmul_path(DType::Q4_K, w, xf, 256, 1, false), MatmulPath::kGemv);
    EXPECT_EQ(matmul_path(DType::Q4_K, w + 2, xf, 256, 1, true), MatmulPath::kGemv);      // Q4_K needs 16-byte weights
    EXPECT_EQ(matmul_path(DType::Q8_0, w + 2, xf, 256, 1, true), MatmulPath::kGemvDp4a);  // Q8_0: 2 bytes
    EXPECT_EQ(matmul_path(DType::F16, w, xf, 256, 1, true), MatmulPath::kGemv);           // no int8 path for F16
    EXPECT_EQ(matmul_path(DType::F16, w, xf + 1, 256, 1, true), MatmulPath::kGemm);       // x not 16-byte aligned
    EXPECT_EQ(matmul_path(DType::F16, w, xf, 258, 1, true), MatmulPath::kGemm);           // columns not a multiple of 4
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
