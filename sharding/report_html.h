// One self-contained HTML page (inline SVG and CSS, nothing fetched) picturing a plan: memory per card by
// kind as stacked bars, experts per card per layer as a heatmap, link traffic per card.
#pragma once

#include <string>

#include "proto/plan.pb.h"

namespace moerig::sharding {

std::string plan_report_html(const proto::Plan& plan);
/// Writes plan_report_html to `path`; ConfigError when the file cannot be written.
void write_plan_html(const proto::Plan& plan, const std::string& path);

}  // namespace moerig::sharding
