// CUDA router against kernels::route for the gating forms of the supported models: Mixtral softmax top-2,
// Qwen3/OLMoE renormalised top-8, DeepSeek-V3 sigmoid + bias with group limit and scaling, gpt-oss softmax
// over the selected logits.
#include "kernels/cuda/router.h"
#include "kernels/router.h"
#include "tests/kernels/cuda/cuda_test_util.h"

namespace moerig::kernels::cuda::test {
namespace {

struct RouterCase {
    const char* name;
    RouterParams p;
    bool bias;
};

TEST(CudaRouter, SelectsTheSameExpertsWithTheSameWeightsAsCpu) {
    MOERIG_REQUIRE_GPU();
    RouterParams mixtral;
    mixtral.num_experts = 8;
    mixtral.num_experts_used = 2;
    RouterParams qwen3;
    qwen3.num_experts = 128;
    qwen3.num_experts_used = 8;
    qwen3.normalize = true;
    RouterParams deepseek;
    deepseek.num_experts = 256;
    deepseek.num_experts_used = 8;
    deepseek.gating = ExpertGating::kSigmoid;
    deepseek.num_groups = 8;
    deepseek.num_groups_used = 4;
    deepseek.normalize = true;
    deepseek.weights_scale = 2.5f;
    RouterParams gpt_oss;
    gpt_oss.num_experts = 32;
    gpt_oss.num_experts_used = 4;
    gpt_oss.gating = ExpertGating::kSoftmaxWeight;
    RouterParams odd;
    odd.num_experts = 60;
    odd.num_experts_used = 4;
    const RouterCase cases[] = {{"mixtral", mixtral, false},
                                {"qwen3", qwen3, false},
                                {"deepseek_v3", deepseek, true},
                                {"gpt_oss", gpt_oss, false},
                                {"qwen1.5_60_experts", odd, false}};
    const int64_t num_tokens = 37;
    for (const auto& c : cases) {
        RouterParams p = c.p;
        const int64_t n = p.num_experts, k = p.num_experts_used;
        const auto logits = random_floats(static_cast<size_t>(num_tokens * n), 1, 2.0f);
        const auto bias = random_floats(static_cast<size_t>(n), 2, 0.1f);
        std::vector<int32_t> ref_ids(static_cast<size_t>(num_tokens * k));
        std::vector<float> ref_w(ref_ids.size());
        p.selection_bias = c.bias ? bias.data() : nullptr;
        route(p, logits.data(), num_tokens, ref_ids.data(), ref_w.data());

        DeviceArray<float> d_logits(logits), d_bias(bias), d_w(ref_w.size());
        DeviceArray<int32_t> d_ids(ref_ids.size());
        p.selection_bias = c.bias ? d_bias.get() : nullptr;
        cuda::route(p, d_logits.get(), num_tokens, d_ids.get(), d_w.get(), nullptr);
        EXPECT_EQ(ref_ids, d_ids.download()) << c.name;
        EXPECT_LT(nmse(ref_w, d_w.download()), 1e-12) << c.name;
    }
}

TEST(CudaRouter, TiesGoToTheLowerExpertIndex) {
    MOERIG_REQUIRE_GPU();
    RouterParams p;
    p.num_experts = 64;
    p.num_experts_used = 3;
    std::vector<float> logits(64, 0.0f);
    logits[40] = logits[9] = logits[63] = logits[10] = 1.0f;
    DeviceArray<float> d_logits(logits), d_w(3);
    DeviceArray<int32_t> d_ids(3);
    cuda::route(p, d_logits.get(), 1, d_ids.get(), d_w.get(), nullptr);
    EXPECT_EQ(d_ids.download(), (std::vector<int32_t>{9, 10, 40}));
}

}  // namespace
}  // namespace moerig::kernels::cuda::test
