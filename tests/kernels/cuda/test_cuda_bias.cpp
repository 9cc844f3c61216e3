// Row-broadcast kernels of the GPU engine (kernels/cuda/bias.h) against the CPU loops they replace.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/bias.h"
#include "kernels/error.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

TEST(CudaBias, AddBiasRowsAddsTheVectorToEveryRow) {
    MOERIG_REQUIRE_GPU();
    constexpr int64_t kRows = 37, kN = 129;
    const auto y0 = random_floats(kRows * kN, 1);
    const auto bias = random_floats(kN, 2);
    DeviceArray<float> d_y(y0), d_b(bias);
    add_bias_rows(d_y.get(), d_b.get(), kRows, kN, nullptr);
    const auto got = d_y.download();
    for (int64_t r = 0; r < kRows; ++r) {
        for (int64_t c = 0; c < kN; ++c) ASSERT_EQ(got[r * kN + c], y0[r * kN + c] + bias[c]) << r << "," << c;
    }
}

TEST(CudaBias, IndexedBiasPicksEachSlotsExpertRowAndSkipsAbsentSlots) {
    MOERIG_REQUIRE_GPU();
    constexpr int64_t kSlots = 9, kN = 40, kStride = 48, kExperts = 5;
    const auto y0 = random_floats(kSlots * kStride, 3);
    const auto bias = random_floats(kExperts * kN, 4);
    const std::vector<int32_t> ids = {4, 0, -1, 2, 2, 1, 3, -1, 0};
    DeviceArray<float> d_y(y0), d_b(bias);
    DeviceArray<int32_t> d_ids(ids);
    add_indexed_bias(d_y.get(), kStride, d_b.get(), d_ids.get(), kSlots, kN, nullptr);
    const auto got = d_y.download();
    for (int64_t s = 0; s < kSlots; ++s) {
        for (int64_t c = 0; c < kStride; ++c) {
            float want = y0[s * kStride + c];
            if (c < kN && ids[s] >= 0) want += bias[ids[s] * kN + c];
            ASSERT_EQ(got[s * kStride + c], want) << "slot " << s << " col " << c;
        }
    }
}

TEST(CudaBias, SigmoidGateScalesEachRowLikeTheCpuEngine) {
    MOERIG_REQUIRE_GPU();
    constexpr int64_t kRows = 6, kN = 33;
    const auto y0 = random_floats(kRows * kN, 5);
    const std::vector<float> g = {-3.f, -0.5f, 0.25f, 1.f, 4.f, 9.f};
    DeviceArray<float> d_y(y0), d_g(g);
    scale_rows_by_sigmoid_gate(d_y.get(), d_g.get(), kRows, kN, nullptr);
    const auto got = d_y.download();
    for (int64_t r = 0; r < kRows; ++r) {
        const float s = (g[r] / (1.f + std::exp(-g[r]))) / g[r];
        for (int64_t c = 0; c < kN; ++c) {
            EXPECT_NEAR(got[r * kN + c], y0[r * kN + c] * s, 1e-6f * (1.f + std::fabs(y0[r * kN + c])));
        }
    }
}

TEST(CudaBias, BadShapesAreConfigErrors) {
    MOERIG_REQUIRE_GPU();
    DeviceArray<float> y(16);
    DeviceArray<int32_t> ids(4);
    EXPECT_THROW(add_bias_rows(y.get(), y.get(), 2, 0, nullptr), ConfigError);
    EXPECT_THROW(add_indexed_bias(y.get(), 2, y.get(), ids.get(), 2, 4, nullptr), ConfigError);
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
