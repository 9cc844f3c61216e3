// The plan as one JSON object for machines (`moerig plan --json`): fits, model, cards, predicted, strategy,
// and, when it does not fit, the advice.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>

#include "proto/plan.pb.h"
#include "sharding/validate.h"

namespace moerig::sharding {

nlohmann::json plan_report_json(const proto::Plan& plan, const std::optional<FitAdvice>& advice);

}  // namespace moerig::sharding
