// Plan files: binary protobuf (.pb), text protobuf (.txtpb), YAML (.yaml/.yml) and JSON (.json), chosen by
// the file extension. YAML and JSON follow protobuf's JSON mapping with the .proto field names.
#pragma once

#include <string>

#include "proto/plan.pb.h"

namespace moerig::sharding {

enum class PlanFormat { kBinary, kText, kYaml, kJson };

/// Format from the extension; ConfigError naming the path otherwise.
PlanFormat plan_format_from_path(const std::string& path);

std::string plan_to_string(const proto::Plan& plan, PlanFormat format);
/// Parses a plan; FormatError naming `source` (and line where the parser gives one) on bad input.
proto::Plan plan_from_string(const std::string& data, PlanFormat format, const std::string& source);

/// Writes/reads a plan file in the format its extension names.
void write_plan(const proto::Plan& plan, const std::string& path);
proto::Plan read_plan(const std::string& path);

}  // namespace moerig::sharding
