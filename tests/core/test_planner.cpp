// Planner properties over seeded random rigs (every expert placed, no card over budget, deterministic),
// the layer-partition DP against brute force, expert placement (trace balance, replication, spill), the
// cost model's monotonicity and strategy choice, and the does-not-fit advice.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

#include "kernels/error.h"
#include "sharding/accounting.h"
#include "sharding/catalog.h"
#include "sharding/partition.h"
#include "sharding/placement.h"
#include "sharding/planner.h"
#include "sharding/rig.h"
#include "sharding/strategy.h"
#include "sharding/trace.h"
#include "sharding/validate.h"

using namespace moerig::sharding;

namespace {

struct CardGroup {
    std::string kind;
    uint32_t count;
    uint32_t gen = 3;
    uint32_t lanes = 16;
    bool p2p = false;
};

RigSpec make_rig(const std::vector<CardGroup>& groups, uint64_t ram_bytes = 64ull << 30) {
    static const CardCatalog catalog = CardCatalog::load_default();
    RigSpec rig;
    rig.name = "test-rig";
    rig.hosts.push_back(HostSpec{"host0", ram_bytes, 38.4e9, {}});
    for (const CardGroup& g : groups) {
        for (uint32_t i = 0; i < g.count; ++i) {
            RigCard card;
            card.card_idx = static_cast<uint32_t>(rig.cards.size());
            card.local_idx = card.card_idx;
            card.spec = catalog.find(g.kind);
            card.link = CardLink{g.gen, g.lanes, g.p2p};
            rig.hosts[0].card_idx.push_back(card.card_idx);
            rig.cards.push_back(card);
        }
    }
    return rig;
}

RigSpec random_rig(std::mt19937_64& rng) {
    static const std::vector<std::string> kinds = {"P106-100",      "P104-100",  "RTX 3060 12GB", "CMP 40HX",
                                                   "RTX 2060 12GB", "Tesla P40", "GTX 1070",      "CMP 90HX"};
    std::vector<CardGroup> groups;
    const int num_groups = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < num_groups; ++i) {
        CardGroup g;
        g.kind = kinds[rng() % kinds.size()];
        g.count = 1 + static_cast<uint32_t>(rng() % 6);
        g.gen = 1 + static_cast<uint32_t>(rng() % 4);
        g.lanes = std::array<uint32_t, 4>{1, 4, 8, 16}[rng() % 4];
        g.p2p = rng() % 4 == 0;
        groups.push_back(g);
    }
    return make_rig(groups);
}

const ModelAccount& olmoe() {
    static const ModelAccount m = load_model("olmoe-1b-7b", parse_quant_mix("Q4_K_M"));
    return m;
}
const ModelAccount& qwen30b() {
    static const ModelAccount m = load_model("qwen3-30b-a3b", parse_quant_mix("Q4_K_M"));
    return m;
}

RoutingTrace test_trace(const std::string& name) {
    return read_trace(std::string(MOERIG_TEST_DATA) + "/traces/" + name);
}

std::vector<std::vector<double>> probs_of(const PlanProblem& problem, const RoutingTrace& trace) {
    return expert_probs_from_trace(trace, problem, /*smooth=*/false);
}

}  // namespace

// ---- Partition DP -------------------------------------------------------------------------------------

namespace {

// Exhaustive search over every split of layers into bins (bins may be empty).
double brute_force(uint32_t bin, uint32_t start, uint32_t num_bins, uint32_t num_layers,
                   const std::function<double(uint32_t, uint32_t, uint32_t)>& cost, PartitionObjective obj,
                   double hop) {
    if (bin == num_bins) return start == num_layers ? 0.0 : kInfeasible;
    double best = brute_force(bin + 1, start, num_bins, num_layers, cost, obj, hop);  // empty bin
    for (uint32_t end = start + 1; end <= num_layers; ++end) {
        const double c = cost(bin, start, end);
        if (c == kInfeasible) break;
        const double rest = brute_force(bin + 1, end, num_bins, num_layers, cost, obj, hop);
        if (rest == kInfeasible) continue;
        const double here = c + (start > 0 ? hop : 0.0);
        best = std::min(best, obj == PartitionObjective::kSum ? here + rest : std::max(here, rest));
    }
    return best;
}

}  // namespace

TEST(Partition, DynamicProgramMatchesBruteForceOnRandomInstances) {
    std::mt19937_64 rng(5);
    for (int round = 0; round < 60; ++round) {
        const uint32_t num_bins = 1 + rng() % 4, num_layers = 1 + rng() % 7;
        std::vector<double> speed(num_bins), cap(num_bins), layer(num_layers);
        for (auto& s : speed) s = 1 + rng() % 5;
        for (auto& c : cap) c = 2 + rng() % 10;
        for (auto& l : layer) l = 1 + rng() % 4;
        auto cost = [&](uint32_t b, uint32_t x, uint32_t y) {
            double bytes = 0;
            for (uint32_t i = x; i < y; ++i) bytes += layer[i];
            return bytes <= cap[b] ? bytes / speed[b] : kInfeasible;
        };
        for (auto obj : {PartitionObjective::kSum, PartitionObjective::kMax}) {
            const double hop = (rng() % 3) * 0.25;
            const LayerRanges r = partition_layers(num_bins, num_layers, cost, obj, hop);
            const double expected = brute_force(0, 0, num_bins, num_layers, cost, obj, hop);
            ASSERT_EQ(r.feasible(), expected < kInfeasible) << "round " << round;
            if (!r.feasible()) continue;
            EXPECT_NEAR(r.cost, expected, 1e-9) << "round " << round;
            // Ranges are contiguous and cover every layer once.
            uint32_t next = 0;
            for (uint32_t b = 0; b < num_bins; ++b) {
                EXPECT_EQ(r.begin[b], next);
                next = r.end[b];
            }
            EXPECT_EQ(next, num_layers);
        }
    }
}

// ---- Properties over random rigs ----------------------------------------------------------------------

TEST(Planner, RandomRigsPlaceEveryExpertKeepCardsInBudgetAndAreDeterministic) {
    std::mt19937_64 rng(2024);
    int num_fit = 0;
    for (int round = 0; round < 24; ++round) {
        const RigSpec rig = random_rig(rng);
        const ModelAccount& model = round % 2 ? olmoe() : qwen30b();
        Workload w;
        w.batch = 1 + static_cast<uint32_t>(rng() % 8);
        w.context = 1024 << (rng() % 3);
        w.prompt = 256;
        w.gen = 128;
        PlanOptions options;
        options.allow_host_spill = rng() % 3 == 0;
        const PlanResult a = plan(model, rig, w, options);
        if (!a.fits()) {
            ASSERT_TRUE(a.advice.has_value());
            EXPECT_FALSE(a.advice->suggestions.empty());
            continue;
        }
        ++num_fit;
        const Layout& layout = a.chosen.layout;
        EXPECT_TRUE(check_layout(a.problem, layout).empty()) << "round " << round;
        for (uint32_t c = 0; c < a.problem.num_cards(); ++c) {
            EXPECT_LE(layout.memory[c].total(), a.problem.cards[c].vram_bytes) << "round " << round << " card " << c;
        }
        for (uint32_t l = 0; l < a.problem.num_layers(); ++l) {
            for (const auto& copies : layout.experts[l]) EXPECT_FALSE(copies.empty());
        }
        // Proto: every expert of every MoE layer appears at least once across cards and hosts.
        std::vector<std::vector<int>> seen(a.problem.num_layers());
        for (uint32_t l = 0; l < a.problem.num_layers(); ++l) seen[l].assign(a.problem.layers[l].num_experts, 0);
        for (const auto& card : a.plan.cards()) {
            for (const auto& slot : card.experts()) ++seen[slot.layer()][slot.expert()];
        }
        for (const auto& host : a.plan.hosts()) {
            for (const auto& slot : host.spilled_experts()) ++seen[slot.layer()][slot.expert()];
        }
        for (const auto& layer : seen) {
            for (int n : layer) EXPECT_GE(n, 1);
        }
        const PlanResult b = plan(model, rig, w, options);
        EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(a.plan, b.plan)) << "round " << round;
    }
    EXPECT_GE(num_fit, 8);  // the generator must exercise real plans, not only refusals
}

TEST(Planner, PlanIsSelfContainedForTheRuntime) {
    const RigSpec rig = make_rig({{"RTX 3060 12GB", 2}, {"P106-100", 2}});
    const PlanResult r = plan(qwen30b(), rig, Workload{}, PlanOptions{});
    ASSERT_TRUE(r.fits());
    uint32_t covered = 0;
    int num_output = 0;
    for (const auto& card : r.plan.cards()) {
        covered += card.layer_end() - card.layer_begin();
        num_output += card.holds_output();
        if (card.layer_end() > card.layer_begin()) {
            EXPECT_EQ(card.kv_tokens(), uint64_t{4096});
        }
        EXPECT_EQ(card.memory().total(), card.memory().dense_weights() + card.memory().expert_weights() +
                                             card.memory().kv_cache() + card.memory().activations() +
                                             card.memory().comm_buffers() + card.memory().reserve());
    }
    EXPECT_EQ(covered, r.plan.model().num_layers());
    EXPECT_EQ(num_output, 1);
    EXPECT_EQ(r.plan.rig().cards_size(), 4);
    EXPECT_GT(r.plan.model().expert_bytes(), 0u);
    EXPECT_GE(r.plan.decode_microbatches(), 1u);
}

// ---- Placement ----------------------------------------------------------------------------------------

TEST(Placement, PlanningOnATraceBalancesAHeldOutTraceBetterThanUniformPlanning) {
    const RigSpec rig = make_rig({{"RTX 3060 12GB", 2, 4, 16, true}, {"P106-100", 3, 4, 16, true}});
    const RoutingTrace plan_trace = test_trace("olmoe-zipf-plan.trace");
    const RoutingTrace held_out = test_trace("olmoe-zipf-heldout.trace");
    PlanOptions options;
    options.strategy = StrategyChoice::kExpertParallel;
    options.replicate_hot_experts = false;
    const PlanResult with_trace = plan(olmoe(), rig, Workload{}, options, &plan_trace);
    const PlanResult uniform = plan(olmoe(), rig, Workload{}, options, nullptr);
    ASSERT_TRUE(with_trace.fits() && uniform.fits());
    const auto probs = probs_of(with_trace.problem, held_out);
    const double traced = expert_balance(with_trace.problem, with_trace.chosen.layout, probs);
    const double flat = expert_balance(uniform.problem, uniform.chosen.layout, probs);
    EXPECT_GT(traced, flat);
}

TEST(Placement, ReplicasOfHotExpertsUseSpareMemoryAndImproveBalance) {
    // 16 cards share 8 token-slots per layer: the hottest experts alone exceed a card's fair share.
    const RigSpec rig = make_rig({{"RTX 3060 12GB", 16, 4, 16, true}});
    SyntheticTraceSpec spec;
    spec.model = "olmoe-1b-7b";
    spec.num_layers = 16;
    spec.num_experts = 64;
    spec.num_experts_used = 8;
    spec.num_tokens = 2048;
    spec.skew = 1.2;
    const RoutingTrace trace = synthetic_trace(spec);
    PlanOptions options;
    options.strategy = StrategyChoice::kExpertParallel;
    options.replicate_hot_experts = false;
    const PlanResult plain = plan(olmoe(), rig, Workload{}, options, &trace);
    options.replicate_hot_experts = true;
    const PlanResult replicated = plan(olmoe(), rig, Workload{}, options, &trace);
    ASSERT_TRUE(plain.fits() && replicated.fits());
    uint32_t num_replicas = 0;
    for (const auto& card : replicated.plan.cards()) {
        for (const auto& slot : card.experts()) num_replicas += slot.replica() > 0;
    }
    EXPECT_GT(num_replicas, 0u);
    EXPECT_TRUE(check_layout(replicated.problem, replicated.chosen.layout).empty());
    std::vector<std::vector<double>> probs;
    for (const auto& layer : plain.problem.layers) probs.push_back(layer.expert_prob);
    EXPECT_GT(expert_balance(replicated.problem, replicated.chosen.layout, probs),
              expert_balance(plain.problem, plain.chosen.layout, probs));
}

TEST(Placement, SpillKeepsTheColdestExpertsInHostRam) {
    // qwen3-30b Q4_K_M (~18 GB) on two 8 GB cards only fits with experts in host RAM.
    const RigSpec rig = make_rig({{"P104-100", 2, 3, 16}});
    Workload w;
    w.context = 2048;
    PlanOptions options;
    const PlanResult refused = plan(qwen30b(), rig, w, options);
    EXPECT_FALSE(refused.fits());
    options.allow_host_spill = true;
    const RoutingTrace trace = [&] {
        SyntheticTraceSpec s;
        s.model = "qwen3-30b-a3b";
        s.num_layers = 48;
        s.num_experts = 128;
        s.num_experts_used = 8;
        s.num_tokens = 512;
        s.skew = 1.0;
        return synthetic_trace(s);
    }();
    const PlanResult spilled = plan(qwen30b(), rig, w, options, &trace);
    ASSERT_TRUE(spilled.fits());
    const Layout& layout = spilled.chosen.layout;
    EXPECT_GT(layout.host_spill_bytes[0], 0u);
    // Within each layer no spilled expert is hotter than an expert kept on a card.
    for (uint32_t l = 0; l < spilled.problem.num_layers(); ++l) {
        double max_spilled = 0, min_on_card = 1e9;
        for (uint32_t e = 0; e < layout.experts[l].size(); ++e) {
            const double p = spilled.problem.layers[l].expert_prob[e];
            const bool on_host = layout.experts[l][e][0].card_idx == kOnHost;
            (on_host ? max_spilled : min_on_card) = on_host ? std::max(max_spilled, p) : std::min(min_on_card, p);
        }
        if (max_spilled > 0 && min_on_card < 1e9) {
            EXPECT_LE(max_spilled, min_on_card * 1.5) << "layer " << l;
        }
    }
    EXPECT_TRUE(check_layout(spilled.problem, layout).empty());
}

// ---- Cost model ---------------------------------------------------------------------------------------

TEST(CostModel, MoreMemoryOrLinkBandwidthIsNeverSlower) {
    const RigSpec rig = make_rig({{"P106-100", 3, 1, 1}, {"RTX 3060 12GB", 2, 3, 4}});
    Workload w;
    w.batch = 8;
    const PlanProblem base = make_problem(qwen30b(), rig, w, PlanOptions{}, nullptr);
    for (uint32_t g : candidate_group_sizes(base)) {
        const Layout layout = build_layout(base, g, PartitionObjective::kMax);
        if (!layout.feasible) continue;
        const Prediction before = predict(base, layout);
        for (int which = 0; which < 2; ++which) {
            PlanProblem faster = base;
            for (CardCost& c : faster.cards) {
                (which == 0 ? c.mem_bw : c.peer_bw) *= 1.5;
            }
            const Prediction after = predict(faster, layout);
            EXPECT_LE(after.decode_step_s, before.decode_step_s * (1 + 1e-12)) << "group " << g;
            EXPECT_LE(after.decode_step_s_batch, before.decode_step_s_batch * (1 + 1e-12)) << "group " << g;
            EXPECT_LE(after.prefill_s, before.prefill_s * (1 + 1e-12)) << "group " << g;
        }
    }
}

TEST(CostModel, MoreCardsNeverLessCapacity) {
    Workload w;
    w.context = 2048;
    uint32_t last_context = 0;
    bool last_fit = false;
    for (uint32_t n = 1; n <= 6; ++n) {
        const RigSpec rig = make_rig({{"RTX 3060 12GB", n, 3, 4}});
        const PlanResult r = plan(qwen30b(), rig, w, PlanOptions{});
        if (last_fit) {
            EXPECT_TRUE(r.fits()) << n << " cards";
        }
        if (r.fits()) {
            EXPECT_GE(r.plan.predicted().max_context(), last_context) << n << " cards";
            last_context = r.plan.predicted().max_context();
        }
        last_fit = r.fits();
    }
    EXPECT_TRUE(last_fit);
}

TEST(CostModel, BatchOneOnX1RisersPicksPipelineAndBigBatchOnFastLinksSpreadsExperts) {
    Workload w1;
    w1.batch = 1;
    const PlanResult slow = plan(qwen30b(), make_rig({{"P106-100", 8, 1, 1}}), w1, PlanOptions{});
    ASSERT_TRUE(slow.fits());
    EXPECT_EQ(slow.plan.strategy(), moerig::proto::PIPELINE);

    Workload big;
    big.batch = 64;
    big.context = 1024;
    const PlanResult fast = plan(qwen30b(), make_rig({{"RTX 3060 12GB", 6, 4, 16, true}}), big, PlanOptions{});
    ASSERT_TRUE(fast.fits());
    EXPECT_NE(fast.plan.strategy(), moerig::proto::PIPELINE);
}

TEST(CostModel, ExpertTimeIsTheExpectedSlowestHolderByExactEnumeration) {
    // Holders with a few copies each, every subset of copies enumerated: E[max over holders of
    // max(n_h * read_h, flops_h) + overhead] against copies_read_distribution + expected_max_seconds.
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int round = 0; round < 20; ++round) {
        const int num_holders = 1 + static_cast<int>(rng() % 3);
        std::vector<std::vector<double>> touch(num_holders);
        std::vector<double> per_copy(num_holders), floor_s(num_holders);
        std::vector<HolderTime> holders(num_holders);
        int total = 0;
        for (int h = 0; h < num_holders; ++h) {
            touch[h].resize(1 + rng() % 4);
            for (double& q : touch[h]) q = u(rng);
            total += static_cast<int>(touch[h].size());
            per_copy[h] = 0.5 + u(rng);
            floor_s[h] = u(rng);
            copies_read_distribution(touch[h], holders[h].prob);
            for (size_t n = 0; n < holders[h].prob.size(); ++n)
                holders[h].seconds.push_back(std::max(static_cast<double>(n) * per_copy[h], floor_s[h]) + 0.01);
        }
        double expected = 0;
        for (uint64_t mask = 0; mask < (uint64_t{1} << total); ++mask) {
            double p = 1, worst = 0;
            int bit = 0;
            for (int h = 0; h < num_holders; ++h) {
                int n = 0;
                for (double q : touch[h]) {
                    const bool read = (mask >> bit++) & 1;
                    p *= read ? q : 1 - q;
                    n += read;
                }
                worst = std::max(worst, std::max(n * per_copy[h], floor_s[h]) + 0.01);
            }
            expected += p * worst;
        }
        EXPECT_NEAR(expected_max_seconds(holders), expected, 1e-12) << "round " << round;
    }
}

TEST(CostModel, ExpertParallelLayerWaitsForAWholeExpertEvenWhenEachCardExpectsAFraction) {
    // Mixtral on 8 cards, one expert each, top-2 at batch 1: every card expects a quarter of an expert's
    // reads, but two cards always read a whole expert and the layer waits for them.
    const ModelAccount mixtral = load_model("mixtral-8x7b", parse_quant_mix("Q4_K_M"));
    const PlanProblem problem =
        make_problem(mixtral, make_rig({{"RTX 3060 12GB", 8, 4, 16, true}}), Workload{}, PlanOptions{}, nullptr);
    const Layout layout = build_layout(problem, 8, PartitionObjective::kMax);
    ASSERT_TRUE(layout.feasible);
    double one_expert_per_layer = 0;
    for (uint32_t l = 0; l < problem.num_layers(); ++l) {
        if (problem.layers[l].num_experts > 0) one_expert_per_layer += problem.expert_bytes / problem.cards[0].mem_bw;
    }
    EXPECT_GT(decode_step_seconds(problem, layout, 1, 512), one_expert_per_layer);
}

TEST(CostModel, MicroBatchedDecodeIsNeverSlowerThanWholeBatchSteps) {
    const RigSpec rig = make_rig({{"P104-100", 6, 1, 1}});
    Workload w;
    w.batch = 16;
    w.context = 1024;
    const PlanProblem problem = make_problem(qwen30b(), rig, w, PlanOptions{}, nullptr);
    const Layout layout = build_layout(problem, 1, PartitionObjective::kMax);
    ASSERT_TRUE(layout.feasible);
    const double whole = decode_step_seconds(problem, layout, 16, 512, 1);
    const DecodeStep best = decode_step(problem, layout, 16, 512);
    EXPECT_LE(best.seconds, whole);
    EXPECT_GT(best.num_microbatches, 1u);  // six stages: overlapping them must pay off
}

// ---- Does not fit -------------------------------------------------------------------------------------

TEST(Validate, AdviceSaysByHowMuchPerCardAndTheSuggestedCardCountIsTheSmallestThatFits) {
    const RigSpec rig = make_rig({{"P106-100", 2, 1, 1}});
    const ModelAccount& model = qwen30b();
    const PlanResult r =
        plan(model, rig, Workload{}, PlanOptions{}, nullptr, [](const std::string& q) -> std::optional<ModelAccount> {
            return load_model("qwen3-30b-a3b", parse_quant_mix(q));
        });
    ASSERT_FALSE(r.fits());
    ASSERT_TRUE(r.advice.has_value());
    EXPECT_NE(r.advice->reason.find("over by"), std::string::npos) << r.advice->reason;
    ASSERT_EQ(r.advice->cards.size(), 2u);
    for (const auto& c : r.advice->cards) EXPECT_GT(c.over_bytes, 0);
    // "N more P106-100 cards": N fits, N-1 does not.
    uint32_t extra = 0;
    for (const auto& s : r.advice->suggestions) {
        if (s.find("more P106-100") != std::string::npos) extra = static_cast<uint32_t>(std::stoul(s));
    }
    ASSERT_GT(extra, 0u);
    EXPECT_TRUE(plan(model, make_rig({{"P106-100", 2 + extra, 1, 1}}), Workload{}, PlanOptions{}).fits());
    EXPECT_FALSE(plan(model, make_rig({{"P106-100", 1 + extra, 1, 1}}), Workload{}, PlanOptions{}).fits());
    const bool has_quant = std::any_of(r.advice->suggestions.begin(), r.advice->suggestions.end(),
                                       [](const std::string& s) { return s.find("quant") != std::string::npos; });
    EXPECT_TRUE(has_quant);
}

TEST(Validate, ShorterContextSuggestionFitsAndOneMoreTokenDoesNot) {
    const RigSpec rig = make_rig({{"RTX 3060 12GB", 2, 3, 4}});
    Workload w;
    w.batch = 16;
    w.context = 32768;
    const PlanResult r = plan(qwen30b(), rig, w, PlanOptions{});
    ASSERT_FALSE(r.fits());
    uint32_t context = 0;
    for (const auto& s : r.advice->suggestions) {
        if (s.rfind("--context ", 0) == 0) context = static_cast<uint32_t>(std::stoul(s.substr(10)));
    }
    ASSERT_GT(context, 0u);
    Workload shorter = w;
    shorter.context = context;
    shorter.prompt = std::min(w.prompt, context / 2);
    shorter.gen = std::min(w.gen, context - shorter.prompt);
    EXPECT_TRUE(plan(qwen30b(), rig, shorter, PlanOptions{}).fits());
    shorter.context = context + 1;
    EXPECT_FALSE(plan(qwen30b(), rig, shorter, PlanOptions{}).fits());
}

TEST(Validate, WorkloadErrorsNameTheFlag) {
    Workload w;
    w.batch = 0;
    EXPECT_THROW(w.validate(), moerig::ConfigError);
    w = Workload{};
    w.prompt = 4000;
    w.gen = 200;
    try {
        w.validate();
        FAIL();
    } catch (const moerig::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("--context"), std::string::npos);
    }
    EXPECT_THROW(parse_strategy_choice("sideways"), moerig::ConfigError);
}

TEST(Validate, TraceOfAnotherModelIsRejected) {
    const RoutingTrace trace = test_trace("olmoe-zipf-plan.trace");
    EXPECT_THROW(plan(qwen30b(), make_rig({{"RTX 3060 12GB", 2}}), Workload{}, PlanOptions{}, &trace),
                 moerig::ConfigError);
}

TEST(Placement, RefinedSharesAndSwapsKeepEveryCardsExpertBytesAndShares) {
    // Fast small cards next to slow big ones: refinement swaps copies and re-splits replica shares; the
    // bytes each card holds (originals and replicas) must still match the copies it was given.
    const RigSpec rig = make_rig({{"CMP 90HX", 4, 1, 4}, {"P106-100", 8, 1, 1}, {"Tesla P40", 4, 3, 16}});
    SyntheticTraceSpec spec;
    spec.model = "olmoe-1b-7b";
    spec.num_layers = 16;
    spec.num_experts = 64;
    spec.num_experts_used = 8;
    spec.num_tokens = 2048;
    spec.skew = 1.2;
    const RoutingTrace trace = synthetic_trace(spec);
    PlanOptions options;
    options.strategy = StrategyChoice::kExpertParallel;
    const PlanResult r = plan(olmoe(), rig, Workload{}, options, &trace);
    ASSERT_TRUE(r.fits());
    const Layout& layout = r.chosen.layout;
    EXPECT_TRUE(check_layout(r.problem, layout).empty());
    std::vector<uint64_t> held(r.problem.num_cards(), 0), replicas(r.problem.num_cards(), 0);
    uint32_t num_replicas = 0;
    for (const auto& layer : layout.experts) {
        for (const auto& copies : layer) {
            double share = 0;
            for (size_t i = 0; i < copies.size(); ++i) {
                EXPECT_GE(copies[i].share, -1e-12);
                share += copies[i].share;
                if (copies[i].card_idx == kOnHost) continue;
                held[copies[i].card_idx] += r.problem.expert_bytes;
                if (i > 0) replicas[copies[i].card_idx] += r.problem.expert_bytes;
                num_replicas += i > 0;
            }
            EXPECT_NEAR(share, 1.0, 1e-9);
        }
    }
    EXPECT_GT(num_replicas, 0u);
    for (uint32_t c = 0; c < r.problem.num_cards(); ++c) {
        EXPECT_EQ(layout.memory[c].experts, held[c]) << "card " << c;
        EXPECT_EQ(layout.memory[c].replica_experts, replicas[c]) << "card " << c;
    }
}
