// The plan as people read it: one table row per card (VRAM used/total with a bar, layers, experts, KV
// tokens), then the predictions; and the does-not-fit explanation.
#pragma once

#include <string>

#include "proto/plan.pb.h"
#include "sharding/validate.h"

namespace moerig::sharding {

/// Multi-line table and predictions of a plan that fits.
std::string format_plan_text(const proto::Plan& plan);
/// Multi-line explanation: total and per-card overage, then what would fit.
std::string format_no_fit_text(const proto::Plan& plan, const FitAdvice& advice);
/// "gpu0-3" style compression of a sorted list of layer indices ("-" when empty).
std::string format_layer_ranges(uint32_t begin, uint32_t end);

}  // namespace moerig::sharding
