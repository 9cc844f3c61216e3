// Token sampling with llama.cpp's default chain and arithmetic: repetition penalty -> top-k -> top-p ->
// min-p -> temperature -> weighted draw (std::mt19937 seeded with `seed`), or greedy when temp <= 0.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <vector>

namespace moerig::runtime {

struct SamplerParams {
    float temp = 0.8f;            // <= 0: greedy (argmax after penalties)
    int top_k = 40;               // <= 0: off
    float top_p = 0.95f;          // >= 1: off
    float min_p = 0.05f;          // <= 0: off
    float repeat_penalty = 1.0f;  // 1: off
    int repeat_last_n = 64;       // tokens of history the penalty looks at (0: off)
    uint64_t seed = 0;
};

/// One candidate token during sampling.
struct TokenCandidate {
    int32_t id;
    float logit;
    float p;
};

class Sampler {
  public:
    explicit Sampler(const SamplerParams& params);

    /// Picks the next token from n_vocab logits. Does not record it: call accept().
    int32_t sample(std::span<const float> logits);
    /// Records a token (prompt or generated) in the penalty history.
    void accept(int32_t token);
    /// Clears the history and reseeds the generator.
    void reset();

    /// The candidates left after penalties, top-k, top-p, min-p and temperature, in the order the draw
    /// walks them (exposed for tests).
    std::vector<TokenCandidate> candidates(std::span<const float> logits) const;

  private:
    SamplerParams params_;
    std::mt19937 rng_;
    std::deque<int32_t> history_;
};

}  // namespace moerig::runtime
