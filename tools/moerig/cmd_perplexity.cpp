// `moerig perplexity -m model.gguf -f text.txt -c N [--chunks K] [--json]`: perplexity of a text file by
// llama.cpp's perplexity-tool method (runtime/perplexity.h), to compare engines and quantisations.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "kernels/error.h"
#include "runtime/model.h"
#include "runtime/perplexity.h"
#include "runtime/tokenizer.h"
#include "tools/moerig/command.h"

namespace moerig::cli {
namespace {

struct PerplexityArgs {
    std::string model;
    std::string file;
    int64_t ctx = 512;
    int64_t chunks = 0;
    int threads = 0;
    bool json = false;
};

int run_perplexity(const PerplexityArgs& a) {
    std::ifstream in(a.file, std::ios::binary);
    MOERIG_CHECK(in, ConfigError, "{}: cannot read the text file", a.file);
    std::stringstream ss;
    ss << in.rdbuf();
    runtime::ModelOptions opts;
    opts.num_threads = a.threads;
    opts.context = a.ctx;
    const auto model = runtime::Model::load(a.model, opts);
    std::vector<int32_t> tokens = model->tokenizer().encode(ss.str(), true, false);
    if (a.chunks > 0 && static_cast<int64_t>(tokens.size()) > a.chunks * a.ctx) {
        tokens.resize(static_cast<size_t>(a.chunks * a.ctx));
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto r = runtime::perplexity(*model, tokens, a.ctx, nullptr);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double tps = secs > 0 ? static_cast<double>(r.chunk_ppl.size()) * static_cast<double>(a.ctx) / secs : 0;
    if (a.json) {
        const nlohmann::json j = {{"model", a.model},           {"file", a.file},     {"ctx", a.ctx},
                                  {"tokens", tokens.size()},    {"ppl", r.ppl},       {"chunk_ppl", r.chunk_ppl},
                                  {"num_scored", r.num_scored}, {"tokens_per_s", tps}};
        std::puts(j.dump().c_str());
        return 0;
    }
    for (size_t c = 0; c < r.chunk_ppl.size(); ++c) std::printf("[%zu]%.4f ", c + 1, r.chunk_ppl[c]);
    std::printf("\nppl = %.4f over %lld scored tokens (%zu chunks of %lld), %.1f tok/s\n", r.ppl,
                static_cast<long long>(r.num_scored), r.chunk_ppl.size(), static_cast<long long>(a.ctx), tps);
    return 0;
}

const Registrar kPerplexity(
    "perplexity", "perplexity of a text file (llama.cpp's method), on the CPU",
    [](CLI::App& sub) {
        auto a = std::make_shared<PerplexityArgs>();
        sub.add_option("-m,--model", a->model, "GGUF model file")->required()->check(CLI::ExistingFile);
        sub.add_option("-f,--file", a->file, "text file")->required()->check(CLI::ExistingFile);
        sub.add_option("-c,--ctx", a->ctx, "chunk size in tokens")
            ->capture_default_str()
            ->check(CLI::Range(4, 1 << 20));
        sub.add_option("--chunks", a->chunks, "score at most this many chunks (0: all)")->capture_default_str();
        sub.add_option("-t,--threads", a->threads, "CPU threads (0: all cores)")->capture_default_str();
        sub.add_flag("--json", a->json, "print one JSON object");
        return [a] { return run_perplexity(*a); };
    },
    31);

}  // namespace
}  // namespace moerig::cli
