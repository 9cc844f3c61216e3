// perplexity(): one fresh session per chunk, all logits of the chunk, negative log-likelihood of each
// token of the chunk's second half given the tokens before it (log-softmax in double, as llama.cpp).
#include "runtime/perplexity.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"
#include "runtime/session.h"

namespace moerig::runtime {

namespace {
/// -log softmax(logits)[target].
double nll(const float* logits, int64_t n_vocab, int32_t target) {
    float max_l = logits[0];
    for (int64_t i = 1; i < n_vocab; ++i) max_l = std::max(max_l, logits[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max_l));
    return -(static_cast<double>(logits[target] - max_l) - std::log(sum));
}
}  // namespace

PerplexityResult perplexity(const Model& model, std::span<const int32_t> tokens, int64_t n_ctx,
                            kernels::ThreadPool* pool) {
    const auto& hp = model.hparams();
    const auto num_tokens = static_cast<int64_t>(tokens.size());
    MOERIG_CHECK(n_ctx >= 4, ConfigError, "perplexity: context {} is too small (need >= 4)", n_ctx);
    MOERIG_CHECK(num_tokens >= 2 * n_ctx, ConfigError,
                 "perplexity: {} tokens are too few for context {}; need at least 2 * context = {}", num_tokens, n_ctx,
                 2 * n_ctx);
    const int64_t num_chunks = num_tokens / n_ctx;
    const int64_t first = n_ctx / 2;
    const bool add_bos = hp.add_bos && hp.bos_id >= 0;
    Session session(model, n_ctx, pool);
    PerplexityResult res;
    double total_nll = 0.0;
    std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
    for (int64_t c = 0; c < num_chunks; ++c) {
        const int64_t start = c * n_ctx;
        std::copy_n(tokens.begin() + start, n_ctx, chunk.begin());
        if (add_bos) chunk[0] = hp.bos_id;
        session.reset();
        const auto logits = session.eval(chunk, true);
        double chunk_nll = 0.0;
        for (int64_t j = first; j < n_ctx - 1; ++j) {
            chunk_nll += nll(logits.data() + j * hp.n_vocab, hp.n_vocab, tokens[static_cast<size_t>(start + j + 1)]);
        }
        const int64_t scored = n_ctx - 1 - first;
        res.chunk_ppl.push_back(std::exp(chunk_nll / static_cast<double>(scored)));
        total_nll += chunk_nll;
        res.num_scored += scored;
    }
    res.ppl = std::exp(total_nll / static_cast<double>(res.num_scored));
    return res;
}

}  // namespace moerig::runtime
