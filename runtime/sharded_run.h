// One call for `moerig run --rig R [--plan P] [--emulate-links]`: load a model, plan it on a rig (or read
// a plan), run it across virtual cards, generate, and report per-card memory, traffic and busy time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/plan.pb.h"
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
    bool allow_host_spill = false;  ///< when planning: cold experts may stay in host RAM (run on the CPU)
    int batch = 1;                  ///< sequences decoded together, each from `prompt` (unless `prompts` is given)
    std::vector<std::vector<int32_t>> prompts;  ///< one prompt per sequence; overrides prompt and batch
    /// The virtual cards' KV cache type (F32 or F16). Unset: F32 when planning; a plan file's own type (F16 for
    /// plans from `moerig plan`). Set with a plan file, it must be the plan's type.
    std::optional<DType> kv_dtype;
    /// Each card's expert backend (ShardedOptions::card_experts, e.g. cuda_card_experts: experts on a GPU);
    /// empty: the cards compute their experts on the CPU.
    CardExpertsFactory card_experts = {};
};

struct ShardedRunResult {
    std::vector<int32_t> tokens;                  ///< generated tokens (prompt excluded) of the first sequence
    std::vector<std::vector<int32_t>> sequences;  ///< generated tokens of every sequence of the batch
    std::vector<CardStats> cards;
    std::string strategy;         ///< the plan's: "pipeline", "expert_parallel", "hybrid"
    DType kv_dtype = DType::F32;  ///< the KV cache type the cards held
    double prefill_s = 0;
    double decode_s = 0;
    double decode_tokens_per_s = 0;            ///< all sequences' tokens per second of decode steps
    double predicted_decode_tokens_per_s = 0;  ///< the plan's prediction on the real cards (all sequences)
    double modelled_link_s = 0;                ///< emulation: link time on the slowest card's clock
};

/// options with the step limits the plan reserved buffers for: ubatches of its workload's rows (the batch, or
/// a prefill ubatch of its prompt) and logits for one row per sequence of its batch.
ShardedOptions plan_step_limits(const proto::Plan& plan, ShardedOptions options = {});

/// The KV cache type a plan counted (its workload's kv_cache_dtype; F16 for plans without one, as `moerig plan`
/// wrote them). ConfigError naming `source` for a type the CPU cache cannot hold.
DType plan_kv_dtype(const proto::Plan& plan, const std::string& source);

/// Plans (or reads the plan), refuses a plan that does not fit or needs more than a card's budget
/// (before loading anything), runs prefill and decode across one virtual card per planned card and
/// returns the generated tokens and per-card stats. Throws ConfigError / OutOfMemoryError / FormatError
/// with messages naming the model, rig or plan and card.
ShardedRunResult run_sharded(const ShardedRunRequest& request);

/// The layout run_sharded would use for a model on a rig at this workload (`batch` sequences). strategy_choice:
/// auto | pipeline | expert-parallel | hybrid. Outputs the chosen strategy and predicted decode tokens/s (of all
/// `batch` sequences together).
/// allow_host_spill: experts the cards cannot hold may stay in host RAM (host participants of the layout).
ShardLayout plan_layout(const Model& model, const std::string& rig, int64_t context, int64_t prompt_tokens,
                        int64_t gen_tokens, const std::string& strategy_choice = "auto",
                        std::string* strategy = nullptr, double* predicted_tokens_per_s = nullptr,
                        bool allow_host_spill = false, int64_t batch = 1, DType kv_dtype = DType::F32);

}  // namespace moerig::runtime
