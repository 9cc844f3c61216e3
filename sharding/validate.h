// Validation and explanation: checks a layout's invariants (every expert placed, no card over its memory,
// every layer staged), and when a model does not fit says by how much per card and what would fit:
// more cards of a kind, a smaller quant, a shorter context, or experts spilled to host RAM.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sharding/cost_model.h"

namespace moerig::sharding {

/// Broken invariants of a layout, one line each (empty when the layout is sound).
std::vector<std::string> check_layout(const PlanProblem& problem, const Layout& layout);

/// True when some strategy places the whole model with the problem's workload and options.
bool problem_fits(const PlanProblem& problem);

struct CardOverage {
    std::string name;
    std::string kind;
    uint64_t need_bytes = 0;  // under a layer split in proportion to memory (llama.cpp-style)
    uint64_t vram_bytes = 0;
    int64_t over_bytes = 0;  // need - vram; <= 0 when the card's share fits
};

/// Why a model does not fit and what would.
struct FitAdvice {
    std::string reason;
    uint64_t need_bytes = 0;  // weights on cards + KV + buffers + reserves
    uint64_t vram_bytes = 0;  // all cards
    std::vector<CardOverage> cards;
    std::vector<std::string> suggestions;  // one sentence each
};

/// Re-accounts the model at another quant mix (nullopt when the model's types are fixed, e.g. a GGUF file).
using RequantFn = std::function<std::optional<ModelAccount>(const std::string& quant)>;

/// Explains a problem that does not fit. Tries, each on its own: extra cards of each kind in the rig, each
/// smaller quant (via requant, when given), the longest context that fits, and host spill.
FitAdvice explain_no_fit(const ModelAccount& model, const RigSpec& rig, const Workload& workload,
                         const PlanOptions& options, const RoutingTrace* trace, const std::string& reason,
                         const RequantFn& requant);

}  // namespace moerig::sharding
