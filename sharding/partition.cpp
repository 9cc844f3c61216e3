// Dynamic programming over contiguous layer ranges: first layers to pipeline groups (cost = the group's
// memory-bound decode time for its layers, with expert spill to host when allowed), then within a group
// each layer's stage to a card (balancing the fraction of each card's memory the stages take).
#include "sharding/partition.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"
#include "sharding/cost_coefficients.h"

namespace moerig::sharding {

LayerRanges partition_layers(uint32_t num_bins, uint32_t num_layers,
                             const std::function<double(uint32_t, uint32_t, uint32_t)>& cost,
                             PartitionObjective objective, double hop_cost) {
    const size_t width = num_layers + 1;
    // best[i][j]: bins < i cover layers < j; from[i][j]: where bin i-1's range starts.
    std::vector<double> best((num_bins + 1) * width, kInfeasible);
    std::vector<uint32_t> from((num_bins + 1) * width, 0);
    best[0] = 0.0;
    auto combine = [objective](double a, double b) {
        return objective == PartitionObjective::kSum ? a + b : std::max(a, b);
    };
    for (uint32_t i = 0; i < num_bins; ++i) {
        const double* prev = &best[i * width];
        double* next = &best[(i + 1) * width];
        uint32_t* next_from = &from[(i + 1) * width];
        for (uint32_t j = 0; j <= num_layers; ++j) {  // empty bin
            next[j] = prev[j];
            next_from[j] = j;
        }
        for (uint32_t a = 0; a < num_layers; ++a) {
            if (prev[a] == kInfeasible) continue;
            for (uint32_t b = a + 1; b <= num_layers; ++b) {
                const double c = cost(i, a, b);
                if (c == kInfeasible) break;
                const double total = combine(prev[a], c + (a > 0 ? hop_cost : 0.0));
                if (total < next[b]) {
                    next[b] = total;
                    next_from[b] = a;
                }
            }
        }
    }
    LayerRanges out;
    out.cost = best[num_bins * width + num_layers];
    if (!out.feasible()) return out;
    out.begin.assign(num_bins, 0);
    out.end.assign(num_bins, 0);
    uint32_t j = num_layers;
    for (uint32_t i = num_bins; i > 0; --i) {
        const uint32_t a = from[i * width + j];
        out.begin[i - 1] = a;
        out.end[i - 1] = j;
        j = a;
    }
    MOERIG_ASSERT(j == 0);
    return out;
}

CardBuffers card_buffers(const PlanProblem& problem, uint32_t group_size) {
    const Workload& w = problem.workload;
    const double rows = std::max<double>(w.batch, std::min<uint32_t>(w.prompt, coeff::kPrefillUbatchTokens));
    CardBuffers b;
    b.activations = static_cast<uint64_t>(rows * problem.hidden * coeff::kActivationHiddenMultiple *
                                          coeff::kActivationBytesPerValue);
    // A layer's experts are spread over the group's cards, and over host RAM when experts may spill there.
    const uint32_t participants = group_size + (problem.options.allow_host_spill ? 1 : 0);
    if (participants > 1 && problem.top_k > 0) {
        // The dispatcher: the stage card sends one row per token and destination card (at most top-k), every
        // participant receives at most one row per token from the layer's stage card; sums return the same way.
        const double rows_sent = rows * std::min(problem.top_k, participants);
        const double rows_received = rows;
        const double hidden_bytes = static_cast<double>(problem.hidden) * coeff::kDispatchBytesPerValue;
        const double row_bytes = hidden_bytes + static_cast<double>(problem.top_k) * coeff::kDispatchRouteBytesPerSlot;
        b.comm = static_cast<uint64_t>(coeff::kDispatchBufferGrowth * (rows_sent + rows_received) *
                                       (row_bytes + hidden_bytes));
    } else {
        // Pipeline: one row per token hops to the next stage.
        b.comm = static_cast<uint64_t>(rows * problem.hidden * coeff::kWireBytesPerValue * coeff::kCommBufferCopies);
    }
    return b;
}

std::vector<std::vector<uint32_t>> make_groups(uint32_t num_cards, uint32_t group_size) {
    MOERIG_ASSERT(group_size >= 1);
    std::vector<std::vector<uint32_t>> groups;
    for (uint32_t c = 0; c < num_cards; ++c) {
        if (c % group_size == 0) groups.emplace_back();
        groups.back().push_back(c);
    }
    return groups;
}

namespace {

// Per-layer sums the group DP reads in O(1) through prefix arrays.
struct LayerPrefix {
    std::vector<double> fixed;       // stage + KV bytes that must sit on the stage card
    std::vector<double> experts;     // all routed experts' bytes
    std::vector<double> stage_read;  // bytes read per decode step by the stage part
    std::vector<double> touched;     // expert bytes read per decode step at the workload batch
    std::vector<double> moe;         // 1 per MoE layer

    explicit LayerPrefix(const PlanProblem& problem) {
        const Workload& w = problem.workload;
        const uint32_t n = problem.num_layers();
        fixed.assign(n + 1, 0);
        experts.assign(n + 1, 0);
        stage_read.assign(n + 1, 0);
        touched.assign(n + 1, 0);
        moe.assign(n + 1, 0);
        const double mid_context = w.prompt + w.gen / 2.0;
        for (uint32_t l = 0; l < n; ++l) {
            const LayerCost& layer = problem.layers[l];
            const double kv_ctx = layer.kv_window ? std::min<double>(w.context, layer.kv_window) : w.context;
            const double kv_mid = layer.kv_window ? std::min<double>(mid_context, layer.kv_window) : mid_context;
            double touched_bytes = 0;
            for (double p : layer.expert_prob) touched_bytes += (1.0 - std::pow(1.0 - std::min(p, 1.0), w.batch));
            touched_bytes *= static_cast<double>(problem.expert_bytes);
            fixed[l + 1] = fixed[l] + layer.stage_bytes + w.batch * kv_ctx * layer.kv_bytes_per_token;
            experts[l + 1] = experts[l] + static_cast<double>(layer.num_experts) * problem.expert_bytes;
            stage_read[l + 1] = stage_read[l] + layer.stage_bytes + w.batch * kv_mid * layer.kv_bytes_per_token;
            touched[l + 1] = touched[l] + touched_bytes;
            moe[l + 1] = moe[l] + (layer.num_experts > 0 ? 1 : 0);
        }
    }
};

struct GroupCaps {
    double capacity = 0;  // bytes for stages + experts
    double sum_bw = 0;
    double mean_bw = 0;
    double comm_per_moe_layer_s = 0;  // dispatch + combine of one decode step
    double host_bw = 0;
};

std::vector<double> card_free_bytes(const PlanProblem& problem, const CardBuffers& buffers) {
    std::vector<double> free(problem.num_cards());
    for (uint32_t c = 0; c < problem.num_cards(); ++c) {
        const double used = static_cast<double>(buffers.activations + buffers.comm);
        free[c] = std::max(0.0, static_cast<double>(problem.cards[c].budget_bytes) - used);
    }
    return free;
}

}  // namespace

void partition_stages(const PlanProblem& problem, PartitionObjective objective, Layout& layout) {
    const Workload& w = problem.workload;
    const uint32_t num_layers = problem.num_layers();
    const uint32_t num_groups = static_cast<uint32_t>(layout.groups.size());
    const CardBuffers buffers = card_buffers(problem, layout.group_size);
    const std::vector<double> free = card_free_bytes(problem, buffers);
    const LayerPrefix prefix(problem);
    const double wire_row = static_cast<double>(problem.hidden) * coeff::kWireBytesPerValue;
    // The last stage's card also holds the output head and the logits of a step.
    const double output_card_bytes = static_cast<double>(problem.output_bytes + problem.logits_bytes);

    std::vector<GroupCaps> caps(num_groups);
    double min_peer_bw = kInfeasible, max_latency = 0;
    for (uint32_t g = 0; g < num_groups; ++g) {
        const auto& cards = layout.groups[g];
        GroupCaps& cap = caps[g];
        double group_min_bw = kInfeasible, latency = 0;
        bool spans_hosts = false;
        for (uint32_t c : cards) {
            cap.capacity += free[c];
            cap.sum_bw += problem.cards[c].mem_bw;
            group_min_bw = std::min(group_min_bw, problem.cards[c].peer_bw);
            latency = std::max(latency, problem.cards[c].peer_latency_s);
            spans_hosts |= problem.cards[c].host_idx != problem.cards[cards.front()].host_idx;
        }
        cap.mean_bw = cap.sum_bw / static_cast<double>(cards.size());
        cap.host_bw = problem.hosts[problem.cards[cards.front()].host_idx].mem_bw;
        if (cards.size() > 1) {
            const double rows = w.batch * std::min<double>(problem.top_k, static_cast<double>(cards.size() - 1));
            double one_way = latency + rows * wire_row / group_min_bw;
            if (spans_hosts) one_way += problem.net_latency_s + rows * wire_row / problem.net_bw;
            cap.comm_per_moe_layer_s = 2 * one_way;
        }
        min_peer_bw = std::min(min_peer_bw, group_min_bw);
        max_latency = std::max(max_latency, latency);
    }
    const bool allow_spill = problem.options.allow_host_spill;
    auto group_cost = [&](uint32_t g, uint32_t a, uint32_t b) -> double {
        const GroupCaps& cap = caps[g];
        const double fixed = prefix.fixed[b] - prefix.fixed[a] + (b == num_layers ? output_card_bytes : 0.0);
        if (fixed > cap.capacity) return kInfeasible;
        const double expert_need = prefix.experts[b] - prefix.experts[a];
        const double spilled = std::max(0.0, expert_need - (cap.capacity - fixed));
        if (spilled > 0 && !allow_spill) return kInfeasible;
        const double spill_fraction = expert_need > 0 ? spilled / expert_need : 0.0;
        const double touched = prefix.touched[b] - prefix.touched[a];
        double t = (prefix.stage_read[b] - prefix.stage_read[a]) / cap.mean_bw +
                   touched * ((1 - spill_fraction) / cap.sum_bw + spill_fraction / cap.host_bw) +
                   (prefix.moe[b] - prefix.moe[a]) * cap.comm_per_moe_layer_s + 2.0 * (b - a) * coeff::kLayerOverheadS;
        if (b == num_layers) t += problem.output_bytes / cap.mean_bw;
        return t;
    };
    const double hop = max_latency + w.batch * wire_row / min_peer_bw;
    const LayerRanges ranges = partition_layers(num_groups, num_layers, group_cost, objective, hop);
    if (!ranges.feasible()) {
        layout.feasible = false;
        layout.infeasible_reason = allow_spill ? "the layers do not fit the cards even with experts spilled to host RAM"
                                               : "the layers and their experts do not fit the cards' memory";
        return;
    }

    layout.layer_group.assign(num_layers, 0);
    layout.stage_card.assign(num_layers, 0);
    layout.memory.assign(problem.num_cards(), CardMemory{});
    layout.kv_tokens.assign(problem.num_cards(), 0);
    for (uint32_t c = 0; c < problem.num_cards(); ++c) layout.memory[c].reserve = problem.cards[c].reserve_bytes;
    auto layer_fixed = [&](uint32_t a, uint32_t b) {
        return prefix.fixed[b] - prefix.fixed[a] + (b == num_layers ? output_card_bytes : 0.0);
    };
    for (uint32_t g = 0; g < num_groups; ++g) {
        const uint32_t a = ranges.begin[g], b = ranges.end[g];
        if (a == b) continue;
        const auto& cards = layout.groups[g];
        // Stages within the group: balance the share of each card's memory they take.
        auto stage_cost = [&](uint32_t i, uint32_t x, uint32_t y) -> double {
            const double bytes = layer_fixed(a + x, a + y);
            const double card_free = free[cards[i]];
            return bytes <= card_free && card_free > 0 ? bytes / card_free : kInfeasible;
        };
        const LayerRanges inner =
            partition_layers(static_cast<uint32_t>(cards.size()), b - a, stage_cost, PartitionObjective::kMax, 0.0);
        if (!inner.feasible()) {
            layout.feasible = false;
            layout.infeasible_reason = fmt::format("a stage of layers {}..{} does not fit any single card", a, b - 1);
            return;
        }
        for (uint32_t c : cards) {
            layout.memory[c].activations = buffers.activations;
            layout.memory[c].comm = buffers.comm;
        }
        for (uint32_t i = 0; i < cards.size(); ++i) {
            const uint32_t c = cards[i];
            for (uint32_t l = a + inner.begin[i]; l < a + inner.end[i]; ++l) {
                const LayerCost& layer = problem.layers[l];
                const double kv_ctx = layer.kv_window ? std::min<double>(w.context, layer.kv_window) : w.context;
                layout.layer_group[l] = g;
                layout.stage_card[l] = c;
                layout.memory[c].dense += layer.stage_bytes;
                layout.memory[c].kv += static_cast<uint64_t>(w.batch * kv_ctx * layer.kv_bytes_per_token);
                layout.kv_tokens[c] = uint64_t{w.batch} * w.context;
            }
        }
    }
    layout.last_card = layout.stage_card.back();
    layout.memory[layout.last_card].dense += problem.output_bytes;
    layout.memory[layout.last_card].activations += problem.logits_bytes;
    layout.feasible = true;
}

}  // namespace moerig::sharding
