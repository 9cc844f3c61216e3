// One call for `moerig run --rig R [--plan P] [--emulate-links]`: load a model, plan it on a rig (or read
// a plan), run it across virtual cards, generate, and report per-card memory, traffic and busy time.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/sharded_executor.h"

namespace moerig::runtime {

struct ShardedRunRequest {
    std::string model_path;       ///< GGUF file (first part of a split model)
    std::string rig;              ///< catalog name or rig .yaml; used to plan when plan_path is empty
    std::string plan_path;        ///< a plan written by `moerig plan` (.pb, .txtpb, .yaml, .json); optional
    std::vector<int32_t> prompt;  ///< prompt tokens (BOS included if the model wants one)
    int max_tokens = 64;          ///< tokens to generate
    bool stop_at_eog = true;      ///< stop early at an end-of-generation token
    SamplerParams sampler;
    int64_t context = 0;  ///< KV positions; 0 = prompt + max_tokens
    int threads_per_card = 1;
    bool emulate_links = false;     ///< model PCIe link time from the rig
    bool sleep_links = false;       ///< with emulation: wall-clock time includes link time
    bool quantize_8bit = false;     ///< int8 hidden states in the dispatcher
    std::string strategy = "auto";  ///< when planning: auto | pipeline | expert-parallel | hybrid
};

struct ShardedRunResult {
    std::vector<int32_t> tokens;  ///< generated tokens (prompt excluded)
    std::vector<CardStats> cards;
    std::string strategy;  ///< the plan's: "pipeline", "expert_parallel", "hybrid"
    double prefill_s = 0;
    double decode_s = 0;
    double decode_tokens_per_s = 0;
    double predicted_decode_tokens_per_s = 0;  ///< the plan's prediction for batch 1 on the real cards
    double modelled_link_s = 0;                ///< emulation: link time on the slowest card's clock
};

/// Plans (or reads the plan), refuses a plan that does not fit or needs more than a card's budget
/// (before loading anything), runs prefill and decode across one virtual card per planned card and
/// returns the generated tokens and per-card stats. Throws ConfigError / OutOfMemoryError / FormatError
/// with messages naming the model, rig or plan and card.
ShardedRunResult run_sharded(const ShardedRunRequest& request);

/// The layout run_sharded would use for a model on a rig at this workload (batch 1). strategy_choice:
/// auto | pipeline | expert-parallel | hybrid. Outputs the chosen strategy and predicted decode tokens/s.
ShardLayout plan_layout(const Model& model, const std::string& rig, int64_t context, int64_t prompt_tokens,
                        int64_t gen_tokens, const std::string& strategy_choice = "auto",
                        std::string* strategy = nullptr, double* predicted_tokens_per_s = nullptr);

}  // namespace moerig::runtime
