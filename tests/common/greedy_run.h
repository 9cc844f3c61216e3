// Reference-run helpers of the equivalence tests: normalised mean squared error of logits, a greedy run (prompt,
// then argmax decoding) that keeps every step's last-token logits and its comparison with a reference run, for a
// one-card session against sharded, batched or spilled runs of the same model; and the usual 4-card layouts.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "runtime/hparams.h"
#include "runtime/sharded_layout.h"

namespace moerig::test {

/// sum (got - ref)^2 / sum ref^2 (the plain sum when ref is all zeros).
inline double nmse(std::span<const float> got, std::span<const float> ref) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double d = static_cast<double>(got[i]) - ref[i];
        err += d * d;
        norm += static_cast<double>(ref[i]) * ref[i];
    }
    return norm > 0 ? err / norm : err;
}

struct GreedyRun {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;  // [step] last-token logits
};

/// The prompt, then num_generated greedy steps; eval(tokens) returns the last token's logits.
template <class Eval>
GreedyRun greedy(Eval&& eval, std::span<const int32_t> prompt, int num_generated) {
    GreedyRun run;
    std::vector<float> logits = eval(prompt);
    for (int i = 0; i < num_generated; ++i) {
        run.logits.push_back(logits);
        const auto next =
            static_cast<int32_t>(moerig::kernels::argmax(logits.data(), static_cast<int64_t>(logits.size())));
        run.tokens.push_back(next);
        logits = eval(std::span<const int32_t>(&next, 1));
    }
    return run;
}

/// Expects `got` to be `ref`: the same greedy tokens and every step's logits within max_nmse of ref's.
inline void expect_same_run(const GreedyRun& got, const GreedyRun& ref, double max_nmse = 1e-6) {
    EXPECT_EQ(got.tokens, ref.tokens);
    ASSERT_EQ(got.logits.size(), ref.logits.size());
    for (size_t i = 0; i < ref.logits.size(); ++i) {
        EXPECT_LE(nmse(got.logits[i], ref.logits[i]), max_nmse) << "step " << i;
    }
}

/// A named way to shard a model over virtual cards of `budget` bytes each.
struct LayoutCase {
    std::string name;
    moerig::runtime::ShardLayout (*make)(const moerig::runtime::ModelHParams&, size_t budget);
};

/// Pipeline, expert-parallel and hybrid (2 stages x 2) layouts over 4 cards.
inline const std::vector<LayoutCase>& four_card_layouts() {
    using moerig::runtime::ModelHParams;
    using moerig::runtime::ShardLayout;
    static const std::vector<LayoutCase> layouts = {
        {"pipeline4", [](const ModelHParams& hp, size_t b) { return ShardLayout::pipeline(hp, 4, b); }},
        {"expert_parallel4", [](const ModelHParams& hp, size_t b) { return ShardLayout::expert_parallel(hp, 4, b); }},
        {"hybrid4", [](const ModelHParams& hp, size_t b) { return ShardLayout::hybrid(hp, 4, 2, b); }},
    };
    return layouts;
}

}  // namespace moerig::test
