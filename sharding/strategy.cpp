// Builds one layout per (group size, partition objective) and keeps the one the cost model predicts to
// finish the workload soonest.
#include "sharding/strategy.h"

#include <algorithm>
#include <set>

#include "sharding/placement.h"

namespace moerig::sharding {

Layout build_layout(const PlanProblem& problem, uint32_t group_size, PartitionObjective objective) {
    Layout layout;
    layout.group_size = std::clamp<uint32_t>(group_size, 1, problem.num_cards());
    layout.groups = make_groups(problem.num_cards(), layout.group_size);
    layout.strategy = layout.group_size == 1                     ? proto::PIPELINE
                      : layout.group_size == problem.num_cards() ? proto::EXPERT_PARALLEL
                                                                 : proto::HYBRID;
    partition_stages(problem, objective, layout);
    if (!layout.feasible) return layout;
    place_experts(problem, layout);
    return layout;
}

std::vector<uint32_t> candidate_group_sizes(const PlanProblem& problem) {
    const uint32_t n = problem.num_cards();
    std::set<uint32_t> sizes{1, n};
    for (uint32_t g = 2; g < n; g *= 2) sizes.insert(g);
    std::vector<uint32_t> per_host(problem.hosts.size(), 0);
    for (const CardCost& c : problem.cards) ++per_host[c.host_idx];
    for (uint32_t k : per_host) {
        if (k > 0) sizes.insert(k);
    }
    std::vector<uint32_t> out;
    for (uint32_t g : sizes) {
        const bool pipeline = g == 1, ep = g == n && n > 1, hybrid = !pipeline && !ep;
        switch (problem.options.strategy) {
            case StrategyChoice::kAuto:
                out.push_back(g);
                break;
            case StrategyChoice::kPipeline:
                if (pipeline) out.push_back(g);
                break;
            case StrategyChoice::kExpertParallel:
                if (ep || n == 1) out.push_back(g);
                break;
            case StrategyChoice::kHybrid:
                if (hybrid || n <= 2) out.push_back(g);
                break;
        }
    }
    return out;
}

Candidate choose_strategy(const PlanProblem& problem) {
    Candidate best;
    bool have_feasible = false, have_any = false;
    for (uint32_t g : candidate_group_sizes(problem)) {
        for (PartitionObjective objective : {PartitionObjective::kSum, PartitionObjective::kMax}) {
            Candidate cand;
            cand.group_size = g;
            cand.objective = objective;
            cand.layout = build_layout(problem, g, objective);
            if (!cand.layout.feasible) {
                if (!have_any) best = std::move(cand);
                have_any = true;
                continue;
            }
            cand.prediction = predict(problem, cand.layout);
            if (!have_feasible || cand.prediction.workload_s < best.prediction.workload_s * (1 - 1e-9)) {
                best = std::move(cand);
                have_feasible = true;
            }
            have_any = true;
        }
    }
    return best;
}

}  // namespace moerig::sharding
