// Layer partition: contiguous layer ranges to pipeline groups of cards, then each layer's stage (attention,
// KV cache) to one card of its group, by dynamic programming under every card's memory cap. Heterogeneous
// cards are the normal case: the cost of a range on a group comes from the cost model's coefficients.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "sharding/cost_model.h"

namespace moerig::sharding {

enum class PartitionObjective {
    kSum,  // minimise the sum of group times plus hops: one token's latency through the pipeline
    kMax,  // minimise the slowest group: throughput when ubatches flow through the pipeline
};

inline constexpr double kInfeasible = std::numeric_limits<double>::infinity();

/// Contiguous ranges [begin, end) of layers per bin, in bin order; empty bins have begin == end.
struct LayerRanges {
    std::vector<uint32_t> begin;
    std::vector<uint32_t> end;
    double cost = kInfeasible;
    bool feasible() const { return cost < kInfeasible; }
};

/// Splits num_layers layers into num_bins contiguous (possibly empty) ranges minimising the objective over
/// cost(bin_idx, begin, end) (kInfeasible when the range does not fit the bin), plus hop_cost for every
/// non-empty range that does not start at layer 0. Assumes a range stays infeasible when it grows.
/// O(num_bins * num_layers^2) cost calls at most.
LayerRanges partition_layers(uint32_t num_bins, uint32_t num_layers,
                             const std::function<double(uint32_t, uint32_t, uint32_t)>& cost,
                             PartitionObjective objective, double hop_cost);

/// Activation and communication buffers of one card for the problem's workload (bytes).
struct CardBuffers {
    uint64_t activations = 0;
    uint64_t comm = 0;
};
CardBuffers card_buffers(const PlanProblem& problem, uint32_t group_size);

/// Cards split into pipeline groups of group_size (in rig order, the last group may be smaller).
std::vector<std::vector<uint32_t>> make_groups(uint32_t num_cards, uint32_t group_size);

/// Fills layout.layer_group, stage_card, last_card and the dense/KV/buffer/reserve bytes of
/// layout.memory for layout.groups. On failure leaves layout.feasible false with a reason.
void partition_stages(const PlanProblem& problem, PartitionObjective objective, Layout& layout);

}  // namespace moerig::sharding
