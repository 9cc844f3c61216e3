// What the plan is for: the workload (batch, context, prompt and generation lengths) and the planner's
// options (strategy override, spilling experts to host RAM). Both check their own invariants.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/dtype.h"
#include "proto/plan.pb.h"

namespace moerig::sharding {

/// The traffic a plan is optimised for. The KV cache is sized for `batch` sequences of `context` tokens.
struct Workload {
    uint32_t batch = 1;       // concurrent sequences in decode
    uint32_t context = 4096;  // KV tokens per sequence
    uint32_t prompt = 512;    // prompt tokens per request (prefill, time to first token)
    uint32_t gen = 256;       // generated tokens per request

    /// ConfigError naming the field when a value is zero, absurd, or prompt + gen exceeds context.
    void validate() const;
    proto::Workload to_proto() const;
    static Workload from_proto(const proto::Workload& w);
};

/// Which family of layouts the planner may choose from (kAuto: the cost model decides).
enum class StrategyChoice { kAuto, kPipeline, kExpertParallel, kHybrid };

StrategyChoice parse_strategy_choice(std::string_view name);  // auto|pipeline|ep|expert-parallel|hybrid
std::string_view strategy_name(proto::Strategy strategy);     // "pipeline" | "expert_parallel" | "hybrid"

struct PlanOptions {
    StrategyChoice strategy = StrategyChoice::kAuto;
    /// Let cold experts stay in host RAM (computed by the CPU) when the cards cannot hold them all.
    bool allow_host_spill = false;
    /// Replicate hot experts into memory left over after placement.
    bool replicate_hot_experts = true;
    /// The KV cache's element type on the cards: F16 as llama.cpp keeps it; F32 for the CPU virtual cards
    /// (runtime/kv_cache.h), so that a plan for them counts the bytes they hold.
    DType kv_cache_dtype = DType::F16;
};

}  // namespace moerig::sharding
