// generate(): prompt prefill, then sample -> accept -> decode until a stop condition. Prompt tokens go into
// the sampler's penalty history, as llama.cpp's CLI does.
#include "runtime/generate.h"

namespace moerig::runtime {

std::vector<int32_t> generate(Session& session, std::span<const int32_t> prompt, int n_predict,
                              const SamplerParams& params, std::function<bool(int32_t token)> on_token,
                              GenerateStats* stats) {
    return generate_loop(session, prompt, n_predict, params, std::move(on_token), stats);
}

}  // namespace moerig::runtime
