// `moerig run -m model.gguf -p PROMPT -n 64 [sampling flags] [--threads N] [--ctx N] [--json]`: generates text
// on the CPU, streaming it as it comes (whole UTF-8 characters only), then reports prompt and decode speed.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/error.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
namespace {

struct RunArgs {
    std::string model;
    std::string prompt;
    int n_predict = 64;
    runtime::SamplerParams sampling;
    int threads = 0;
    int64_t ctx = 4096;
    bool json = false;
};

double per_second(int64_t n, double seconds) { return seconds > 0 ? static_cast<double>(n) / seconds : 0.0; }

int run_generate(const RunArgs& a) {
    runtime::ModelOptions opts;
    opts.num_threads = a.threads;
    opts.context = a.ctx;
    const auto load_t0 = std::chrono::steady_clock::now();
    const auto model = runtime::Model::load(a.model, opts);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_t0).count();
    const auto& tok = model->tokenizer();
    const std::vector<int32_t> prompt = tok.encode(a.prompt, true, true);
    MOERIG_CHECK(!prompt.empty(), ConfigError, "the prompt is empty after tokenization");
    const int64_t ctx = a.ctx;
    MOERIG_CHECK(static_cast<int64_t>(prompt.size()) < ctx, ConfigError,
                 "the prompt has {} tokens but the context is {} (--ctx)", prompt.size(), ctx);
    runtime::Session session(*model, ctx);

    runtime::Utf8Stream utf8;
    std::string text;
    if (!a.json) {
        std::fputs(a.prompt.c_str(), stdout);
        std::fflush(stdout);
    }
    auto on_token = [&](int32_t id) {
        const std::string out = utf8.push(tok.token_to_piece(id, false));
        text += out;
        if (!a.json && !out.empty()) {
            std::fputs(out.c_str(), stdout);
            std::fflush(stdout);
        }
        return true;
    };
    runtime::GenerateStats st;
    const auto tokens = runtime::generate(session, prompt, a.n_predict, a.sampling, on_token, &st);
    const std::string tail = utf8.finish();
    text += tail;
    const double prompt_tps = per_second(st.prompt_tokens, st.prompt_seconds);
    const double decode_tps = per_second(st.decode_evals, st.decode_seconds);
    if (a.json) {
        const nlohmann::json j = {{"model", a.model},
                                  {"prompt_tokens", prompt},
                                  {"tokens", tokens},
                                  {"text", text},
                                  {"load_s", load_s},
                                  {"prompt_tokens_per_s", prompt_tps},
                                  {"decode_tokens_per_s", decode_tps},
                                  {"threads", model->pool().num_threads()}};
        std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    std::fputs(tail.c_str(), stdout);
    std::fputs("\n", stdout);
    std::fprintf(stderr, "prompt: %lld tokens, %.2f tok/s | generation: %zu tokens, %.2f tok/s | %d threads\n",
                 static_cast<long long>(st.prompt_tokens), prompt_tps, tokens.size(), decode_tps,
                 model->pool().num_threads());
    return 0;
}

const Registrar kRun(
    "run", "generate text with a model on the CPU",
    [](CLI::App& sub) {
        auto a = std::make_shared<RunArgs>();
        sub.add_option("-m,--model", a->model, "GGUF model file (first part of a split model)")
            ->required()
            ->check(CLI::ExistingFile);
        sub.add_option("-p,--prompt", a->prompt, "prompt text")->required();
        sub.add_option("-n,--n-predict", a->n_predict, "tokens to generate")->capture_default_str();
        sub.add_option("--temp", a->sampling.temp, "temperature (<= 0: greedy)")->capture_default_str();
        sub.add_option("--top-k", a->sampling.top_k, "top-k (<= 0: off)")->capture_default_str();
        sub.add_option("--top-p", a->sampling.top_p, "top-p (1: off)")->capture_default_str();
        sub.add_option("--min-p", a->sampling.min_p, "min-p (0: off)")->capture_default_str();
        sub.add_option("--repeat-penalty", a->sampling.repeat_penalty, "repetition penalty (1: off)")
            ->capture_default_str();
        sub.add_option("--repeat-last-n", a->sampling.repeat_last_n, "tokens the penalty looks back at")
            ->capture_default_str();
        sub.add_option("--seed", a->sampling.seed, "sampling seed")->capture_default_str();
        sub.add_option("-t,--threads", a->threads, "CPU threads (0: all cores)")->capture_default_str();
        sub.add_option("-c,--ctx", a->ctx, "context size in tokens")->capture_default_str()->check(CLI::PositiveNumber);
        sub.add_flag("--json", a->json, "print one JSON object instead of streaming text");
        return [a] { return run_generate(*a); };
    },
    30);

}  // namespace
}  // namespace moerig::cli
