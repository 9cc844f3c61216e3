// The CUDA block decoders (kernels/cuda/quant_dev.cuh) are host-callable: this test runs them on the CPU and
// checks every part's values and columns against dequantize_row, so the GPU bit layouts are verified even on
// machines without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/quant_dev.cuh"
#include "kernels/quant.h"

namespace moerig::kernels::cuda::test {
namespace {

/// Decodes n values through Quant<T>'s parts, exactly as the dequantise kernel addresses them.
struct HostDecode {
    const uint8_t* src;
    int64_t n;
    std::vector<float>* out;
    std::vector<int>* hits;

    template <DType T>
    void operator()() {
        using Q = dev::Quant<T>;
        constexpr int kVals = Q::kRuns * Q::kRunLen;
        const int64_t num_blocks = (n + Q::kBlockElems - 1) / Q::kBlockElems;
        for (int64_t b = 0; b < num_blocks; ++b) {
            for (int part = 0; part < Q::kParts; ++part) {
                const int64_t valid = n - b * Q::kBlockElems;
                if (Q::kBounded && part >= valid) continue;
                float v[kVals];
                Q::decode(src + b * Q::kBlockBytes, part, v);
                for (int run = 0; run < Q::kRuns; ++run) {
                    for (int i = 0; i < Q::kRunLen; ++i) {
                        const int64_t c = b * Q::kBlockElems + Q::col(part, run) + i;
                        (*out)[c] = v[run * Q::kRunLen + i];
                        ++(*hits)[c];
                    }
                }
            }
        }
    }
};

class CudaBlockLayout : public ::testing::TestWithParam<DType> {};

TEST_P(CudaBlockLayout, PartsCoverEveryValueOnceAndDecodeLikeTheCpu) {
    const DType type = GetParam();
    const int64_t n = 256 * 3;
    std::mt19937 rng(42);
    std::normal_distribution<float> dist(0.0f, 2.0f);
    std::vector<float> values(n);
    for (auto& v : values) v = dist(rng);
    // Word-aligned storage, as device allocations are.
    std::vector<uint32_t> storage((row_bytes(type, n) + 3) / 4 + 1);
    auto* bytes = reinterpret_cast<uint8_t*>(storage.data());
    quantize_row(type, values.data(), bytes, n);
    std::vector<float> ref(n), got(n, NAN);
    std::vector<int> hits(n, 0);
    dequantize_row(type, bytes, ref.data(), n);
    HostDecode decode{bytes, n, &got, &hits};
    ASSERT_TRUE(dev::dispatch_type(type, decode));
    for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[i], 1) << "value " << i << " decoded " << hits[i] << " times";
        // d * sc * q - m may fuse differently: allow one rounding step of the value's magnitude.
        ASSERT_NEAR(got[i], ref[i], 1e-6f * (1.0f + std::fabs(ref[i]))) << dtype_name(type) << " value " << i;
    }
}

struct Nop {
    template <DType T>
    void operator()() {}
};

TEST(CudaBlockLayout, TypesWithoutDecoderAreRejected) {
    Nop nop;
    EXPECT_FALSE(dev::dispatch_type(DType::Q2_K, nop));
    EXPECT_FALSE(dev::dispatch_type(DType::IQ4_XS, nop));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaBlockLayout,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::MXFP4,
                                           DType::Q4_K, DType::Q5_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace moerig::kernels::cuda::test
