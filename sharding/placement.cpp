// Expert placement within each pipeline group: memory quotas per card and layer, longest-processing-time
// assignment by expected load over card bandwidth, spill of the coldest experts to host RAM, and
// replication of hot experts into spare slots while it shortens a layer's slowest card, and local refinement
// (share re-splits between copies, swaps of copies with the lightest cards) that never changes memory.
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

// Local refinement of one layout: the layer's slowest card sheds load, either by re-splitting the tokens of
// an expert that has a copy on a lighter card (pairwise water-filling of shares) or by swapping one of its
// expert copies for a lighter copy held by one of the lightest cards. Memory per card never changes.
void refine_layers(const PlanProblem& problem, Layout& layout, std::vector<double>& time) {
    // Stop once a step takes less than this fraction off the layer's slowest card.
    constexpr double kMinStepGain = 1e-4;
    // Steps per layer and card of its group (each step lowers the slowest card).
    constexpr size_t kStepsPerCard = 8;
    // Lightest cards tried as swap partners per step.
    constexpr size_t kSwapPartners = 4;
    struct Held {
        uint32_t expert_idx;
        size_t copy_idx;
    };
    std::vector<std::vector<Held>> held(problem.num_cards());
    std::vector<uint32_t> partners;
    std::vector<std::pair<double, Held>> sorted;
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        const LayerCost& layer = problem.layers[l];
        const auto& group = layout.groups[layout.layer_group[l]];
        if (layer.num_experts == 0 || group.size() < 2) continue;
        for (uint32_t c : group) time[c] = 0;
        for (uint32_t e = 0; e < layer.num_experts; ++e) {
            for (const ExpertCopy& copy : layout.experts[l][e]) {
                if (copy.card_idx == kOnHost) continue;
                time[copy.card_idx] += layer.expert_prob[e] * copy.share / problem.cards[copy.card_idx].mem_bw;
            }
        }
        for (uint32_t c : group) held[c].clear();
        for (uint32_t e = 0; e < layer.num_experts; ++e) {
            for (size_t i = 0; i < layout.experts[l][e].size(); ++i) {
                const int32_t c = layout.experts[l][e][i].card_idx;
                if (c != kOnHost) held[c].push_back({e, i});
            }
        }
        auto holds = [&](uint32_t e, int32_t card) {
            return std::any_of(layout.experts[l][e].begin(), layout.experts[l][e].end(),
                               [card](const ExpertCopy& x) { return x.card_idx == card; });
        };
        for (size_t step = 0; step < kStepsPerCard * group.size(); ++step) {
            uint32_t slowest = group.front();
            for (uint32_t c : group) slowest = time[c] > time[slowest] ? c : slowest;
            const double t_slow = time[slowest];
            const double inv_bw_slow = 1.0 / problem.cards[slowest].mem_bw;
            // Best share move: the new time of the slowest card (lower is better).
            double best_share_t = t_slow, best_moved = 0;
            uint32_t best_e = 0;
            size_t best_from = 0, best_to = 0;
            for (const Held& h : held[slowest]) {
                const uint32_t e = h.expert_idx;
                const auto& copies = layout.experts[l][e];
                const size_t from = h.copy_idx;
                if (copies.size() < 2 || copies[from].share <= 0) continue;
                for (size_t i = 0; i < copies.size(); ++i) {
                    const int32_t c = copies[i].card_idx;
                    if (i == from || c == kOnHost || time[c] >= t_slow) continue;
                    const double inv_bw = 1.0 / problem.cards[c].mem_bw;
                    const double moved = std::min(layer.expert_prob[e] * copies[from].share,
                                                  (t_slow - time[c]) / (inv_bw_slow + inv_bw));
                    if (t_slow - moved * inv_bw_slow < best_share_t) {
                        best_share_t = t_slow - moved * inv_bw_slow;
                        best_moved = moved;
                        best_e = e;
                        best_from = from;
                        best_to = i;
                    }
                }
            }
            // Best swap with one of the lightest cards: max of the two new times (lower is better).
            partners.clear();
            for (uint32_t c : group) {
                if (c != slowest) partners.push_back(c);
            }
            const size_t num_partners = std::min(partners.size(), kSwapPartners);
            std::partial_sort(
                partners.begin(), partners.begin() + num_partners, partners.end(),
                [&](uint32_t a, uint32_t b) { return time[a] < time[b] || (time[a] == time[b] && a < b); });
            double best_swap_t = t_slow;
            uint32_t swap_partner = 0;
            Held swap_a{0, 0}, swap_b{0, 0};
            for (size_t pi = 0; pi < num_partners; ++pi) {
                const uint32_t c = partners[pi];
                if (time[c] >= t_slow) continue;
                const double inv_bw = 1.0 / problem.cards[c].mem_bw;
                // The pair's slower time is lowest when the swap moves `ideal` load units; it is convex in the
                // moved load, so only the partner copies nearest to that on either side are worth trying.
                const double ideal = (t_slow - time[c]) / (inv_bw_slow + inv_bw);
                sorted.clear();
                for (const Held& b : held[c]) {
                    sorted.push_back(
                        {layer.expert_prob[b.expert_idx] * layout.experts[l][b.expert_idx][b.copy_idx].share, b});
                }
                std::sort(sorted.begin(), sorted.end(), [](const auto& x, const auto& y) {
                    return x.first < y.first || (x.first == y.first && x.second.expert_idx < y.second.expert_idx);
                });
                for (const Held& a : held[slowest]) {
                    const double load_a =
                        layer.expert_prob[a.expert_idx] * layout.experts[l][a.expert_idx][a.copy_idx].share;
                    if (holds(a.expert_idx, static_cast<int32_t>(c))) continue;
                    auto try_b = [&](const std::pair<double, Held>& cand) {
                        const Held& b = cand.second;
                        // Originals swap with originals and replicas with replicas: replica bytes stay put.
                        if ((a.copy_idx == 0) != (b.copy_idx == 0) || cand.first >= load_a) return false;
                        if (holds(b.expert_idx, static_cast<int32_t>(slowest))) return false;
                        const double d = load_a - cand.first;
                        const double t = std::max(t_slow - d * inv_bw_slow, time[c] + d * inv_bw);
                        if (t < best_swap_t) {
                            best_swap_t = t;
                            swap_partner = c;
                            swap_a = a;
                            swap_b = b;
                        }
                        return true;
                    };
                    const auto mid =
                        std::lower_bound(sorted.begin(), sorted.end(), load_a - ideal,
                                         [](const std::pair<double, Held>& x, double v) { return x.first < v; });
                    for (auto it = mid; it != sorted.end() && !try_b(*it);) ++it;
                    for (auto it = mid; it != sorted.begin();) {
                        if (try_b(*--it)) break;
                    }
                }
            }
            const double best_t = std::min(best_share_t, best_swap_t);
            // No move found (best_t == t_slow; also when every card of the group is idle, t_slow == 0, where the
            // relative test alone would go on with the defaults of a move that does not exist), or too small a gain.
            if (!(best_t < t_slow) || t_slow - best_t < kMinStepGain * t_slow) break;
            if (best_share_t <= best_swap_t) {
                auto& copies = layout.experts[l][best_e];
                const double moved_share = best_moved / layer.expert_prob[best_e];
                copies[best_from].share -= moved_share;
                copies[best_to].share += moved_share;
                time[slowest] -= best_moved * inv_bw_slow;
                time[copies[best_to].card_idx] += best_moved / problem.cards[copies[best_to].card_idx].mem_bw;
            } else {
                ExpertCopy& ca = layout.experts[l][swap_a.expert_idx][swap_a.copy_idx];
                ExpertCopy& cb = layout.experts[l][swap_b.expert_idx][swap_b.copy_idx];
                const double diff =
                    layer.expert_prob[swap_a.expert_idx] * ca.share - layer.expert_prob[swap_b.expert_idx] * cb.share;
                ca.card_idx = static_cast<int32_t>(swap_partner);
                cb.card_idx = static_cast<int32_t>(slowest);
                for (Held& h : held[slowest]) {
                    if (h.expert_idx == swap_a.expert_idx && h.copy_idx == swap_a.copy_idx) h = swap_b;
                }
                for (Held& h : held[swap_partner]) {
                    if (h.expert_idx == swap_b.expert_idx && h.copy_idx == swap_b.copy_idx) h = swap_a;
                }
                time[slowest] -= diff * inv_bw_slow;
                time[swap_partner] += diff / problem.cards[swap_partner].mem_bw;
            }
        }
    }
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
    std::vector<double> time(problem.num_cards(), 0.0);
    refine_layers(problem, layout, time);
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
    // Rounds of share re-tuning, each followed by more replicas where they still pay.
    constexpr uint32_t kMaxRebalances = 3;
    uint32_t added_at_rebalance = 0, num_rebalances = 0;
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
        // Re-tune the shares of all copies; a further round of replicas may then pay again.
        if (!changed && num_added > added_at_rebalance && num_rebalances < kMaxRebalances) {
            refine_layers(problem, layout, time);
            added_at_rebalance = num_added;
            ++num_rebalances;
            changed = true;
        }
    }
    return num_added;
}

}  // namespace moerig::sharding
