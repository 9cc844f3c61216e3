// Benchmark of the sharded executor. Part 1: decode tokens/s on 4 virtual cards (pipeline and expert
// parallel) vs the one-card session with the same threads per card (target >= 0.9). Part 2: a planned
// layout on a rig with emulated links: link time per token as modelled vs measured wall time and the
// planner's prediction. Part 3: the planner's chosen strategy vs a pure layer split, 16-token steps.
// Validates once (sharded greedy tokens == one-card tokens) before timing.
// Usage: bench_sharded [model.gguf] [threads_per_card=1] [rig=p106-8x-gen1x1]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "runtime/sharded_executor.h"
#include "runtime/sharded_run.h"

using namespace moerig::runtime;

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kContext = 256;
const std::vector<int32_t> kPrompt = {1, 17, 230, 45, 9, 301, 77, 12};

/// Greedy decode of num_tokens after the prompt; returns the tokens and the decode seconds.
template <class Eval>
std::pair<std::vector<int32_t>, double> decode(Eval&& eval, int num_tokens) {
    std::vector<int32_t> out;
    std::vector<float> logits = eval(std::span<const int32_t>(kPrompt));
    const auto t0 = Clock::now();
    for (int i = 0; i < num_tokens; ++i) {
        const auto next = static_cast<int32_t>(moerig::kernels::argmax(logits.data(), int64_t(logits.size())));
        out.push_back(next);
        logits = eval(std::span<const int32_t>(&next, 1));
    }
    return {out, std::chrono::duration<double>(Clock::now() - t0).count()};
}

}  // namespace

int main(int argc, char** argv) {
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
    Session session(*model, kContext);
    auto [ref_tokens, ref_s] = decode([&](std::span<const int32_t> t) { return session.eval(t); }, num_tokens);
    for (int rep = 0; rep < 2; ++rep) {
        session.reset();
        ref_s = std::min(ref_s, decode([&](std::span<const int32_t> t) { return session.eval(t); }, num_tokens).second);
    }
    const double ref_tps = num_tokens / ref_s;
    fmt::print("\n1) decode, {} tokens\n{:>22} {:>10} {:>10}\n{:>22} {:>10.1f} {:>10}\n", num_tokens, "layout", "tok/s",
               "vs_1card", "1 card (session)", ref_tps, "1.00");
    const size_t budget = size_t{1} << 30;
    const std::pair<const char*, ShardLayout> layouts[] = {
        {"pipeline x4", ShardLayout::pipeline(hp, 4, budget)},
        {"expert_parallel x4", ShardLayout::expert_parallel(hp, 4, budget)},
        {"hybrid 2x2", ShardLayout::hybrid(hp, 4, 2, budget)},
    };
    for (const auto& [name, layout] : layouts) {
        ShardedModel sharded(*model, layout, ShardedOptions{.context = kContext, .threads_per_card = threads});
        auto [tokens, s] = decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens);
        if (tokens != ref_tokens) {
            fmt::print(stderr, "validation failed: {} generated other tokens than one card\n", name);
            return 1;
        }
        for (int rep = 0; rep < 2; ++rep) {
            sharded.reset();
            s = std::min(s, decode([&](std::span<const int32_t> t) { return sharded.eval(t); }, num_tokens).second);
        }
        fmt::print("{:>22} {:>10.1f} {:>10.2f}\n", name, num_tokens / s, (num_tokens / s) / ref_tps);
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
        const double link_before = sharded.modelled_link_s();
        size_t bytes_before = 0;
        for (const auto& c : sharded.card_stats()) bytes_before += c.bytes_sent;
        const auto t0 = Clock::now();
        int32_t next = 1;
        for (int i = 0; i < n; ++i) sharded.eval(std::span<const int32_t>(&next, 1));
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        size_t bytes = 0;
        for (const auto& c : sharded.card_stats()) bytes += c.bytes_sent;
        fmt::print("{:>16} {:>16} {:>12.1f} {:>14.3f} {:>14.1f} {:>14.0f}\n", choice, strategy, n / s,
                   (sharded.modelled_link_s() - link_before) / n * 1e3, predicted, double(bytes - bytes_before) / n);
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
        fmt::print("{:>16} {:>16} {:>14.3f} {:>14.0f}\n", choice, strategy, sharded.modelled_link_s() / num_steps * 1e3,
                   double(bytes) / num_steps);
    }
    return 0;
}
