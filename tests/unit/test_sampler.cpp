// Sampler: llama.cpp's chain order and arithmetic with exact expected outcomes: greedy, repetition penalty
// on positive and negative logits, top-k, top-p, min-p, temperature, and the seeded weighted draw.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/sampler.h"

using moerig::runtime::Sampler;
using moerig::runtime::SamplerParams;

namespace {

SamplerParams off() {
    SamplerParams p;
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    return p;
}

std::vector<int32_t> ids(const std::vector<moerig::runtime::TokenCandidate>& c) {
    std::vector<int32_t> out;
    for (const auto& x : c) out.push_back(x.id);
    return out;
}

TEST(Sampler, GreedyPicksTheLargestLogitFirstOnTies) {
    auto p = off();
    p.temp = 0;
    Sampler s(p);
    const std::vector<float> logits = {0.1f, 3.0f, -2.0f, 3.0f};
    EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
    auto p = off();
    p.temp = 0;
    p.repeat_penalty = 1.1f;
    Sampler s(p);
    s.accept(0);
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f}), 1);     // 2.0 / 1.1 = 1.82 < 1.9
    EXPECT_EQ(s.sample(std::vector<float>{-1.0f, -1.05f}), 1);  // -1.0 * 1.1 = -1.1 < -1.05
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.7f}), 0);     // 1.82 > 1.7: still wins
}

TEST(Sampler, RepeatPenaltyForgetsTokensOlderThanLastN) {
    auto p = off();
    p.temp = 0;
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    Sampler s(p);
    s.accept(0);
    s.accept(5);
    s.accept(6);  // token 0 falls out of the window
    EXPECT_EQ(s.sample(std::vector<float>{2.0f, 1.9f}), 0);
}

TEST(Sampler, TopKKeepsTheKLargestSorted) {
    auto p = off();
    p.top_k = 2;
    Sampler s(p);
    EXPECT_EQ(ids(s.candidates(std::vector<float>{0.5f, 2.0f, -1.0f, 1.0f})), (std::vector<int32_t>{1, 3}));
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
    const std::vector<float> logits = {std::log(0.2f), std::log(0.5f), std::log(0.3f)};
    auto p = off();
    p.top_p = 0.7f;
    EXPECT_EQ(ids(Sampler(p).candidates(logits)), (std::vector<int32_t>{1, 2}));  // 0.5 + 0.3 >= 0.7
    p.top_p = 0.5f;
    EXPECT_EQ(ids(Sampler(p).candidates(logits)), (std::vector<int32_t>{1}));
}

TEST(Sampler, MinPKeepsTokensAtLeastPTimesTheBest) {
    const std::vector<float> logits = {std::log(0.2f), std::log(0.5f), std::log(0.3f)};
    auto p = off();
    p.min_p = 0.5f;  // threshold 0.25: drops 0.2
    EXPECT_EQ(ids(Sampler(p).candidates(logits)), (std::vector<int32_t>{1, 2}));
}

TEST(Sampler, TemperatureDividesTheSurvivingLogits) {
    auto p = off();
    p.top_k = 2;
    p.temp = 0.5f;
    const auto c = Sampler(p).candidates(std::vector<float>{1.0f, 3.0f, 2.0f});
    ASSERT_EQ(c.size(), 2u);
    EXPECT_EQ(c[0].logit, 6.0f);
    EXPECT_EQ(c[1].logit, 4.0f);
}

TEST(Sampler, SingleSurvivorIsPickedWhateverTheSeed) {
    auto p = off();
    p.top_k = 1;
    for (uint64_t seed : {0u, 1u, 42u}) {
        p.seed = seed;
        Sampler s(p);
        EXPECT_EQ(s.sample(std::vector<float>{0.0f, 0.5f, 0.4f}), 1);
    }
}

TEST(Sampler, DrawWalksSortedCandidatesWithMt19937Uniform) {
    // After top-k the candidates are sorted: probabilities 0.5, 0.3, 0.2 for ids 1, 2, 0. llama.cpp draws
    // u ~ U[0,1) (double) from mt19937(seed) and takes the first candidate whose running sum reaches u * total.
    const std::vector<float> logits = {std::log(0.2f), std::log(0.5f), std::log(0.3f)};
    auto p = off();
    p.top_k = 3;
    for (uint64_t seed = 0; seed < 20; ++seed) {
        p.seed = seed;
        Sampler s(p);
        std::mt19937 rng(static_cast<uint32_t>(seed));
        std::uniform_real_distribution<double> u(0.0, 1.0);
        for (int draw = 0; draw < 5; ++draw) {
            const double x = u(rng);
            const int32_t want = x <= 0.5 ? 1 : x <= 0.8 ? 2 : 0;
            EXPECT_EQ(s.sample(logits), want) << "seed " << seed << " draw " << draw << " u " << x;
        }
    }
}

TEST(Sampler, ResetReplaysTheSameTokens) {
    auto p = off();
    p.seed = 9;
    Sampler s(p);
    const std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.4f};
    std::vector<int32_t> first, second;
    for (int i = 0; i < 8; ++i) first.push_back(s.sample(logits));
    s.reset();
    for (int i = 0; i < 8; ++i) second.push_back(s.sample(logits));
    EXPECT_EQ(first, second);
}

}  // namespace
