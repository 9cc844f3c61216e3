// Text generation over a Session: prefill the prompt as one batch, then decode one token at a time with
// the sampler until n_predict tokens, an end-of-generation token, a full context or the callback says stop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kernels/error.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace moerig::runtime {

/// Timing of the last generate() call on this thread (for `moerig run` and benchmarks).
struct GenerateStats {
    int64_t prompt_tokens = 0;
    int64_t generated_tokens = 0;  // decoded (sampled) tokens, including a final EOG
    double prompt_seconds = 0;
    double decode_seconds = 0;  // time of the decode evals (one per generated token after the first)
    int64_t decode_evals = 0;
};

/// The loop of generate() for any session type with model().hparams(), n_past(), context() and
/// eval(tokens) -> last-token logits (the CPU Session, the GPU CudaSession).
template <class SessionT>
std::vector<int32_t> generate_loop(SessionT& session, std::span<const int32_t> prompt, int n_predict,
                                   const SamplerParams& params, std::function<bool(int32_t token)> on_token,
                                   GenerateStats* stats) {
    const auto since = [](std::chrono::steady_clock::time_point t0) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    const auto& hp = session.model().hparams();
    GenerateStats st;
    Sampler sampler(params);
    std::vector<int32_t> out;
    MOERIG_CHECK(!prompt.empty() || session.n_past() > 0, ConfigError, "generate needs a non-empty prompt");
    auto t0 = std::chrono::steady_clock::now();
    std::vector<float> logits;
    if (!prompt.empty()) {
        logits = session.eval(prompt);
        st.prompt_tokens = static_cast<int64_t>(prompt.size());
    }
    st.prompt_seconds = since(t0);
    for (int32_t t : prompt) sampler.accept(t);
    MOERIG_CHECK(!logits.empty(), ConfigError, "generate: the prompt is empty and no logits are pending");

    for (int i = 0; i < n_predict; ++i) {
        const int32_t token = sampler.sample(logits);
        sampler.accept(token);
        ++st.generated_tokens;
        if (hp.is_eog(token)) break;
        out.push_back(token);
        if (on_token && !on_token(token)) break;
        if (i + 1 == n_predict || session.n_past() >= session.context()) break;
        const int32_t one[1] = {token};
        t0 = std::chrono::steady_clock::now();
        logits = session.eval(one);
        st.decode_seconds += since(t0);
        ++st.decode_evals;
    }
    if (stats) *stats = st;
    return out;
}

/// Evaluates prompt (appended to what the session holds), then samples up to n_predict tokens. Returns the
/// generated ids, without the end-of-generation token that stopped it. on_token sees each returned id as
/// it is produced and may return false to stop. stats (optional) receives the timings.
std::vector<int32_t> generate(Session& session, std::span<const int32_t> prompt, int n_predict,
                              const SamplerParams& params, std::function<bool(int32_t token)> on_token = {},
                              GenerateStats* stats = nullptr);

}  // namespace moerig::runtime
