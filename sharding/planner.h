// The planner's entry point: a model account, a rig, a workload and options in; a self-contained Plan out
// (stages, expert slots, KV budgets, memory per card, predictions), or an explanation of why nothing fits.
#pragma once

#include <optional>
#include <string>

#include "proto/plan.pb.h"
#include "sharding/cost_model.h"
#include "sharding/strategy.h"
#include "sharding/validate.h"

namespace moerig::sharding {

inline constexpr uint32_t kPlanFormatVersion = 1;

/// What plan() returns. `plan` is always filled (fits == false when nothing fits, with advice set).
struct PlanResult {
    PlanProblem problem;
    Candidate chosen;
    proto::Plan plan;
    std::optional<FitAdvice> advice;  // set when the model does not fit
    bool fits() const { return plan.fits(); }
};

/// Plans `model` on `rig`. `trace` (may be null) gives the planning loads; `requant` (may be empty)
/// lets the does-not-fit advice try smaller quants.
PlanResult plan(const ModelAccount& model, const RigSpec& rig, const Workload& workload, const PlanOptions& options,
                const RoutingTrace* trace = nullptr, const RequantFn& requant = {});

/// The proto form of a feasible layout with its prediction.
proto::Plan to_proto(const PlanProblem& problem, const Layout& layout, const Prediction& prediction);

}  // namespace moerig::sharding
