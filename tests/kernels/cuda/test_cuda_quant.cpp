// CUDA dequantisation, decode GEMV (plain and expert-indexed) and prefill GEMM against the CPU references
// (dequantize_row, matmul_ref) for every supported weight type, over odd row counts and batch sizes.
#include <cublas_v2.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>

#include "kernels/cuda/dequantize.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.h"
#include "kernels/error.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

constexpr DType kTypes[] = {DType::F32,   DType::F16,  DType::BF16, DType::Q8_0, DType::Q4_0,
                            DType::MXFP4, DType::Q4_K, DType::Q5_K, DType::Q6_K};

/// Random weights quantised with the CPU reference quantiser: [num_matrices][rows][cols] bytes.
std::vector<uint8_t> make_weights(DType type, int64_t num_matrices, int64_t rows, int64_t cols, uint32_t seed) {
    const size_t rb = row_bytes(type, cols);
    std::vector<uint8_t> bytes(rb * rows * num_matrices);
    const auto values = random_floats(static_cast<size_t>(num_matrices * rows * cols), seed);
    for (int64_t r = 0; r < num_matrices * rows; ++r) {
        quantize_row(type, values.data() + r * cols, bytes.data() + r * rb, cols);
    }
    return bytes;
}

std::vector<float> to_float_bytes(const std::vector<uint8_t>& bytes) {
    std::vector<float> f((bytes.size() + 3) / 4);
    std::memcpy(f.data(), bytes.data(), bytes.size());
    return f;
}

class CudaQuantTest : public ::testing::TestWithParam<DType> {
  protected:
    void SetUp() override { MOERIG_REQUIRE_GPU(); }
    /// Device copy of weight bytes (stored in a float array for alignment).
    std::unique_ptr<DeviceArray<float>> upload(const std::vector<uint8_t>& bytes) {
        return std::make_unique<DeviceArray<float>>(to_float_bytes(bytes));
    }
};

std::string type_name(const ::testing::TestParamInfo<DType>& info) {
    return std::string(dtype_name(info.param));
}

TEST_P(CudaQuantTest, DequantizeMatchesCpuDequantizeRow) {
    const DType type = GetParam();
    const int64_t n = 256 * 7;
    const auto bytes = make_weights(type, 1, 1, n, 11);
    std::vector<float> ref(n);
    dequantize_row(type, bytes.data(), ref.data(), n);
    auto d_w = upload(bytes);
    DeviceArray<float> d_out(n);
    dequantize(type, d_w->get(), n, d_out.get(), nullptr);
    EXPECT_LT(nmse(ref, d_out.download()), 1e-12);
}

TEST_P(CudaQuantTest, GemvMatchesMatmulRefOverOddShapesAndBatches) {
    const DType type = GetParam();
    for (auto [rows, cols, num_vecs] : {std::tuple<int64_t, int64_t, int64_t>{1, 256, 1},
                                        {37, 512, 1},
                                        {130, 1024, 3},
                                        {67, 768, 8},
                                        {5, 2304, 13},
                                        // 16-byte aligned rows of every type, several staged chunks
                                        {6, 6144, 2}}) {
        const auto bytes = make_weights(type, 1, rows, cols, static_cast<uint32_t>(rows * 7 + cols));
        const auto x = random_floats(static_cast<size_t>(num_vecs * cols), 5);
        std::vector<float> ref(static_cast<size_t>(num_vecs * rows));
        matmul_ref(WeightView::dense(type, rows, cols, bytes.data()), x.data(), num_vecs, ref.data());
        auto d_w = upload(bytes);
        DeviceArray<float> d_x(x);
        DeviceArray<float> d_y(ref.size());
        gemv(type, d_w->get(), rows, cols, d_x.get(), num_vecs, d_y.get(), nullptr);
        EXPECT_LT(nmse(ref, d_y.download()), 1e-9) << rows << "x" << cols << " with " << num_vecs << " vectors";
    }
}

TEST_P(CudaQuantTest, FloatTypesAcceptColumnsThatAreNotBlockMultiples) {
    const DType type = GetParam();
    if (dtype_traits(type).quantized) GTEST_SKIP() << "quantised types need whole blocks";
    const int64_t rows = 9, cols = 77, num_vecs = 2;
    const auto bytes = make_weights(type, 1, rows, cols, 3);
    // x rows must stay 16-byte aligned only for vector loads, which float types do not use.
    const auto x = random_floats(static_cast<size_t>(num_vecs * cols), 4);
    std::vector<float> ref(static_cast<size_t>(num_vecs * rows));
    matmul_ref(WeightView::dense(type, rows, cols, bytes.data()), x.data(), num_vecs, ref.data());
    auto d_w = upload(bytes);
    DeviceArray<float> d_x(x);
    DeviceArray<float> d_y(ref.size());
    gemv(type, d_w->get(), rows, cols, d_x.get(), num_vecs, d_y.get(), nullptr);
    EXPECT_LT(nmse(ref, d_y.download()), 1e-9);
}

TEST_P(CudaQuantTest, GemvIndexedUsesEachSlotsExpertAndZeroesAbsentOnes) {
    const DType type = GetParam();
    const int64_t num_experts = 5, rows = 33, cols = 512, k = 2, num_tokens = 3;
    const auto bytes = make_weights(type, num_experts, rows, cols, 21);
    const int64_t matrix_bytes = static_cast<int64_t>(row_bytes(type, cols)) * rows;
    const auto x = random_floats(static_cast<size_t>(num_tokens * cols), 6);
    const std::vector<int32_t> ids = {4, 0, 2, -1, 1, 4};
    std::vector<float> ref(static_cast<size_t>(num_tokens * k * rows), 0.0f);
    for (int64_t s = 0; s < num_tokens * k; ++s) {
        if (ids[s] < 0) continue;
        matmul_ref(WeightView::expert(type, rows, cols, bytes.data(), ids[s]), x.data() + (s / k) * cols, 1,
                   ref.data() + s * rows);
    }
    auto d_w = upload(bytes);
    DeviceArray<float> d_x(x);
    DeviceArray<int32_t> d_ids(ids);
    DeviceArray<float> d_y(ref.size());
    MOERIG_CUDA_CHECK(cudaMemset(d_y.get(), 0xFF, ref.size() * sizeof(float)));  // NaN: absent slots must be written
    gemv_indexed(type, d_w->get(), matrix_bytes, rows, cols, d_ids.get(), num_tokens * k, d_x.get(), cols, k, d_y.get(),
                 rows, nullptr);
    EXPECT_LT(nmse(ref, d_y.download()), 1e-9);
}

TEST_P(CudaQuantTest, GemmMatchesMatmulRefAcrossTiles) {
    const DType type = GetParam();
    const int64_t rows = kGemmTileRows + 45, cols = 256, num_tokens = 19;
    const auto bytes = make_weights(type, 1, rows, cols, 8);
    const auto x = random_floats(static_cast<size_t>(num_tokens * cols), 9);
    std::vector<float> ref(static_cast<size_t>(num_tokens * rows));
    matmul_ref(WeightView::dense(type, rows, cols, bytes.data()), x.data(), num_tokens, ref.data());
    auto d_w = upload(bytes);
    DeviceArray<float> d_x(x);
    DeviceArray<float> d_y(ref.size());
    DeviceArray<float> d_scratch(static_cast<size_t>(std::max<int64_t>(1, gemm_scratch_elems(type, rows, cols))));
    cublasHandle_t handle = nullptr;
    ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
    gemm(handle, type, d_w->get(), rows, cols, d_x.get(), num_tokens, d_y.get(), d_scratch.get(), nullptr);
    const auto got = d_y.download();
    cublasDestroy(handle);
    EXPECT_LT(nmse(ref, got), 1e-9);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaQuantTest, ::testing::ValuesIn(kTypes), type_name);

TEST(CudaGemv, RejectsUnsupportedTypesAndPartialBlocks) {
    MOERIG_REQUIRE_GPU();
    DeviceArray<float> d(1024);
    EXPECT_FALSE(gemv_supported(DType::Q2_K));
    EXPECT_THROW(gemv(DType::Q2_K, d.get(), 1, 256, d.get(), 1, d.get(), nullptr), UnsupportedError);
    EXPECT_THROW(gemv(DType::Q4_K, d.get(), 1, 100, d.get(), 1, d.get(), nullptr), ConfigError);
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
