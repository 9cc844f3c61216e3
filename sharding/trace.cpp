// Routing trace file format (read/write) and the synthetic Zipf-like trace generator.
// Format (docs/plan.md): a "moerig-trace 1" line, header keys, then one "layer <idx> <count>..." line per
// MoE layer. Blank lines and '#' comments are ignored.
#include "sharding/trace.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "kernels/error.h"

namespace moerig::sharding {
namespace {

constexpr std::string_view kMagic = "moerig-trace";
constexpr int kVersion = 1;

std::vector<std::string_view> split_words(std::string_view line) {
    std::vector<std::string_view> words;
    size_t pos = 0;
    while (pos < line.size()) {
        while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t' || line[pos] == '\r')) ++pos;
        size_t end = pos;
        while (end < line.size() && line[end] != ' ' && line[end] != '\t' && line[end] != '\r') ++end;
        if (end > pos) words.push_back(line.substr(pos, end - pos));
        pos = end;
    }
    return words;
}

uint64_t parse_u64(std::string_view word, const std::string& source, int line_no, std::string_view what) {
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
    MOERIG_CHECK(ec == std::errc() && ptr == word.data() + word.size(), FormatError,
                 "{}:{}: {} must be a non-negative integer, got '{}'", source, line_no, what, word);
    return value;
}

// Uniform double in [0, 1) from 53 random bits: identical on every standard library.
double uniform01(std::mt19937_64& rng) {
    return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

RoutingTrace parse_trace(const std::string& text, const std::string& source) {
    RoutingTrace trace;
    std::istringstream in(text);
    std::string line;
    int line_no = 0;
    bool seen_magic = false, seen_layer = false;
    while (std::getline(in, line)) {
        ++line_no;
        const auto hash = line.find('#');
        auto words = split_words(std::string_view(line).substr(0, hash));
        if (words.empty()) continue;
        if (!seen_magic) {
            MOERIG_CHECK(words[0] == kMagic && words.size() == 2, FormatError,
                         "{}:{}: expected '{} {}' as the first line", source, line_no, kMagic, kVersion);
            MOERIG_CHECK(parse_u64(words[1], source, line_no, "version") == kVersion, FormatError,
                         "{}:{}: unsupported trace version {} (expected {})", source, line_no, words[1], kVersion);
            seen_magic = true;
            continue;
        }
        const std::string_view key = words[0];
        if (key == "layer") {
            MOERIG_CHECK(
                trace.num_layers > 0 && trace.num_experts > 0 && trace.num_experts_used > 0 && trace.num_tokens > 0,
                FormatError, "{}:{}: 'layers', 'experts', 'top_k' and 'tokens' must come before 'layer'", source,
                line_no);
            MOERIG_CHECK(words.size() == 2 + trace.num_experts, FormatError,
                         "{}:{}: layer line has {} counts, expected {} (one per expert)", source, line_no,
                         words.size() - 2, trace.num_experts);
            const uint64_t layer_idx = parse_u64(words[1], source, line_no, "layer index");
            MOERIG_CHECK(layer_idx < trace.num_layers, FormatError, "{}:{}: layer {} out of range (model has {})",
                         source, line_no, layer_idx, trace.num_layers);
            seen_layer = true;
            auto& row = trace.counts[layer_idx];
            MOERIG_CHECK(row.empty(), FormatError, "{}:{}: layer {} appears twice", source, line_no, layer_idx);
            row.resize(trace.num_experts);
            uint64_t sum = 0;
            for (uint32_t e = 0; e < trace.num_experts; ++e) {
                row[e] = parse_u64(words[2 + e], source, line_no, "expert count");
                sum += row[e];
            }
            MOERIG_CHECK(sum <= trace.num_tokens * trace.num_experts_used, FormatError,
                         "{}:{}: layer {} routes {} token-slots, more than tokens*top_k = {}", source, line_no,
                         layer_idx, sum, trace.num_tokens * trace.num_experts_used);
            continue;
        }
        MOERIG_CHECK(words.size() == 2, FormatError, "{}:{}: expected '<key> <value>', got '{}'", source, line_no,
                     line);
        MOERIG_CHECK(!seen_layer || key == "model", FormatError, "{}:{}: header key '{}' after the first layer line",
                     source, line_no, key);
        if (key == "model") {
            trace.model = std::string(words[1]);
        } else if (key == "layers") {
            MOERIG_CHECK(trace.num_layers == 0, FormatError, "{}:{}: 'layers' given twice", source, line_no);
            trace.num_layers = static_cast<uint32_t>(parse_u64(words[1], source, line_no, "layers"));
            MOERIG_CHECK(trace.num_layers > 0 && trace.num_layers <= 4096, FormatError,
                         "{}:{}: layers must be in 1..4096", source, line_no);
            trace.counts.assign(trace.num_layers, {});
        } else if (key == "experts") {
            trace.num_experts = static_cast<uint32_t>(parse_u64(words[1], source, line_no, "experts"));
            MOERIG_CHECK(trace.num_experts > 0 && trace.num_experts <= 65536, FormatError,
                         "{}:{}: experts must be in 1..65536", source, line_no);
        } else if (key == "top_k") {
            trace.num_experts_used = static_cast<uint32_t>(parse_u64(words[1], source, line_no, "top_k"));
        } else if (key == "tokens") {
            trace.num_tokens = parse_u64(words[1], source, line_no, "tokens");
        } else {
            MOERIG_THROW(FormatError, "{}:{}: unknown key '{}' (expected model, layers, experts, top_k, tokens, layer)",
                         source, line_no, key);
        }
    }
    MOERIG_CHECK(seen_magic, FormatError, "{}: empty trace (expected '{} {}' first)", source, kMagic, kVersion);
    MOERIG_CHECK(trace.num_experts_used > 0 && trace.num_experts_used <= trace.num_experts, FormatError,
                 "{}: top_k must be in 1..experts", source);
    const bool any_layer = std::any_of(trace.counts.begin(), trace.counts.end(), [](auto& r) { return !r.empty(); });
    MOERIG_CHECK(any_layer, FormatError, "{}: trace has no 'layer' lines", source);
    return trace;
}

RoutingTrace read_trace(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    MOERIG_CHECK(in.good(), FormatError, "{}: cannot open routing trace", path);
    std::stringstream buf;
    buf << in.rdbuf();
    return parse_trace(buf.str(), path);
}

std::string format_trace(const RoutingTrace& trace) {
    std::string out = fmt::format("{} {}\n", kMagic, kVersion);
    if (!trace.model.empty()) out += fmt::format("model {}\n", trace.model);
    out += fmt::format("layers {}\nexperts {}\ntop_k {}\ntokens {}\n", trace.num_layers, trace.num_experts,
                       trace.num_experts_used, trace.num_tokens);
    for (uint32_t l = 0; l < trace.counts.size(); ++l) {
        if (trace.counts[l].empty()) continue;
        out += fmt::format("layer {} {}\n", l, fmt::join(trace.counts[l], " "));
    }
    return out;
}

void write_trace(const RoutingTrace& trace, const std::string& path) {
    std::ofstream out(path, std::ios::binary);
    MOERIG_CHECK(out.good(), ConfigError, "{}: cannot write routing trace", path);
    out << format_trace(trace);
    MOERIG_CHECK(out.good(), ConfigError, "{}: write failed", path);
}

RoutingTrace synthetic_trace(const SyntheticTraceSpec& spec) {
    MOERIG_CHECK(spec.num_experts > 0 && spec.num_experts_used > 0 && spec.num_experts_used <= spec.num_experts,
                 ConfigError, "synthetic trace: need 1 <= top_k ({}) <= experts ({})", spec.num_experts_used,
                 spec.num_experts);
    MOERIG_CHECK(spec.num_dense_layers < spec.num_layers, ConfigError,
                 "synthetic trace: {} dense layers leave no MoE layer of {}", spec.num_dense_layers, spec.num_layers);
    MOERIG_CHECK(spec.skew >= 0.0 && spec.drift >= 0.0 && spec.drift <= 1.0, ConfigError,
                 "synthetic trace: skew must be >= 0 and drift in [0, 1]");
    RoutingTrace trace;
    trace.model = spec.model;
    trace.num_layers = spec.num_layers;
    trace.num_experts = spec.num_experts;
    trace.num_experts_used = spec.num_experts_used;
    trace.num_tokens = spec.num_tokens;
    trace.counts.assign(spec.num_layers, {});

    const uint32_t num_experts = spec.num_experts;
    std::mt19937_64 popularity_rng(spec.popularity_seed);
    std::mt19937_64 sample_rng(spec.sample_seed ^ 0x9e3779b97f4a7c15ull);
    std::vector<double> weight(num_experts), cumulative(num_experts);
    std::vector<uint32_t> rank_of(num_experts), chosen;
    std::vector<uint8_t> taken(num_experts);
    for (uint32_t layer_idx = spec.num_dense_layers; layer_idx < spec.num_layers; ++layer_idx) {
        // Popularity: a per-layer permutation of Zipf ranks, then a drift that re-shuffles some ranks.
        std::iota(rank_of.begin(), rank_of.end(), 0u);
        for (uint32_t i = num_experts - 1; i > 0; --i) std::swap(rank_of[i], rank_of[popularity_rng() % (i + 1)]);
        const auto num_drift = static_cast<uint32_t>(std::lround(spec.drift * num_experts));
        for (uint32_t i = 0; i + 1 < num_drift; ++i) {
            const uint32_t a = sample_rng() % num_experts, b = sample_rng() % num_experts;
            std::swap(rank_of[a], rank_of[b]);
        }
        double total = 0.0;
        for (uint32_t e = 0; e < num_experts; ++e) {
            weight[e] = 1.0 / std::pow(static_cast<double>(rank_of[e]) + 1.0, spec.skew);
            total += weight[e];
            cumulative[e] = total;
        }
        auto& row = trace.counts[layer_idx];
        row.assign(num_experts, 0);
        for (uint64_t t = 0; t < spec.num_tokens; ++t) {
            // Top-k distinct experts: weighted draws, re-drawing duplicates (sampling without replacement).
            chosen.clear();
            while (chosen.size() < spec.num_experts_used) {
                const double u = uniform01(sample_rng) * total;
                auto e = static_cast<uint32_t>(std::upper_bound(cumulative.begin(), cumulative.end(), u) -
                                               cumulative.begin());
                e = std::min(e, num_experts - 1);
                if (taken[e]) continue;
                taken[e] = 1;
                chosen.push_back(e);
            }
            for (uint32_t e : chosen) {
                taken[e] = 0;
                ++row[e];
            }
        }
    }
    return trace;
}

}  // namespace moerig::sharding
