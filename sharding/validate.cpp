// Layout invariants, and the does-not-fit explanation: per-card overage under a memory-proportional layer
// split, and searches for what would fit (extra cards of a kind, smaller quant, shorter context, spill).
#include "sharding/validate.h"

#include <algorithm>
#include <cmath>

#include "kernels/error.h"
#include "sharding/partition.h"
#include "sharding/quant_mix.h"
#include "sharding/strategy.h"

namespace moerig::sharding {

std::vector<std::string> check_layout(const PlanProblem& problem, const Layout& layout) {
    std::vector<std::string> out;
    if (!layout.feasible) {
        out.push_back("layout is not feasible: " + layout.infeasible_reason);
        return out;
    }
    if (layout.stage_card.size() != problem.num_layers()) out.push_back("not every layer has a stage card");
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        const LayerCost& layer = problem.layers[l];
        if (layout.experts[l].size() != layer.num_experts) {
            out.push_back(fmt::format("layer {}: {} expert entries, expected {}", l, layout.experts[l].size(),
                                      layer.num_experts));
            continue;
        }
        const auto& group = layout.groups[layout.layer_group[l]];
        for (uint32_t e = 0; e < layer.num_experts; ++e) {
            const auto& copies = layout.experts[l][e];
            double share = 0;
            for (const ExpertCopy& c : copies) {
                share += c.share;
                if (c.card_idx != kOnHost &&
                    std::find(group.begin(), group.end(), uint32_t(c.card_idx)) == group.end()) {
                    out.push_back(
                        fmt::format("layer {} expert {}: copy on card {} outside the layer's group", l, e, c.card_idx));
                }
            }
            if (copies.empty()) out.push_back(fmt::format("layer {} expert {} is not placed", l, e));
            if (!copies.empty() && std::abs(share - 1.0) > 1e-9) {
                out.push_back(fmt::format("layer {} expert {}: shares sum to {}", l, e, share));
            }
        }
    }
    std::vector<uint64_t> expert_bytes(problem.num_cards(), 0);
    for (const auto& layer : layout.experts) {
        for (const auto& copies : layer) {
            for (const ExpertCopy& c : copies) {
                if (c.card_idx != kOnHost) expert_bytes[c.card_idx] += problem.expert_bytes;
            }
        }
    }
    for (uint32_t c = 0; c < problem.num_cards(); ++c) {
        const CardMemory& m = layout.memory[c];
        if (m.experts != expert_bytes[c]) {
            out.push_back(
                fmt::format("card {}: expert bytes {} do not match its slots ({})", c, m.experts, expert_bytes[c]));
        }
        if (m.total() > problem.cards[c].vram_bytes) {
            out.push_back(fmt::format("card {} ({}): {} bytes planned, over its {} bytes", problem.cards[c].name,
                                      problem.cards[c].kind, m.total(), problem.cards[c].vram_bytes));
        }
    }
    for (uint32_t h = 0; h < problem.hosts.size(); ++h) {
        if (layout.host_spill_bytes[h] > problem.hosts[h].spill_budget_bytes) {
            out.push_back(fmt::format("host {}: spilled experts exceed its usable RAM", problem.hosts[h].name));
        }
    }
    return out;
}

bool problem_fits(const PlanProblem& problem) {
    for (uint32_t g : candidate_group_sizes(problem)) {
        if (build_layout(problem, g, PartitionObjective::kMax).feasible) return true;
    }
    return false;
}

namespace {

std::string gb(double bytes) {
    return fmt::format("{:.1f} GB", bytes / 1e9);
}

bool fits_with(const ModelAccount& model, const RigSpec& rig, const Workload& workload, PlanOptions options,
               const RoutingTrace* trace) {
    options.replicate_hot_experts = false;  // feasibility only
    return problem_fits(make_problem(model, rig, workload, options, trace));
}

RigSpec with_extra_cards(const RigSpec& rig, const RigCard& like, uint32_t count) {
    RigSpec out = rig;
    for (uint32_t i = 0; i < count; ++i) {
        RigCard card = like;
        card.card_idx = static_cast<uint32_t>(out.cards.size());
        if (card.host_idx < out.hosts.size()) out.hosts[card.host_idx].card_idx.push_back(card.card_idx);
        out.cards.push_back(card);
    }
    return out;
}

Workload with_context(Workload w, uint32_t context) {
    w.context = context;
    w.prompt = std::max<uint32_t>(1, std::min(w.prompt, context / 2));
    w.gen = std::max<uint32_t>(1, std::min(w.gen, context - w.prompt));
    return w;
}

// Per card need under a llama.cpp-style split: layers in proportion to each card's memory.
void proportional_overage(const PlanProblem& problem, FitAdvice& advice) {
    const Workload& w = problem.workload;
    const CardBuffers buffers = card_buffers(problem, 1);
    double total_vram = 0;
    for (const CardCost& c : problem.cards) total_vram += static_cast<double>(c.vram_bytes);
    std::vector<double> need(problem.num_cards(), 0.0);
    double cumulative = 0;
    uint32_t card = 0;
    double card_end = static_cast<double>(problem.cards[0].vram_bytes) / total_vram;
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        const double position = (l + 0.5) / problem.num_layers();
        while (position > card_end && card + 1 < problem.num_cards()) {
            cumulative = card_end;
            ++card;
            card_end = cumulative + static_cast<double>(problem.cards[card].vram_bytes) / total_vram;
        }
        const LayerCost& layer = problem.layers[l];
        const double kv_ctx = layer.kv_window ? std::min<double>(w.context, layer.kv_window) : w.context;
        need[card] += layer.stage_bytes + static_cast<double>(layer.num_experts) * problem.expert_bytes +
                      w.batch * kv_ctx * layer.kv_bytes_per_token;
    }
    need[card] += problem.output_bytes + problem.logits_bytes;
    advice.need_bytes = 0;
    advice.vram_bytes = 0;
    for (uint32_t c = 0; c < problem.num_cards(); ++c) {
        const CardCost& cc = problem.cards[c];
        const double total = need[c] + cc.reserve_bytes + buffers.activations + buffers.comm;
        CardOverage o{cc.name, cc.kind, static_cast<uint64_t>(total), cc.vram_bytes,
                      static_cast<int64_t>(total) - static_cast<int64_t>(cc.vram_bytes)};
        advice.need_bytes += o.need_bytes;
        advice.vram_bytes += o.vram_bytes;
        advice.cards.push_back(std::move(o));
    }
}

}  // namespace

FitAdvice explain_no_fit(const ModelAccount& model, const RigSpec& rig, const Workload& workload,
                         const PlanOptions& options, const RoutingTrace* trace, const std::string& reason,
                         const RequantFn& requant) {
    FitAdvice advice;
    const PlanProblem problem = make_problem(model, rig, workload, options, trace);
    proportional_overage(problem, advice);
    const double over = static_cast<double>(advice.need_bytes) - static_cast<double>(advice.vram_bytes);
    advice.reason =
        over > 0 ? fmt::format("{} {} needs {} on the cards but rig {} has {} (over by {}): {}", model.spec.name,
                               model.quant, gb(advice.need_bytes), rig.name, gb(advice.vram_bytes), gb(over), reason)
                 : fmt::format("{} {} does not fit rig {}: {}", model.spec.name, model.quant, rig.name, reason);

    // More cards of a kind already in the rig: exponential then binary search on the count.
    std::vector<std::string> kinds_done;
    for (const RigCard& card : rig.cards) {
        if (std::find(kinds_done.begin(), kinds_done.end(), card.spec.name) != kinds_done.end()) continue;
        kinds_done.push_back(card.spec.name);
        const auto per_card = static_cast<double>(std::max<uint64_t>(card.usable_bytes(), 1));
        uint32_t hi = std::max<uint32_t>(1, static_cast<uint32_t>(std::ceil(std::max(0.0, over) / per_card)));
        constexpr uint32_t kMaxExtra = 1024;
        while (hi <= kMaxExtra && !fits_with(model, with_extra_cards(rig, card, hi), workload, options, trace)) hi *= 2;
        if (hi > kMaxExtra) continue;
        uint32_t lo = hi / 2;  // lo does not fit (or is 0)
        while (hi - lo > 1) {
            const uint32_t mid = (lo + hi) / 2;
            (fits_with(model, with_extra_cards(rig, card, mid), workload, options, trace) ? hi : lo) = mid;
        }
        advice.suggestions.push_back(fmt::format("{} more {} card{} would fit it ({} cards in all)", hi, card.spec.name,
                                                 hi == 1 ? "" : "s", rig.cards.size() + hi));
    }
    // A smaller quant: the largest (best quality) that fits.
    if (requant) {
        std::optional<std::pair<std::string, uint64_t>> best;
        for (const std::string& name : quant_mix_names()) {
            const std::optional<ModelAccount> smaller = requant(name);
            if (!smaller || smaller->total_bytes >= model.total_bytes) continue;
            if (best && smaller->total_bytes <= best->second) continue;
            if (fits_with(*smaller, rig, workload, options, trace)) best = {name, smaller->total_bytes};
        }
        if (best) {
            advice.suggestions.push_back(
                fmt::format("quant {} would fit it ({} of weights)", best->first, gb(best->second)));
        } else {
            advice.suggestions.push_back("no smaller quant fits this rig");
        }
    }
    // A shorter context.
    constexpr uint32_t kMinContext = 2;  // one prompt token and one generated token
    if (workload.context > kMinContext && fits_with(model, rig, with_context(workload, kMinContext), options, trace)) {
        uint32_t lo = kMinContext, hi = workload.context;  // lo fits, hi does not
        while (hi - lo > 1) {
            const uint32_t mid = lo + (hi - lo) / 2;
            (fits_with(model, rig, with_context(workload, mid), options, trace) ? lo : hi) = mid;
        }
        advice.suggestions.push_back(fmt::format("--context {} (instead of {}) would fit it", lo, workload.context));
    }
    if (!options.allow_host_spill) {
        PlanOptions spill = options;
        spill.allow_host_spill = true;
        if (fits_with(model, rig, workload, spill, trace)) {
            advice.suggestions.push_back("--spill would fit it by keeping cold experts in host RAM (slower)");
        }
    }
    if (advice.suggestions.empty()) advice.suggestions.push_back("no single change tried here makes it fit");
    return advice;
}

}  // namespace moerig::sharding
