// Workload invariants and the names of strategies.
#include "sharding/workload.h"

#include "kernels/error.h"

namespace moerig::sharding {

void Workload::validate() const {
    constexpr uint32_t kMaxBatch = 4096;
    constexpr uint32_t kMaxContext = 16u << 20;
    MOERIG_CHECK(batch >= 1 && batch <= kMaxBatch, ConfigError, "--batch must be in 1..{}, got {}", kMaxBatch, batch);
    MOERIG_CHECK(context >= 1 && context <= kMaxContext, ConfigError, "--context must be in 1..{}, got {}", kMaxContext,
                 context);
    MOERIG_CHECK(prompt >= 1, ConfigError, "--prompt must be at least 1 token");
    MOERIG_CHECK(gen >= 1, ConfigError, "--gen must be at least 1 token");
    MOERIG_CHECK(uint64_t{prompt} + gen <= context, ConfigError,
                 "--prompt ({}) + --gen ({}) = {} tokens do not fit in --context {}", prompt, gen,
                 uint64_t{prompt} + gen, context);
}

proto::Workload Workload::to_proto() const {
    proto::Workload w;
    w.set_batch(batch);
    w.set_context(context);
    w.set_prompt(prompt);
    w.set_gen(gen);
    return w;
}

Workload Workload::from_proto(const proto::Workload& w) {
    return Workload{w.batch(), w.context(), w.prompt(), w.gen()};
}

StrategyChoice parse_strategy_choice(std::string_view name) {
    if (name == "auto") return StrategyChoice::kAuto;
    if (name == "pipeline") return StrategyChoice::kPipeline;
    if (name == "ep" || name == "expert-parallel" || name == "expert_parallel") return StrategyChoice::kExpertParallel;
    if (name == "hybrid") return StrategyChoice::kHybrid;
    MOERIG_THROW(ConfigError, "--strategy: unknown strategy '{}' (expected auto, pipeline, ep or hybrid)", name);
}

std::string_view strategy_name(proto::Strategy strategy) {
    switch (strategy) {
        case proto::PIPELINE:
            return "pipeline";
        case proto::EXPERT_PARALLEL:
            return "expert_parallel";
        case proto::HYBRID:
            return "hybrid";
        default:
            return "unspecified";
    }
}

}  // namespace moerig::sharding
