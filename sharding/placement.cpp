// Expert placement within each pipeline group: memory quotas per card and layer, longest-processing-time
// assignment by expected load over card bandwidth, spill of the coldest experts to host RAM, and
// replication of hot experts into spare slots while it shortens a layer's slowest card.
#include "sharding/placement.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/error.h"
#include "sharding/cost_coefficients.h"

namespace moerig::sharding {
namespace {

struct ExpertRef {
    double prob;
    uint32_t layer_idx;
    uint32_t expert_idx;
};

// Per card and layer quotas: each card's slots split over the group's layers in proportion to the experts
// each layer still needs, remainders handed to the cards with most slots left.
std::vector<std::vector<int64_t>> layer_quotas(const std::vector<int64_t>& slots, const std::vector<int64_t>& need,
                                               const std::vector<uint32_t>& cards, const PlanProblem& problem) {
    const int64_t total_need = std::accumulate(need.begin(), need.end(), int64_t{0});
    std::vector<std::vector<int64_t>> quota(cards.size(), std::vector<int64_t>(need.size(), 0));
    std::vector<int64_t> left(slots);
    for (size_t i = 0; i < cards.size(); ++i) {
        for (size_t l = 0; l < need.size(); ++l) {
            quota[i][l] = total_need > 0 ? slots[i] * need[l] / total_need : 0;
            left[i] -= quota[i][l];
        }
    }
    for (size_t l = 0; l < need.size(); ++l) {
        int64_t deficit = need[l];
        for (size_t i = 0; i < cards.size(); ++i) deficit -= quota[i][l];
        while (deficit > 0) {
            size_t pick = cards.size();
            for (size_t i = 0; i < cards.size(); ++i) {
                if (left[i] <= 0) continue;
                if (pick == cards.size() || left[i] > left[pick] ||
                    (left[i] == left[pick] && problem.cards[cards[i]].mem_bw > problem.cards[cards[pick]].mem_bw)) {
                    pick = i;
                }
            }
            MOERIG_ASSERT(pick < cards.size());
            ++quota[pick][l];
            --left[pick];
            --deficit;
        }
    }
    return quota;
}

}  // namespace

void place_experts(const PlanProblem& problem, Layout& layout) {
    MOERIG_ASSERT(layout.feasible);
    const uint32_t num_layers = problem.num_layers();
    const double expert_bytes = static_cast<double>(problem.expert_bytes);
    layout.experts.assign(num_layers, {});
    layout.host_spill_bytes.assign(problem.hosts.size(), 0);
    std::vector<int64_t> slots_left(problem.num_cards(), 0);
    for (uint32_t l = 0; l < num_layers; ++l) layout.experts[l].resize(problem.layers[l].num_experts);
    if (problem.expert_bytes == 0) return;

    for (uint32_t g = 0; g < layout.groups.size(); ++g) {
        const auto& cards = layout.groups[g];
        std::vector<uint32_t> layers;
        for (uint32_t l = 0; l < num_layers; ++l) {
            if (layout.layer_group[l] == g && problem.layers[l].num_experts > 0) layers.push_back(l);
        }
        if (layers.empty()) continue;
        std::vector<int64_t> slots(cards.size());
        int64_t total_slots = 0, total_need = 0;
        for (size_t i = 0; i < cards.size(); ++i) {
            const CardMemory& m = layout.memory[cards[i]];
            const double used = static_cast<double>(m.dense + m.kv + m.activations + m.comm);
            const double free = static_cast<double>(problem.cards[cards[i]].budget_bytes) - used;
            slots[i] = free > 0 ? static_cast<int64_t>(std::floor(free / expert_bytes)) : 0;
            total_slots += slots[i];
        }
        for (uint32_t l : layers) total_need += problem.layers[l].num_experts;

        // Spill the coldest experts of the group when the cards cannot hold them all.
        std::vector<std::vector<uint8_t>> spilled(layers.size());
        for (size_t li = 0; li < layers.size(); ++li) spilled[li].assign(problem.layers[layers[li]].num_experts, 0);
        if (total_need > total_slots) {
            if (!problem.options.allow_host_spill) {
                layout.feasible = false;
                layout.infeasible_reason = fmt::format(
                    "layers {}..{} need {} expert slots but their cards hold {} (allow host spill to keep the rest in "
                    "RAM)",
                    layers.front(), layers.back(), total_need, total_slots);
                return;
            }
            std::vector<ExpertRef> all;
            for (size_t li = 0; li < layers.size(); ++li) {
                const LayerCost& layer = problem.layers[layers[li]];
                for (uint32_t e = 0; e < layer.num_experts; ++e) all.push_back({layer.expert_prob[e], uint32_t(li), e});
            }
            std::stable_sort(all.begin(), all.end(),
                             [](const ExpertRef& a, const ExpertRef& b) { return a.prob < b.prob; });
            const uint32_t host_idx = problem.cards[cards.front()].host_idx;
            for (int64_t i = 0; i < total_need - total_slots; ++i) {
                const ExpertRef& ref = all[i];
                spilled[ref.layer_idx][ref.expert_idx] = 1;
                layout.experts[layers[ref.layer_idx]][ref.expert_idx].push_back({kOnHost, host_idx, 1.0});
                layout.host_spill_bytes[host_idx] += problem.expert_bytes;
            }
            if (layout.host_spill_bytes[host_idx] > problem.hosts[host_idx].spill_budget_bytes) {
                layout.feasible = false;
                layout.infeasible_reason =
                    fmt::format("experts spilled to host {} need {:.1f} GB, more than its usable RAM ({:.1f} GB)",
                                problem.hosts[host_idx].name, layout.host_spill_bytes[host_idx] / 1e9,
                                problem.hosts[host_idx].spill_budget_bytes / 1e9);
                return;
            }
        }
        std::vector<int64_t> need(layers.size());
        for (size_t li = 0; li < layers.size(); ++li) {
            need[li] = std::count(spilled[li].begin(), spilled[li].end(), uint8_t{0});
        }
        auto quota = layer_quotas(slots, need, cards, problem);

        // Longest processing time first: hottest expert to the card that would finish its layer soonest.
        std::vector<double> load(cards.size());
        std::vector<ExpertRef> items;
        for (size_t li = 0; li < layers.size(); ++li) {
            const uint32_t l = layers[li];
            const LayerCost& layer = problem.layers[l];
            items.clear();
            for (uint32_t e = 0; e < layer.num_experts; ++e) {
                if (!spilled[li][e]) items.push_back({layer.expert_prob[e], l, e});
            }
            std::stable_sort(items.begin(), items.end(),
                             [](const ExpertRef& a, const ExpertRef& b) { return a.prob > b.prob; });
            std::fill(load.begin(), load.end(), 0.0);
            for (const ExpertRef& item : items) {
                size_t pick = cards.size();
                double pick_time = 0;
                for (size_t i = 0; i < cards.size(); ++i) {
                    if (quota[i][li] <= 0) continue;
                    const double time = (load[i] + item.prob) / problem.cards[cards[i]].mem_bw;
                    const bool is_stage = cards[i] == layout.stage_card[l];
                    if (pick == cards.size() || time < pick_time * (1 - 1e-12) ||
                        (time <= pick_time * (1 + 1e-12) && is_stage)) {
                        pick = i;
                        pick_time = time;
                    }
                }
                MOERIG_ASSERT(pick < cards.size());
                --quota[pick][li];
                --slots[pick];
                load[pick] += item.prob;
                layout.experts[l][item.expert_idx].push_back({static_cast<int32_t>(cards[pick]), 0, 1.0});
                layout.memory[cards[pick]].experts += problem.expert_bytes;
            }
        }
        for (size_t i = 0; i < cards.size(); ++i) slots_left[cards[i]] = slots[i];
    }
    if (problem.options.replicate_hot_experts) replicate_hot_experts(problem, layout, slots_left);
}

uint32_t replicate_hot_experts(const PlanProblem& problem, Layout& layout, std::vector<int64_t>& slots_left) {
    // A copy must take at least this fraction off the layer's slowest card to be worth its memory.
    constexpr double kMinReplicaGain = 0.01;
    // Targets tried per step when the lightest card already holds every expert of the slowest one.
    constexpr size_t kMaxTargets = 4;
    std::vector<uint32_t> targets;
    const uint32_t num_cards = problem.num_cards();
    // Keep a little room free for KV growth and allocator slack.
    std::vector<int64_t> avail(num_cards);
    for (uint32_t c = 0; c < num_cards; ++c) {
        const auto headroom = static_cast<int64_t>(
            std::ceil(coeff::kReplicaHeadroomFraction * problem.cards[c].budget_bytes / problem.expert_bytes));
        avail[c] = slots_left[c] - headroom;
    }
    std::vector<double> time(num_cards, 0.0);
    uint32_t num_added = 0;
    bool changed = true;
    while (changed) {
        changed = false;
        for (uint32_t l = 0; l < problem.num_layers(); ++l) {
            const LayerCost& layer = problem.layers[l];
            const auto& group = layout.groups[layout.layer_group[l]];
            if (layer.num_experts == 0 || group.size() < 2) continue;
            for (uint32_t c : group) time[c] = 0;
            for (uint32_t e = 0; e < layer.num_experts; ++e) {
                for (const ExpertCopy& copy : layout.experts[l][e]) {
                    if (copy.card_idx != kOnHost) {
                        time[copy.card_idx] += layer.expert_prob[e] * copy.share / problem.cards[copy.card_idx].mem_bw;
                    }
                }
            }
            uint32_t slowest = group.front();
            for (uint32_t c : group) slowest = time[c] > time[slowest] ? c : slowest;
            const double old_max = time[slowest];
            // Candidate targets: the least loaded cards with a free slot, lightest first.
            targets.clear();
            for (uint32_t c : group) {
                if (avail[c] > 0 && c != slowest) targets.push_back(c);
            }
            if (targets.empty()) continue;
            const size_t num_targets = std::min<size_t>(targets.size(), kMaxTargets);
            std::partial_sort(
                targets.begin(), targets.begin() + num_targets, targets.end(),
                [&](uint32_t a, uint32_t b) { return time[a] < time[b] || (time[a] == time[b] && a < b); });
            int64_t target = -1;
            int64_t hot = -1;
            size_t hot_copy = 0;
            double best_moved = 0;
            const double inv_bw_slow = 1.0 / problem.cards[slowest].mem_bw;
            for (size_t ti = 0; ti < num_targets && hot < 0; ++ti) {
                target = targets[ti];
                // Move load from the slowest card to the target by copying one of its experts there and giving
                // the copy just enough of that expert's tokens to even the two cards out (capped by what the
                // slowest card's copy serves). The layer's slowest card never gets slower.
                const double inv_bw_target = 1.0 / problem.cards[target].mem_bw;
                const double wanted = (old_max - time[target]) / (inv_bw_slow + inv_bw_target);  // load units
                for (uint32_t e = 0; e < layer.num_experts; ++e) {
                    const auto& copies = layout.experts[l][e];
                    int64_t on_slowest = -1;
                    bool on_target = false, on_host = false;
                    for (size_t i = 0; i < copies.size(); ++i) {
                        if (copies[i].card_idx == static_cast<int32_t>(slowest)) on_slowest = static_cast<int64_t>(i);
                        on_target |= copies[i].card_idx == target;
                        on_host |= copies[i].card_idx == kOnHost;
                    }
                    if (on_slowest < 0 || on_target || on_host) continue;
                    const double moved = std::min(wanted, layer.expert_prob[e] * copies[on_slowest].share);
                    // Largest move wins; among full moves, the expert that serves least (big ones stay whole).
                    if (moved > best_moved * (1 + 1e-9) ||
                        (hot >= 0 && moved >= best_moved * (1 - 1e-9) &&
                         layer.expert_prob[e] * copies[on_slowest].share <
                             layer.expert_prob[hot] * layout.experts[l][hot][hot_copy].share)) {
                        best_moved = moved;
                        hot = e;
                        hot_copy = static_cast<size_t>(on_slowest);
                    }
                }
                if (best_moved * inv_bw_slow < old_max * kMinReplicaGain) hot = -1;
            }
            if (hot < 0 || best_moved * inv_bw_slow < old_max * kMinReplicaGain) continue;
            auto& copies = layout.experts[l][hot];
            const double moved_share = best_moved / layer.expert_prob[hot];
            copies[hot_copy].share -= moved_share;
            copies.push_back({static_cast<int32_t>(target), 0, moved_share});
            --avail[target];
            --slots_left[target];
            layout.memory[target].experts += problem.expert_bytes;
            layout.memory[target].replica_experts += problem.expert_bytes;
            ++num_added;
            changed = true;
        }
    }
    return num_added;
}

}  // namespace moerig::sharding
