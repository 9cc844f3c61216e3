// Perplexity of a token stream by llama.cpp's perplexity-tool method: non-overlapping chunks of n_ctx
// tokens, the first token of each chunk replaced by BOS when the vocabulary adds BOS, and only the second
// half of each chunk scored (every scored token sees at least n_ctx/2 tokens of context).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/threadpool.h"
#include "runtime/model.h"

namespace moerig::runtime {

struct PerplexityResult {
    double ppl = 0;
    std::vector<double> chunk_ppl;  // per chunk
    int64_t num_scored = 0;         // tokens scored in all chunks
};

/// Needs at least 2 * n_ctx tokens (as llama.cpp); pool nullptr = the model's pool.
PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, int64_t n_ctx,
                            kernels::ThreadPool* pool);

}  // namespace moerig::runtime
