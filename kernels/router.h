// MoE router: turns router logits into each token's selected experts and their mixing weights, in the forms
// llama.cpp's build_moe_ffn uses (softmax / sigmoid / gpt-oss softmax-over-selected, selection bias,
// DeepSeek group-limited selection, renormalisation, scaling).
#pragma once

#include <cstdint>

namespace moerig::kernels {

/// Matches GGUF `expert_gating_func` (1 softmax, 2 sigmoid) plus gpt-oss's softmax over the selected logits.
enum class ExpertGating : int { kSoftmax = 1, kSigmoid = 2, kSoftmaxWeight = 3 };

struct RouterParams {
    int64_t num_experts = 0;
    int64_t num_experts_used = 0;  // k
    ExpertGating gating = ExpertGating::kSoftmax;
    const float* selection_bias = nullptr;  // optional [num_experts] (exp_probs_b): added for selection only
    int64_t num_groups = 1;                 // expert groups (DeepSeek-V3: 8); 1 = no group limit
    int64_t num_groups_used = 1;            // groups kept (topk_group); group score = sum of its top-2
    bool normalize = false;                 // divide weights by their sum (clamped below at 2^-14)
    float weights_scale = 1.0f;             // multiplies the final weights (expert_weights_scale)
};

/// For each token t: expert_ids[t*k + i] and weights[t*k + i], i < k, best expert first.
/// logits: [num_tokens][num_experts]. Ties go to the lower expert index.
void route(const RouterParams& p, const float* logits, int64_t num_tokens, int32_t* expert_ids, float* weights);

}  // namespace moerig::kernels
