// Routing traces: the text format round-trips, malformed files fail with file and line, the synthetic
// generator is seedable, routes exactly top-k distinct experts per token and skews load as asked.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "kernels/error.h"
#include "sharding/trace.h"

using moerig::FormatError;
using namespace moerig::sharding;

namespace {

SyntheticTraceSpec small_spec() {
    SyntheticTraceSpec s;
    s.model = "toy";
    s.num_layers = 6;
    s.num_dense_layers = 1;
    s.num_experts = 32;
    s.num_experts_used = 4;
    s.num_tokens = 500;
    s.skew = 1.2;
    s.popularity_seed = 11;
    s.sample_seed = 3;
    return s;
}

double top_share(const std::vector<uint64_t>& row) {
    const double sum = std::accumulate(row.begin(), row.end(), 0.0);
    return *std::max_element(row.begin(), row.end()) / sum;
}

void expect_format_error(const std::string& text, const std::string& needle) {
    try {
        parse_trace(text, "t.trace");
        FAIL() << "expected FormatError containing '" << needle << "'";
    } catch (const FormatError& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

}  // namespace

TEST(Trace, TextFormatRoundTripsEveryCount) {
    const RoutingTrace t = synthetic_trace(small_spec());
    const RoutingTrace back = parse_trace(format_trace(t), "mem");
    EXPECT_EQ(back.model, "toy");
    EXPECT_EQ(back.num_layers, t.num_layers);
    EXPECT_EQ(back.num_experts, t.num_experts);
    EXPECT_EQ(back.num_experts_used, t.num_experts_used);
    EXPECT_EQ(back.num_tokens, t.num_tokens);
    EXPECT_EQ(back.counts, t.counts);
}

TEST(Trace, SyntheticRoutesTopKDistinctExpertsPerTokenOnMoeLayersOnly) {
    const SyntheticTraceSpec s = small_spec();
    const RoutingTrace t = synthetic_trace(s);
    EXPECT_FALSE(t.has_layer(0));  // dense layer
    for (uint32_t l = 1; l < s.num_layers; ++l) {
        ASSERT_TRUE(t.has_layer(l));
        const uint64_t sum = std::accumulate(t.counts[l].begin(), t.counts[l].end(), uint64_t{0});
        EXPECT_EQ(sum, s.num_tokens * s.num_experts_used);
        for (uint64_t c : t.counts[l]) EXPECT_LE(c, s.num_tokens);  // distinct experts per token
    }
}

TEST(Trace, SyntheticIsDeterministicPerSeedAndSamplesDifferAcrossSampleSeeds) {
    SyntheticTraceSpec s = small_spec();
    EXPECT_EQ(synthetic_trace(s).counts, synthetic_trace(s).counts);
    SyntheticTraceSpec other = s;
    other.sample_seed = 4;
    EXPECT_NE(synthetic_trace(s).counts, synthetic_trace(other).counts);
}

TEST(Trace, SkewConcentratesLoadOnFewExperts) {
    SyntheticTraceSpec flat = small_spec();
    flat.skew = 0.0;
    flat.num_tokens = 4000;
    SyntheticTraceSpec skewed = flat;
    skewed.skew = 1.5;
    const RoutingTrace a = synthetic_trace(flat), b = synthetic_trace(skewed);
    for (uint32_t l = 1; l < flat.num_layers; ++l) EXPECT_GT(top_share(b.counts[l]), 2 * top_share(a.counts[l]));
}

TEST(Trace, SamePopularitySeedGivesCorrelatedSamples) {
    SyntheticTraceSpec s = small_spec();
    s.num_tokens = 4000;
    SyntheticTraceSpec other = s;
    other.sample_seed = 99;
    const RoutingTrace a = synthetic_trace(s), b = synthetic_trace(other);
    for (uint32_t l = 1; l < s.num_layers; ++l) {
        const auto hot_a = std::max_element(a.counts[l].begin(), a.counts[l].end()) - a.counts[l].begin();
        const auto hot_b = std::max_element(b.counts[l].begin(), b.counts[l].end()) - b.counts[l].begin();
        EXPECT_EQ(hot_a, hot_b) << "layer " << l;
    }
}

TEST(Trace, MalformedFilesNameTheLine) {
    const std::string head = "moerig-trace 1\nlayers 2\nexperts 3\ntop_k 1\ntokens 10\n";
    expect_format_error("layers 2\n", "t.trace:1: expected 'moerig-trace 1'");
    expect_format_error("moerig-trace 2\n", "unsupported trace version");
    expect_format_error(head + "layer 0 1 2\n", "t.trace:6: layer line has 2 counts, expected 3");
    expect_format_error(head + "layer 5 1 2 3\n", "t.trace:6: layer 5 out of range");
    expect_format_error(head + "layer 0 1 x 3\n", "t.trace:6: expert count must be a non-negative integer");
    expect_format_error(head + "layer 0 9 9 9\n", "more than tokens*top_k");
    expect_format_error(head + "layer 0 1 1 1\nlayer 0 1 1 1\n", "t.trace:7: layer 0 appears twice");
    expect_format_error(head + "colour blue\n", "t.trace:6: unknown key 'colour'");
    expect_format_error(head, "no 'layer' lines");
    expect_format_error("moerig-trace 1\nlayer 0 1\n", "must come before 'layer'");
}

TEST(Trace, CommittedTracesParseWithTheOlmoeShape) {
    for (const char* name : {"olmoe-zipf-plan.trace", "olmoe-zipf-heldout.trace"}) {
        const RoutingTrace t = read_trace(std::string(MOERIG_TEST_DATA) + "/traces/" + name);
        EXPECT_EQ(t.model, "olmoe-1b-7b");
        EXPECT_EQ(t.num_layers, 16u);
        EXPECT_EQ(t.num_experts, 64u);
        EXPECT_EQ(t.num_experts_used, 8u);
        for (uint32_t l = 0; l < t.num_layers; ++l) EXPECT_TRUE(t.has_layer(l));
    }
}

TEST(Trace, MissingFileIsAFormatErrorNamingThePath) {
    EXPECT_THROW(read_trace("/nonexistent/x.trace"), FormatError);
}
