// Text generation over a Session: prefill the prompt as one batch, then decode one token at a time with
// the sampler until n_predict tokens, an end-of-generation token, a full context or the callback says stop.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

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

/// Evaluates prompt (appended to what the session holds), then samples up to n_predict tokens. Returns the
/// generated ids, without the end-of-generation token that stopped it. on_token sees each returned id as
/// it is produced and may return false to stop. stats (optional) receives the timings.
std::vector<int32_t> generate(Session& session, std::span<const int32_t> prompt, int n_predict,
                              const SamplerParams& params, std::function<bool(int32_t token)> on_token = {},
                              GenerateStats* stats = nullptr);

}  // namespace moerig::runtime
