// Reference-run helpers of the equivalence tests: normalised mean squared error of logits, and a greedy run
// (prompt, then argmax decoding) that keeps every step's last-token logits, for comparing a one-card session
// with sharded, batched or spilled runs of the same model.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/ops.h"

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

}  // namespace moerig::test
