// MoE routing as llama.cpp's build_moe_ffn: probabilities (softmax / sigmoid / raw logits for gpt-oss), selection
// scores = probabilities + bias, optional group limit (keep the groups with the best top-2 sums), top-k, then
// weights from the unbiased probabilities, softmax over them for gpt-oss, renormalisation and scaling.
#include "kernels/router.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/error.h"
#include "kernels/ops.h"

namespace moerig::kernels {

void route(const RouterParams& p, const float* logits, int64_t num_tokens, int32_t* expert_ids, float* weights) {
    const int64_t n = p.num_experts, k = p.num_experts_used;
    MOERIG_CHECK(n > 0 && k > 0 && k <= n, ConfigError, "route: cannot select {} of {} experts", k, n);
    const int64_t num_groups = std::max<int64_t>(1, p.num_groups);
    MOERIG_CHECK(n % num_groups == 0, ConfigError, "route: {} experts do not split into {} groups", n, num_groups);
    const int64_t per_group = n / num_groups;
    if (num_groups > 1) {
        MOERIG_CHECK(p.num_groups_used >= 1 && p.num_groups_used <= num_groups && per_group >= 2 &&
                         p.num_groups_used * per_group >= k,
                     ConfigError, "route: keeping {} of {} groups of {} experts cannot give {} experts",
                     p.num_groups_used, num_groups, per_group, k);
    }
    std::vector<float> probs(n), select(n), group_scores(num_groups);
    std::vector<int32_t> top(std::max<int64_t>(k, num_groups));
    for (int64_t t = 0; t < num_tokens; ++t) {
        const float* z = logits + t * n;
        switch (p.gating) {
            case ExpertGating::kSoftmax:
                std::copy(z, z + n, probs.begin());
                softmax(probs.data(), n);
                break;
            case ExpertGating::kSigmoid:
                sigmoid(z, probs.data(), n);
                break;
            case ExpertGating::kSoftmaxWeight:
                std::copy(z, z + n, probs.begin());
                break;
        }
        for (int64_t e = 0; e < n; ++e) select[e] = probs[e] + (p.selection_bias ? p.selection_bias[e] : 0.0f);
        if (num_groups > 1) {
            int32_t best2[2];
            for (int64_t g = 0; g < num_groups; ++g) {
                top_k(select.data() + g * per_group, per_group, 2, best2);
                group_scores[g] = select[g * per_group + best2[0]] + select[g * per_group + best2[1]];
            }
            top_k(group_scores.data(), num_groups, p.num_groups_used, top.data());
            std::vector<bool> keep(num_groups, false);
            for (int64_t i = 0; i < p.num_groups_used; ++i) keep[top[i]] = true;
            for (int64_t g = 0; g < num_groups; ++g) {
                if (keep[g]) continue;
                for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) {
                    select[e] = -std::numeric_limits<float>::infinity();
                }
            }
        }
        top_k(select.data(), n, k, top.data());
        int32_t* ids = expert_ids + t * k;
        float* w = weights + t * k;
        for (int64_t i = 0; i < k; ++i) {
            ids[i] = top[i];
            w[i] = probs[top[i]];
        }
        if (p.gating == ExpertGating::kSoftmaxWeight) softmax(w, k);
        if (p.normalize) {
            float sum = 0;
            for (int64_t i = 0; i < k; ++i) sum += w[i];
            sum = std::max(sum, 6.103515625e-5f);
            for (int64_t i = 0; i < k; ++i) w[i] /= sum;
        }
        if (p.weights_scale != 1.0f) {
            for (int64_t i = 0; i < k; ++i) w[i] *= p.weights_scale;
        }
    }
}

}  // namespace moerig::kernels
