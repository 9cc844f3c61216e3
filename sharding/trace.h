// Routing traces: per layer, how many tokens the router sent to each expert. The planner balances expert
// placement on one trace and scores it on another. The text file format is documented in docs/plan.md;
// a seedable Zipf-like generator makes synthetic skewed traces for tests and benchmarks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moerig::sharding {

/// Expert token counts of one model: counts[layer][expert]. Dense layers have an empty row.
struct RoutingTrace {
    std::string model;  // model name the trace was recorded or generated for
    uint32_t num_layers = 0;
    uint32_t num_experts = 0;
    uint32_t num_experts_used = 0;              // top-k
    uint64_t num_tokens = 0;                    // tokens routed per MoE layer
    std::vector<std::vector<uint64_t>> counts;  // (num_layers, num_experts) or (num_layers, 0)

    bool has_layer(uint32_t layer_idx) const { return layer_idx < counts.size() && !counts[layer_idx].empty(); }
};

/// Reads a trace file; FormatError naming file and line on any malformed input.
RoutingTrace read_trace(const std::string& path);
/// Parses trace text; `source` names it in errors.
RoutingTrace parse_trace(const std::string& text, const std::string& source);
/// Writes `trace` in the text format; ConfigError if the file cannot be written.
void write_trace(const RoutingTrace& trace, const std::string& path);
std::string format_trace(const RoutingTrace& trace);

/// Parameters of a synthetic skewed trace. Expert popularity in each layer follows a Zipf law with
/// exponent `skew` over a per-layer random permutation drawn from `popularity_seed`; tokens pick top-k
/// distinct experts by sampling without replacement, drawn from `sample_seed`. Two traces with the same
/// popularity seed and different sample seeds are two samples of one model's routing.
struct SyntheticTraceSpec {
    std::string model;
    uint32_t num_layers = 0;
    uint32_t num_dense_layers = 0;  // leading layers without experts
    uint32_t num_experts = 0;
    uint32_t num_experts_used = 0;
    uint64_t num_tokens = 1024;
    double skew = 1.0;
    uint64_t popularity_seed = 1;
    uint64_t sample_seed = 1;
    /// Fraction of each layer's popularity ranks re-drawn per sample seed: models drift between
    /// workloads (0 = same popularity, 1 = unrelated).
    double drift = 0.0;
};

RoutingTrace synthetic_trace(const SyntheticTraceSpec& spec);

}  // namespace moerig::sharding
