// generate(): prompt prefill, then sample -> accept -> decode until a stop condition. Prompt tokens go into
// the sampler's penalty history, as llama.cpp's CLI does.
#include "runtime/generate.h"

#include <chrono>

#include "kernels/error.h"

namespace moerig::runtime {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

std::vector<int32_t> generate(Session& session, std::span<const int32_t> prompt, int n_predict,
                              const SamplerParams& params, std::function<bool(int32_t token)> on_token,
                              GenerateStats* stats) {
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
    st.prompt_seconds = seconds_since(t0);
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
        st.decode_seconds += seconds_since(t0);
        ++st.decode_evals;
    }
    if (stats) *stats = st;
    return out;
}

}  // namespace moerig::runtime
