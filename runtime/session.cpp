// Session::eval: embed -> every layer (attention, ffn) -> output head, for a batch of tokens (prefill) or
// one (decode). Only the rows whose logits are wanted go through the output head.
#include "runtime/session.h"

#include "kernels/error.h"

namespace moerig::runtime {

Session::Session(const Model& model, int64_t context, kernels::ThreadPool* pool)
    : model_(model), pool_(pool ? pool : &model.pool()), kv_(model.hparams(), context) {}

void Session::truncate(int64_t n_past) {
    MOERIG_CHECK(n_past >= 0 && n_past <= n_past_, ConfigError, "cannot truncate a session of {} tokens to {}", n_past_,
                 n_past);
    n_past_ = n_past;
}

std::vector<float> Session::eval(std::span<const int32_t> tokens, bool all_logits) {
    const auto& hp = model_.hparams();
    const auto num_tokens = static_cast<int64_t>(tokens.size());
    MOERIG_CHECK(num_tokens > 0, ConfigError, "eval needs at least one token");
    MOERIG_CHECK(n_past_ + num_tokens <= kv_.capacity(), ConfigError,
                 "context full: {} cached + {} new tokens exceed the context of {} positions", n_past_, num_tokens,
                 kv_.capacity());
    std::vector<float> x(static_cast<size_t>(num_tokens * hp.n_embd));
    model_.embed(tokens, x.data());
    model_.forward_layers(0, hp.n_layer, x.data(), num_tokens, n_past_, kv_, *pool_, experts_);
    n_past_ += num_tokens;
    const int64_t num_out = all_logits ? num_tokens : 1;
    float* rows = x.data() + (num_tokens - num_out) * hp.n_embd;
    std::vector<float> logits(static_cast<size_t>(num_out * hp.n_vocab));
    model_.output(rows, num_out, logits.data(), *pool_);
    return logits;
}

}  // namespace moerig::runtime
