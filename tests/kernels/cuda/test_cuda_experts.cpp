// Grouped SwiGLU experts (moe_ffn) against the CPU composition: matmul_ref per routed (token, expert),
// swiglu, down projection and the weighted sum, including experts held on another card (id -1).
#include <cstring>

#include "kernels/cuda/experts.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

std::vector<uint8_t> quantized(DType type, int64_t num_rows, int64_t cols, uint32_t seed) {
    const size_t rb = row_bytes(type, cols);
    std::vector<uint8_t> bytes(rb * num_rows);
    const auto values = random_floats(static_cast<size_t>(num_rows * cols), seed, 0.5f);
    for (int64_t r = 0; r < num_rows; ++r) quantize_row(type, values.data() + r * cols, bytes.data() + r * rb, cols);
    return bytes;
}

DeviceArray<float> upload_bytes(const std::vector<uint8_t>& bytes) {
    std::vector<float> f((bytes.size() + 3) / 4);
    std::memcpy(f.data(), bytes.data(), bytes.size());
    return DeviceArray<float>(f);
}

void check_moe(DType gate_type, DType down_type, ExpertActivation act) {
    const int64_t num_experts = 6, hidden = 512, ffn = 768, k = 2, num_tokens = 3;
    const auto gate = quantized(gate_type, num_experts * ffn, hidden, 1);
    const auto up = quantized(gate_type, num_experts * ffn, hidden, 2);
    const auto down = quantized(down_type, num_experts * hidden, ffn, 3);
    const auto x = random_floats(static_cast<size_t>(num_tokens * hidden), 4);
    const std::vector<int32_t> ids = {5, 0, 3, -1, 2, 5};
    const std::vector<float> w = {0.7f, 0.3f, 1.0f, 0.4f, 0.55f, 0.45f};
    std::vector<float> ref(static_cast<size_t>(num_tokens * hidden), 0.0f);
    std::vector<float> g(ffn), u(ffn), a(ffn), y(hidden);
    for (int64_t s = 0; s < num_tokens * k; ++s) {
        if (ids[s] < 0) continue;
        const float* xt = x.data() + (s / k) * hidden;
        matmul_ref(WeightView::expert(gate_type, ffn, hidden, gate.data(), ids[s]), xt, 1, g.data());
        matmul_ref(WeightView::expert(gate_type, ffn, hidden, up.data(), ids[s]), xt, 1, u.data());
        if (act == ExpertActivation::kSwiglu) {
            kernels::swiglu(g.data(), u.data(), a.data(), ffn);
        } else {
            kernels::swiglu_oai(g.data(), u.data(), a.data(), ffn, 1.702f, 7.0f);
        }
        matmul_ref(WeightView::expert(down_type, hidden, ffn, down.data(), ids[s]), a.data(), 1, y.data());
        for (int64_t c = 0; c < hidden; ++c) ref[(s / k) * hidden + c] += w[s] * y[c];
    }
    auto d_gate = upload_bytes(gate);
    auto d_up = upload_bytes(up);
    auto d_down = upload_bytes(down);
    DeviceArray<float> d_x(x), d_w(w), d_out(ref.size()), d_scratch(moe_ffn_scratch_elems(num_tokens * k, ffn));
    DeviceArray<int32_t> d_ids(ids);
    const ExpertTensor tg{gate_type, d_gate.get(), ffn, hidden};
    const ExpertTensor tu{gate_type, d_up.get(), ffn, hidden};
    const ExpertTensor td{down_type, d_down.get(), hidden, ffn};
    moe_ffn(tg, tu, td, act, d_x.get(), num_tokens, d_ids.get(), d_w.get(), k, d_out.get(), false, d_scratch.get(),
            nullptr);
    EXPECT_LT(nmse(ref, d_out.download()), 1e-9) << dtype_name(gate_type) << "/" << dtype_name(down_type);
}

TEST(CudaExperts, MoeFfnMatchesCpuCompositionForMixedQuantTypes) {
    MOERIG_REQUIRE_GPU();
    check_moe(DType::Q4_K, DType::Q6_K, ExpertActivation::kSwiglu);
    check_moe(DType::Q8_0, DType::Q5_K, ExpertActivation::kSwiglu);
}

TEST(CudaExperts, GptOssClampedSwigluOverMxfp4Experts) {
    MOERIG_REQUIRE_GPU();
    check_moe(DType::MXFP4, DType::MXFP4, ExpertActivation::kSwigluOai);
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
