// Expert placement: after the stages are fixed, every routed expert of every layer gets a card of the
// layer's group (balanced by expected load over card bandwidth, in per-layer quotas of each card's free
// memory), cold experts spill to host RAM when allowed, and hot experts are replicated into what is left.
#pragma once

#include <cstdint>

#include "sharding/cost_model.h"

namespace moerig::sharding {

/// Fills layout.experts, the expert bytes of layout.memory and layout.host_spill_bytes. Requires
/// partition_stages to have succeeded; leaves layout.feasible false with a reason when experts do not fit.
void place_experts(const PlanProblem& problem, Layout& layout);

/// Adds replicas of hot experts into free expert slots while they lower a layer's slowest card.
/// `slots_left` is per card; returns the number of replicas added.
uint32_t replicate_hot_experts(const PlanProblem& problem, Layout& layout, std::vector<int64_t>& slots_left);

}  // namespace moerig::sharding
