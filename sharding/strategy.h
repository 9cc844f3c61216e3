// Strategy choice: pure pipeline (group size 1, llama.cpp-style layer split), expert parallel (one group
// of all cards) or hybrid (pipeline over groups, experts spread within each). Every candidate is built
// in full and scored by the cost model on the workload; the fastest feasible one wins.
#pragma once

#include <cstdint>
#include <vector>

#include "sharding/cost_model.h"
#include "sharding/partition.h"

namespace moerig::sharding {

/// Builds a complete layout with groups of `group_size` cards: stage partition, then expert placement.
Layout build_layout(const PlanProblem& problem, uint32_t group_size, PartitionObjective objective);

/// One scored candidate.
struct Candidate {
    uint32_t group_size = 1;
    PartitionObjective objective = PartitionObjective::kSum;
    Layout layout;
    Prediction prediction;
};

/// Group sizes tried for a rig: 1, powers of two, the cards of one host, and all cards; filtered by the
/// problem's StrategyChoice.
std::vector<uint32_t> candidate_group_sizes(const PlanProblem& problem);

/// The best feasible candidate by predicted workload time (ties: smaller group size), or the first
/// infeasible one (its layout says why) when none fits.
Candidate choose_strategy(const PlanProblem& problem);

}  // namespace moerig::sharding
