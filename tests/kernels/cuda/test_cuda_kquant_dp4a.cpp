// The DP4A GEMV for Q4_K, Q5_K and Q6_K weights against the CPU: the host run of the same block dot products
// (kernels/kquant_dp4a.h) on the device's quantised activations must agree to float summation order, and the
// float reference (matmul_ref) within the activations' int8 rounding, over odd row counts, K = 256 .. 4096 + 256
// and batches of 1..11 vectors; the expert-indexed form per slot, with absent experts giving zeros.
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/error.h"
#include "kernels/kquant_dp4a.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

/// The device's quantised activations, downloaded and split as quantize_q8_activations lays them out.
struct HostActivations {
    std::vector<int32_t> q;  // int8 values, 4-byte aligned
    std::vector<float> d;
    std::vector<int> sums;
    HostActivations(const std::vector<uint8_t>& raw, int64_t num_vecs, int64_t num_cols)
        : q(static_cast<size_t>(num_vecs * num_cols / 4)),
          d(static_cast<size_t>(num_vecs * num_cols / 32)),
          sums(d.size()) {
        const size_t scales = static_cast<size_t>((num_vecs * num_cols + 15) / 16 * 16);
        std::memcpy(q.data(), raw.data(), static_cast<size_t>(num_vecs * num_cols));
        std::memcpy(d.data(), raw.data() + scales, d.size() * 4);
        std::memcpy(sums.data(), raw.data() + scales + d.size() * 4, sums.size() * 4);
    }
    const int8_t* values() const { return reinterpret_cast<const int8_t*>(q.data()); }
};

/// Row r of W times activation vector v, from the host block dot products.
float host_row_dot(DType type, const uint8_t* row, int64_t cols, const HostActivations& a, int64_t v) {
    const int64_t nb = cols / kQK_K;
    const size_t bb = row_bytes(type, kQK_K);
    float sum = 0;
    for (int64_t b = 0; b < nb; ++b) {
        const int64_t x0 = v * cols + b * kQK_K;
        sum += kq::block_dot(type, row + static_cast<size_t>(b) * bb, a.values() + x0, a.d.data() + x0 / 32,
                             a.sums.data() + x0 / 32);
    }
    return sum;
}

class CudaKQuantDp4aTest : public ::testing::TestWithParam<DType> {};

TEST(CudaKQuantDp4a, QuantiserWritesTheBlockSums) {
    MOERIG_REQUIRE_GPU();
    constexpr int64_t kVecs = 3, kCols = 512;
    const auto x = random_floats(static_cast<size_t>(kVecs * kCols), 11);
    DeviceArray<float> d_x(x);
    DeviceArray<uint8_t> d_q(static_cast<size_t>(q8_activation_bytes(kVecs, kCols)));
    quantize_q8_activations(d_x.get(), kVecs, kCols, d_q.get(), nullptr);
    const HostActivations a(d_q.download(), kVecs, kCols);
    for (size_t b = 0; b < a.sums.size(); ++b) {
        int s = 0;
        for (int i = 0; i < 32; ++i) s += a.values()[32 * b + static_cast<size_t>(i)];
        ASSERT_EQ(a.sums[b], s) << "block " << b;
    }
}

TEST_P(CudaKQuantDp4aTest, MatchesTheHostBlockDotsOverOddShapesAndBatches) {
    MOERIG_REQUIRE_GPU();
    const DType type = GetParam();
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 256}, {7, 768}, {129, 4096}, {300, 4352}, {33, 1280}};
    for (const auto& [rows, cols] : shapes) {
        const auto w = quantized_matrix(type, rows, cols, static_cast<uint32_t>(rows * 31 + cols));
        const size_t rb = row_bytes(type, cols);
        DeviceArray<uint8_t> d_w(w);
        for (int64_t vecs : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, int64_t{8}, int64_t{11}}) {
            const auto x = random_floats(static_cast<size_t>(vecs * cols), static_cast<uint32_t>(vecs + rows));
            DeviceArray<float> d_x(x);
            DeviceArray<uint8_t> d_q(static_cast<size_t>(q8_activation_bytes(vecs, cols)));
            DeviceArray<float> d_y(static_cast<size_t>(vecs * rows));
            quantize_q8_activations(d_x.get(), vecs, cols, d_q.get(), nullptr);
            gemv_dp4a(type, d_w.get(), rows, cols, d_q.get(), vecs, d_y.get(), nullptr);
            const auto got = d_y.download();
            const HostActivations a(d_q.download(), vecs, cols);
            std::vector<float> ref(static_cast<size_t>(vecs * rows)), ref_float(ref.size());
            for (int64_t v = 0; v < vecs; ++v) {
                for (int64_t r = 0; r < rows; ++r) {
                    ref[static_cast<size_t>(v * rows + r)] = host_row_dot(type, w.data() + r * rb, cols, a, v);
                }
            }
            matmul_ref(WeightView::dense(type, rows, cols, w.data()), x.data(), vecs, ref_float.data());
            EXPECT_LE(nmse(ref, got), 1e-10) << dtype_name(type) << " " << rows << "x" << cols << " vecs " << vecs;
            EXPECT_LE(nmse(ref_float, got), 1e-3) << dtype_name(type) << " " << rows << "x" << cols << " vecs " << vecs;
        }
    }
}

TEST_P(CudaKQuantDp4aTest, IndexedSlotsUseTheirExpertsAndVectors) {
    MOERIG_REQUIRE_GPU();
    const DType type = GetParam();
    constexpr int64_t kExperts = 3, kRows = 133, kCols = 1536, kYStride = 140;
    const auto w = quantized_matrix(type, kExperts * kRows, kCols, 5);
    const size_t rb = row_bytes(type, kCols);
    const auto matrix_bytes = static_cast<int64_t>(rb) * kRows;
    DeviceArray<uint8_t> d_w(w);
    // slots_per_x = 2: gate/up of two tokens with top-2 (one expert absent); 1: down, one vector per slot.
    for (int64_t slots_per_x : {int64_t{2}, int64_t{1}}) {
        const std::vector<int32_t> ids = {2, 0, -1, 1};
        const auto num_slots = static_cast<int64_t>(ids.size());
        const int64_t num_x = num_slots / slots_per_x;
        const auto x = random_floats(static_cast<size_t>(num_x * kCols), static_cast<uint32_t>(17 + slots_per_x));
        DeviceArray<float> d_x(x);
        DeviceArray<uint8_t> d_q(static_cast<size_t>(q8_activation_bytes(num_x, kCols)));
        DeviceArray<int32_t> d_ids(ids);
        std::vector<float> init(static_cast<size_t>(num_slots * kYStride), 123.0f);
        DeviceArray<float> d_y(init);
        quantize_q8_activations(d_x.get(), num_x, kCols, d_q.get(), nullptr);
        gemv_dp4a_indexed(type, d_w.get(), matrix_bytes, kRows, kCols, d_ids.get(), num_slots, d_q.get(), num_x,
                          slots_per_x, d_y.get(), kYStride, nullptr);
        const auto got = d_y.download();
        const HostActivations a(d_q.download(), num_x, kCols);
        for (int64_t s = 0; s < num_slots; ++s) {
            std::vector<float> ref(kRows), row_got(kRows);
            for (int64_t r = 0; r < kRows; ++r) {
                const int32_t e = ids[static_cast<size_t>(s)];
                ref[static_cast<size_t>(r)] =
                    e < 0 ? 0.0f
                          : host_row_dot(type, w.data() + static_cast<size_t>(e * matrix_bytes) + r * rb, kCols, a,
                                         s / slots_per_x);
                row_got[static_cast<size_t>(r)] = got[static_cast<size_t>(s * kYStride + r)];
            }
            if (ids[static_cast<size_t>(s)] < 0) {
                for (float v : row_got) ASSERT_EQ(v, 0.0f) << "absent expert, slot " << s;
            } else {
                EXPECT_LE(nmse(ref, row_got), 1e-10) << dtype_name(type) << " slot " << s << " per x " << slots_per_x;
            }
            // Padding between slots' rows stays untouched.
            for (int64_t r = kRows; r < kYStride; ++r) ASSERT_EQ(got[static_cast<size_t>(s * kYStride + r)], 123.0f);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaKQuantDp4aTest, ::testing::Values(DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(CudaKQuantDp4a, RejectsMisalignedWeightsAndUnsupportedIndexedTypes) {
    MOERIG_REQUIRE_GPU();
    DeviceArray<uint8_t> buf(8192);
    DeviceArray<float> y(64);
    DeviceArray<int32_t> ids(std::vector<int32_t>{0});
    EXPECT_TRUE(gemv_dp4a_supported(DType::Q6_K));
    EXPECT_FALSE(gemv_dp4a_indexed_supported(DType::Q8_0));
    EXPECT_EQ(gemv_dp4a_weight_alignment(DType::Q4_K), 16u);
    EXPECT_THROW(gemv_dp4a(DType::Q4_K, buf.get() + 4, 4, 256, buf.get(), 1, y.get(), nullptr), ConfigError);
    EXPECT_THROW(
        gemv_dp4a_indexed(DType::Q8_0, buf.get(), 34 * 8, 4, 64, ids.get(), 1, buf.get(), 1, 1, y.get(), 4, nullptr),
        UnsupportedError);
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
