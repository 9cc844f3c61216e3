// Benchmark of the sharded executor. Part 1: decode tokens/s on 4 virtual cards (pipeline and expert
// parallel) vs the one-card session with the same threads per card (target >= 0.9). Part 2: a planned
// layout on a rig with emulated links: link time per token as modelled vs measured wall time and the
// planner's prediction. Part 3: the planner's chosen strategy vs a pure layer split, 16-token steps.
// Part 4 (--batch16): 16 concurrent sequences decoding one token each per step on a rig with emulated links
// (sleeping to modelled time): the planner's chosen strategy (planned for batch 16) vs a pure layer split, in
// tokens/s of all sequences together and as a ratio; meant for the Qwen3-shaped synthetic model of
// tools/make_sharded_bench_model.py.
// Validates once (sharded greedy tokens == one-card tokens) before timing.
// Usage: bench_sharded [model.gguf] [threads_per_card=1] [rig=p106-8x-gen1x1]
//        bench_sharded --batch16 model.gguf [threads_per_card=1] [rig=bench/p106-8x-gen1x1-scaled.yaml]
//                      [decode_steps=16] [wall|clock]
// Part 4's timing: wall (default) is wall-clock time with links sleeping to their modelled time, on however
// many cores this machine has; clock is the compute clock (ShardedOptions::compute_clock, one thread per card):
// each card's measured CPU time and the modelled links on per-card virtual clocks, i.e. a rig whose cards each
// compute on a core of their own, which a machine with fewer cores than cards cannot show in wall time.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "kernels/ops.h"
#include "runtime/batch.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "runtime/sharded_run.h"

using namespace moerig::runtime;
using moerig::bench::nmse;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kContext = 256;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

/// Greedy decode of num_tokens after the prompt; returns the tokens and the decode seconds. cpu_s (optional):
/// the process's CPU seconds over the decode, every thread together.
template <class Eval>
std::pair<std::vector<int32_t>, double> decode(Eval&& eval, int num_tokens, double* cpu_s = nullptr) {
    std::vector<int32_t> out;
    std::vector<float> logits = eval(std::span<const int32_t>(kPrompt));
    const std::clock_t cpu0 = std::clock();
    const auto t0 = Clock::now();
    for (int i = 0; i < num_tokens; ++i) {
        const auto next = static_cast<int32_t>(moerig::kernels::argmax(logits.data(), int64_t(logits.size())));
        out.push_back(next);
        logits = eval(std::span<const int32_t>(&next, 1));
    }
    if (cpu_s) *cpu_s = double(std::clock() - cpu0) / CLOCKS_PER_SEC;
    return {out, std::chrono::duration<double>(Clock::now() - t0).count()};
}

constexpr int kBatch = 16;
constexpr size_t kDispatchSlackBytes = size_t{8} << 20;

/// Prompts of the batch: different lengths (4..11) and tokens.
std::vector<std::vector<int32_t>> batch_prompts(int64_t n_vocab) {
    std::vector<std::vector<int32_t>> prompts(kBatch);
    for (int s = 0; s < kBatch; ++s) {
        for (int i = 0; i < 4 + s % 8; ++i) prompts[s].push_back(static_cast<int32_t>((97 * s + 31 * i + 3) % n_vocab));
    }
    return prompts;
}

/// All prompts in one step, then num_steps greedy steps of one token per sequence; eval is a BatchSession's or a
/// ShardedModel's. Returns every sequence's tokens and the decode seconds.
template <class Eval>
std::pair<std::vector<std::vector<int32_t>>, double> decode_batch(Eval&& eval, int64_t n_vocab, int num_steps) {
    const auto prompts = batch_prompts(n_vocab);
    std::vector<std::vector<int32_t>> out(kBatch);
    std::vector<SeqTokens> entries;
    for (int s = 0; s < kBatch; ++s) entries.push_back(SeqTokens{.slot_idx = s, .tokens = prompts[s]});
    auto logits = eval(std::span<const SeqTokens>(entries));
    const auto t0 = Clock::now();
    for (int step = 0; step < num_steps; ++step) {
        for (int s = 0; s < kBatch; ++s) {
            out[s].push_back(static_cast<int32_t>(moerig::kernels::argmax(logits[s].data(), n_vocab)));
            entries[s].tokens = std::span<const int32_t>(&out[s].back(), 1);
        }
        logits = eval(std::span<const SeqTokens>(entries));
    }
    return {out, std::chrono::duration<double>(Clock::now() - t0).count()};
}

/// Modelled link time of the card that waited longest on links so far.
double max_link_s(const ShardedModel& sharded) {
    double t = 0;
    for (const CardStats& c : sharded.card_stats()) t = std::max(t, c.modelled_link_s);
    return t;
}

/// Part 4: batch-of-16 decode, the planner's chosen strategy vs a pure layer split on an emulated rig; clock:
/// timed on the compute clock instead of the wall clock.
int bench_batch16(const std::string& path, int threads, const std::string& rig, int num_steps, bool clock) {
    const int64_t context = 32 + num_steps;
    auto model = Model::load(path, ModelOptions{.num_threads = threads, .context = context, .progress = false});
    const ModelHParams& hp = model->hparams();
    fmt::print("model {}: {} layers, hidden {}, {} experts (top {}); {} thread(s) per card\n", path, hp.n_layer,
               hp.n_embd, hp.n_expert, hp.n_expert_used, threads);
    // Reference for validation: the 16 prompts' logits on one card (BatchSession equals Session per sequence,
    // tests/unit/test_batch.cpp). Compared by NMSE, not greedy tokens: with quantised weights the sharded
    // expert path may round activations differently from the one-card path (same at batch 1).
    const auto prompts = batch_prompts(hp.n_vocab);
    std::vector<SeqTokens> prefill;
    for (int s = 0; s < kBatch; ++s) prefill.push_back(SeqTokens{.slot_idx = s, .tokens = prompts[s]});
    BatchSession one_card(*model, kBatch, context);
    const auto ref = one_card.eval(prefill);
    constexpr double kMaxNmse = 1e-3;

    fmt::print(
        "\n4) {} sequences x 1 token per step on '{}' ({}), {} steps; cards get {} MiB over the plan's budget for "
        "F32 dispatch buffers\n",
        kBatch, rig,
        clock ? "compute clock: per-card CPU time + modelled links" : "wall clock, links sleeping to modelled time",
        num_steps, kDispatchSlackBytes >> 20);
    // On the compute clock a card's time in communication includes waiting for its peers' compute.
    fmt::print("{:>16} {:>16} {:>10} {:>10} {:>13} {:>12} {:>11} {:>10}\n", "strategy", "chosen", "tok/s", "vs_layers",
               clock ? "wait_ms/step" : "link_ms/step", "bytes/step", "plan_tok/s", "nmse");
    struct Row {
        std::string choice, strategy;
        double predicted = 0, worst = 0;
        std::unique_ptr<ShardedModel> sharded;
        double tps = 0, link_ms = 0, bytes = 0;  // best tokens/s; link time and bytes per step of the first run
    };
    std::vector<Row> rows;
    for (const char* choice : {"pipeline", "auto", "expert-parallel", "hybrid"}) {
        Row row;
        row.choice = choice;
        ShardLayout layout;
        try {
            layout =
                plan_layout(*model, rig, context, 12, num_steps, choice, &row.strategy, &row.predicted, false, kBatch);
        } catch (const std::exception& e) {
            fmt::print("{:>16} not planned: {}\n", choice, e.what());
            continue;
        }
        // The planner sizes dispatch buffers for F16 hidden states; the CPU dispatcher sends F32, so a tightly
        // packed card needs a little more than the plan's budget at batch 16 (speed is measured here, not fit).
        for (ShardCard& c : layout.cards) c.budget_bytes += kDispatchSlackBytes;
        row.sharded = std::make_unique<ShardedModel>(*model, layout,
                                                     ShardedOptions{.context = context,
                                                                    .num_slots = kBatch,
                                                                    .threads_per_card = threads,
                                                                    .emulate_links = true,
                                                                    .sleep_links = !clock,
                                                                    .compute_clock = clock});
        const auto got = row.sharded->eval(prefill);
        for (int s = 0; s < kBatch; ++s) row.worst = std::max(row.worst, nmse(got[s], ref[s]));
        if (row.worst > kMaxNmse) {
            fmt::print(stderr, "validation failed: {} ({}): prompt logits NMSE {:.3g} vs one card\n", choice,
                       row.strategy, row.worst);
            return 1;
        }
        rows.push_back(std::move(row));
    }
    // kRounds rounds over the strategies, the best run of each: a burst of load on a shared host spoils one run of
    // one strategy rather than every run of it.
    constexpr int kRounds = 3;
    for (int round = 0; round < kRounds; ++round) {
        for (Row& row : rows) {
            ShardedModel& sharded = *row.sharded;
            sharded.reset();
            const double link_before = max_link_s(sharded);
            size_t bytes_before = 0;
            for (const auto& c : sharded.card_stats()) bytes_before += c.bytes_sent;
            double clock_before = 0;
            bool prefilled = false;
            auto timed_eval = [&](std::span<const SeqTokens> e) {
                auto out = sharded.eval(e);
                if (!prefilled) clock_before = sharded.modelled_s();  // after the prefill step
                prefilled = true;
                return out;
            };
            const double wall_s = decode_batch(timed_eval, hp.n_vocab, num_steps).second;
            const double s = clock ? sharded.modelled_s() - clock_before : wall_s;
            row.tps = std::max(row.tps, kBatch * num_steps / s);
            if (round == 0) {
                // Link time and bytes include the prefill step; per step over prefill + decode steps.
                size_t bytes = 0;
                for (const auto& c : sharded.card_stats()) bytes += c.bytes_sent;
                row.link_ms = (max_link_s(sharded) - link_before) / (num_steps + 1) * 1e3;
                row.bytes = double(bytes - bytes_before) / (num_steps + 1);
            }
        }
    }
    double pipeline_tps = 0, chosen_tps = 0;
    std::string chosen;
    for (const Row& row : rows) {
        if (row.choice == "pipeline") pipeline_tps = row.tps;
        if (row.choice == "auto") {
            chosen_tps = row.tps;
            chosen = row.strategy;
        }
        fmt::print("{:>16} {:>16} {:>10.1f} {:>10.2f} {:>13.3f} {:>12.0f} {:>11.1f} {:>10.2g}\n", row.choice,
                   row.strategy, row.tps, pipeline_tps > 0 ? row.tps / pipeline_tps : 0.0, row.link_ms, row.bytes,
                   row.predicted, row.worst);
    }
    if (pipeline_tps > 0 && chosen_tps > 0) {
        fmt::print(
            "\nbatch {} decode: chosen ({}) {:.1f} tok/s vs layer split {:.1f} tok/s: {:.2f}x (target >= 1.5x)\n",
            kBatch, chosen, chosen_tps, pipeline_tps, chosen_tps / pipeline_tps);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]) == "--batch16") {
        const std::string timing = argc > 6 ? argv[6] : "wall";
        if (argc < 3 || (timing != "wall" && timing != "clock")) {
            fmt::print(
                stderr,
                "usage: bench_sharded --batch16 model.gguf [threads_per_card=1] [rig] [steps=16] [wall|clock]\n");
            return 2;
        }
        try {
            return bench_batch16(
                argv[2], argc > 3 ? std::atoi(argv[3]) : 1,
                argc > 4 ? argv[4] : std::string(MOERIG_SOURCE_DIR) + "/bench/p106-8x-gen1x1-scaled.yaml",
                argc > 5 ? std::atoi(argv[5]) : 16, timing == "clock");
        } catch (const std::exception& e) {
            fmt::print(stderr, "bench_sharded --batch16: {}\n", e.what());
            return 1;
        }
    }
    const std::string path =
        argc > 1 ? argv[1] : std::string(MOERIG_SOURCE_DIR) + "/tests/data/models/qwen3moe-q4_k_m.gguf";
    const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
    const std::string rig = argc > 3 ? argv[3] : "p106-8x-gen1x1";
    const int num_tokens = 128;
    auto model = Model::load(path, ModelOptions{.num_threads = threads, .context = kContext, .progress = false});
    const ModelHParams& hp = model->hparams();
    fmt::print("model {}: {} layers, hidden {}, {} experts (top {}); {} thread(s) per card\n", path, hp.n_layer,
               hp.n_embd, hp.n_expert, hp.n_expert_used, threads);

    // Best of three runs each (the machine may be shared), the cache reset between runs.
    // CPU time (all threads) per token is printed too: on a loaded machine the wall-clock ratio mostly shows how
    // the scheduler shares cores between unequal numbers of threads, while the CPU ratio shows the work the
    // sharded path adds (copies, dispatch, synchronisation), whatever the load.
    Session session(*model, kContext);
    double ref_cpu = 0, cpu = 0;
    auto [ref_tokens, ref_s] =
        decode([&](std::span<const int32_t> t) { return session.eval(t); }, num_tokens, &ref_cpu);
    for (int rep = 0; rep < 2; ++rep) {
        session.reset();
        ref_s = std::min(ref_s,
                         decode([&](std::span<const int32_t> t) { return session.eval(t); }, num_tokens, &cpu).second);
        ref_cpu = std::min(ref_cpu, cpu);
    }
    const double ref_tps = num_tokens / ref_s;
    fmt::print("\n1) decode, {} tokens\n{:>22} {:>10} {:>10} {:>12} {:>10}\n{:>22} {:>10.1f} {:>10} {:>12.2f} {:>10}\n",
               num_tokens, "layout", "tok/s", "vs_1card", "cpu_ms/tok", "cpu_ratio", "1 card (session)", ref_tps,
               "1.00", ref_cpu / num_tokens * 1e3, "1.00");
    const size_t budget = size_t{1} << 30;
    const std::pair<const char*, ShardLayout> layouts[] = {
        {"pipeline x4", ShardLayout::pipeline(hp, 4, budget)},
        {"expert_parallel x4", ShardLayout::expert_parallel(hp, 4, budget)},
        {"hybrid 2x2", ShardLayout::hybrid(hp, 4, 2, budget)},
    };
    for (const auto& [name, layout] : layouts) {
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext, .threads_per_card = threads});
        double shard_cpu = 0;
        auto [tokens, s] = decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens, &shard_cpu);
        if (tokens != ref_tokens) {
            fmt::print(stderr, "validation failed: {} generated other tokens than one card\n", name);
            return 1;
        }
        for (int rep = 0; rep < 2; ++rep) {
            sharded.reset();
            s = std::min(s,
                         decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens, &cpu).second);
            shard_cpu = std::min(shard_cpu, cpu);
        }
        fmt::print("{:>22} {:>10.1f} {:>10.2f} {:>12.2f} {:>10.2f}\n", name, num_tokens / s, (num_tokens / s) / ref_tps,
                   shard_cpu / num_tokens * 1e3, ref_cpu / shard_cpu);
    }

    fmt::print("\n2) planned on rig '{}' with emulated links (sleeping to modelled time)\n", rig);
    fmt::print("{:>16} {:>16} {:>12} {:>14} {:>14} {:>14}\n", "strategy", "chosen", "tok/s", "link_ms/token",
               "plan_tok/s", "bytes/token");
    for (const char* choice : {"auto", "pipeline", "expert-parallel"}) {
        std::string strategy;
        double predicted = 0;
        ShardLayout layout =
            plan_layout(*model, rig, kContext, int64_t(kPrompt.size()), 32, choice, &strategy, &predicted);
        ShardedModel sharded(
            *model, layout,
            ShardedOptions{
                .context = kContext, .threads_per_card = threads, .emulate_links = true, .sleep_links = true});
        const int n = 32;
        sharded.eval(std::span<const int32_t>(kPrompt));
        const double link_before = sharded.modelled_s();
        size_t bytes_before = 0;
        for (const auto& c : sharded.card_stats()) bytes_before += c.bytes_sent;
        const auto t0 = Clock::now();
        int32_t next = 1;
        for (int i = 0; i < n; ++i) sharded.eval(std::span<const int32_t>(&next, 1));
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        size_t bytes = 0;
        for (const auto& c : sharded.card_stats()) bytes += c.bytes_sent;
        fmt::print("{:>16} {:>16} {:>12.1f} {:>14.3f} {:>14.1f} {:>14.0f}\n", choice, strategy, n / s,
                   (sharded.modelled_s() - link_before) / n * 1e3, predicted, double(bytes - bytes_before) / n);
    }

    fmt::print("\n3) 16-token steps on '{}' (emulated links, modelled link time only): chosen vs layer split\n", rig);
    fmt::print("{:>16} {:>16} {:>14} {:>14}\n", "strategy", "chosen", "link_ms/step", "bytes/step");
    for (const char* choice : {"auto", "pipeline", "expert-parallel", "hybrid"}) {
        std::string strategy;
        ShardLayout layout;
        try {
            layout = plan_layout(*model, rig, kContext, 16, 16, choice, &strategy);
        } catch (const std::exception& e) {
            fmt::print("{:>16} not planned: {}\n", choice, e.what());
            continue;
        }
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext, .emulate_links = true});
        std::vector<int32_t> step(16);
        for (int i = 0; i < 16; ++i) step[i] = 3 + i;
        const int num_steps = 8;
        for (int i = 0; i < num_steps; ++i) sharded.eval(step);
        size_t bytes = 0;
        for (const auto& c : sharded.card_stats()) bytes += c.bytes_sent;
        fmt::print("{:>16} {:>16} {:>14.3f} {:>14.0f}\n", choice, strategy, sharded.modelled_s() / num_steps * 1e3,
                   double(bytes) / num_steps);
    }
    return 0;
}
