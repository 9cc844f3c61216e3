// `moerig bench`: prompt (prefill) and decode speed of the CPU engine on one GGUF model, measured the way
// tools/bench_vs_llamacpp.py measures llama.cpp: a fresh sequence, one batch of -p tokens, then -n single-token
// decode steps feeding back the argmax. Prints tokens/s (median of --reps runs after one warm-up), or --json.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "kernels/error.h"
#include "runtime/model.h"
#include "runtime/session.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
namespace {

struct BenchArgs {
    std::string model;
    int prompt_tokens = 128;
    int decode_tokens = 64;
    int threads = 0;
    int reps = 3;
    uint64_t seed = 1;
    bool json = false;
};

struct RunTimes {
    double prompt_seconds = 0;
    double decode_seconds = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

RunTimes run_once(const runtime::Model& model, const std::vector<int32_t>& prompt, int decode_tokens) {
    runtime::Session session(model, static_cast<int64_t>(prompt.size()) + decode_tokens + 1);
    RunTimes t;
    auto t0 = std::chrono::steady_clock::now();
    std::vector<float> logits = session.eval(prompt);
    t.prompt_seconds = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < decode_tokens; ++i) {
        const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        logits = session.eval(std::span<const int32_t>(&next, 1));
    }
    t.decode_seconds = seconds_since(t0);
    return t;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run_bench(const BenchArgs& a) {
    MOERIG_CHECK(a.prompt_tokens > 0 && a.decode_tokens >= 0 && a.reps > 0, ConfigError,
                 "bench: -p must be > 0, -n >= 0 and --reps > 0 (got -p {} -n {} --reps {})", a.prompt_tokens,
                 a.decode_tokens, a.reps);
    runtime::ModelOptions opts;
    opts.num_threads = a.threads;
    opts.context = a.prompt_tokens + a.decode_tokens + 1;
    opts.progress = false;
    auto t0 = std::chrono::steady_clock::now();
    auto model = runtime::Model::load(a.model, opts);
    const double load_seconds = seconds_since(t0);
    const auto& hp = model->hparams();

    // Random ids below n_vocab, the same for every run (the content does not change the work done).
    std::mt19937_64 rng(a.seed);
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(hp.n_vocab - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(a.prompt_tokens));
    for (auto& t : prompt) t = pick(rng);

    run_once(*model, prompt, std::min(a.decode_tokens, 4));  // warm-up: page in the weights, grow the scratch
    std::vector<double> pp, tg;
    for (int r = 0; r < a.reps; ++r) {
        const RunTimes t = run_once(*model, prompt, a.decode_tokens);
        pp.push_back(a.prompt_tokens / t.prompt_seconds);
        if (a.decode_tokens > 0) tg.push_back(a.decode_tokens / t.decode_seconds);
    }
    const double prompt_tps = median(pp);
    const double decode_tps = tg.empty() ? 0.0 : median(tg);
    const int threads = model->pool().num_threads();
    if (a.json) {
        nlohmann::json j = {{"model", a.model},
                            {"arch", hp.arch_name},
                            {"threads", threads},
                            {"prompt_tokens", a.prompt_tokens},
                            {"decode_tokens", a.decode_tokens},
                            {"reps", a.reps},
                            {"load_seconds", load_seconds},
                            {"prompt_tps", prompt_tps},
                            {"decode_tps", decode_tps},
                            {"prompt_tps_runs", pp},
                            {"decode_tps_runs", tg}};
        std::printf("%s\n", j.dump(1).c_str());
    } else {
        std::printf("model   %s (%s, %lld layers, %lld experts, %d threads), loaded in %.2f s\n", a.model.c_str(),
                    hp.arch_name.c_str(), static_cast<long long>(hp.n_layer), static_cast<long long>(hp.n_expert),
                    threads, load_seconds);
        std::printf("prompt  %5d tokens  %9.2f tokens/s  (median of %d)\n", a.prompt_tokens, prompt_tps, a.reps);
        std::printf("decode  %5d tokens  %9.2f tokens/s  (median of %d)\n", a.decode_tokens, decode_tps, a.reps);
    }
    return 0;
}

const Registrar kBench(
    "bench", "measure prompt and decode tokens/s of the CPU engine on a GGUF model",
    [](CLI::App& sub) -> std::function<int()> {
        auto a = std::make_shared<BenchArgs>();
        sub.add_option("-m,--model", a->model, "GGUF model file")->required()->check(CLI::ExistingFile);
        sub.add_option("-p,--prompt", a->prompt_tokens, "prompt tokens evaluated as one batch")->capture_default_str();
        sub.add_option("-n,--decode", a->decode_tokens, "tokens decoded one at a time after the prompt")
            ->capture_default_str();
        sub.add_option("-t,--threads", a->threads, "CPU threads (0 = all cores)")->capture_default_str();
        sub.add_option("-r,--reps", a->reps, "timed repetitions (the median is reported)")->capture_default_str();
        sub.add_option("--seed", a->seed, "seed of the random prompt")->capture_default_str();
        sub.add_flag("--json", a->json, "print JSON");
        return [a] { return run_bench(*a); };
    },
    60);

}  // namespace
}  // namespace moerig::cli
