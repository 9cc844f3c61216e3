// Session::eval: embed -> every layer (attention, ffn) -> output head, for a batch of tokens (prefill) or
// one (decode), in steps the KV cache's sliding-window ring was sized for. Only the rows whose logits are wanted
// go through the output head.
#include "runtime/session.h"

#include <algorithm>

#include "kernels/error.h"

namespace moerig::runtime {

Session::Session(const Model& model, int64_t context, kernels::ThreadPool* pool, const KvOptions& kv)
    : model_(model), pool_(pool ? pool : &model.pool()), kv_(model.hparams(), context, 0, -1, kv) {}

void Session::truncate(int64_t n_past) {
    MOERIG_CHECK(n_past >= 0 && n_past <= n_past_, ConfigError, "cannot truncate a session of {} tokens to {}", n_past_,
                 n_past);
    if (kv_.wraps()) {
        // The next token at n_past sees positions from n_past - window + 1 on: the ring must still hold them.
        const int64_t needed = std::max<int64_t>(0, n_past - kv_.window() + 1);
        MOERIG_CHECK(needed >= held_from_, ConfigError,
                     "cannot truncate a session of {} tokens to {}: its sliding-window layers keep a ring of {} "
                     "positions and now hold [{}, {}), but resuming at {} needs position {} onwards (truncate by at "
                     "most {} tokens after a step, or reset)",
                     n_past_, n_past, kv_.ring(), held_from_, n_past_, n_past, needed, kv_.max_step_rows());
    }
    n_past_ = n_past;
}

std::vector<float> Session::eval(std::span<const int32_t> tokens, bool all_logits) {
    const auto& hp = model_.hparams();
    const auto num_tokens = static_cast<int64_t>(tokens.size());
    MOERIG_CHECK(num_tokens > 0, ConfigError, "eval needs at least one token");
    MOERIG_CHECK(n_past_ + num_tokens <= kv_.capacity(), ConfigError,
                 "context full: {} cached + {} new tokens exceed the context of {} positions", n_past_, num_tokens,
                 kv_.capacity());
    const int64_t step = kv_.max_step_rows() > 0 ? kv_.max_step_rows() : num_tokens;
    std::vector<float> logits(static_cast<size_t>((all_logits ? num_tokens : 1) * hp.n_vocab));
    float* out = logits.data();
    std::vector<float> x;
    for (int64_t begin = 0; begin < num_tokens; begin += step) {
        const int64_t n = std::min(step, num_tokens - begin);
        x.resize(static_cast<size_t>(n * hp.n_embd));
        model_.embed(tokens.subspan(static_cast<size_t>(begin), static_cast<size_t>(n)), x.data());
        model_.forward_layers(0, hp.n_layer, x.data(), n, n_past_, kv_, *pool_, experts_);
        n_past_ += n;
        // Writing [n_past - n, n_past) overwrote the ring slots of the positions before n_past - ring.
        held_from_ = std::max(held_from_, n_past_ - kv_.ring());
        const int64_t num_out = all_logits ? n : (begin + n == num_tokens ? 1 : 0);
        if (num_out == 0) continue;
        model_.output(x.data() + (n - num_out) * hp.n_embd, num_out, out, *pool_);
        out += num_out * hp.n_vocab;
    }
    return logits;
}

}  // namespace moerig::runtime
