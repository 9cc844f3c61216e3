// `moerig run -m model.gguf -p PROMPT -n 64 [sampling flags] [--threads N] [--ctx N] [--json]`: generates text
// on the CPU, streaming it as it comes (whole UTF-8 characters only), then reports prompt and decode speed.
// With --rig R [--plan P] [--spill] [--emulate-links] it runs sharded over the rig's cards as virtual cards
// (and the host, for experts spilled to its RAM) and reports per card memory used vs predicted, busy time and
// bytes moved; with --gpu N too, every card's experts run on GPU N, a virtual card per card. --batch N (or
// -f FILE, one prompt per line) decodes that many sequences together.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kernels/error.h"
#include "runtime/generate.h"
#include "runtime/model.h"
#include "runtime/sharded_run.h"
#include "runtime/tokenizer.h"
#include "runtime/utf8_stream.h"
#include "tools/moerig/command.h"
#ifdef MOERIG_HAVE_CUDA
#include "runtime/cuda/cuda_card_experts.h"
#include "runtime/cuda/cuda_model.h"
#endif

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
    // Sharded execution over virtual cards.
    std::string rig;
    std::string plan;
    bool emulate_links = false;
    bool sleep_links = false;
    bool int8_transfer = false;
    std::string strategy = "auto";
    bool spill = false;
    int threads_per_card = 1;
    int batch = 1;             // sharded: sequences decoded together, each from the prompt
    std::string prompts_file;  // sharded: one prompt per line, one sequence each (instead of -p)
    int gpu = -1;              // >= 0: run the forward pass on this CUDA GPU (runtime/cuda/cuda_model.h)
    std::string kv_type;       // f32 | f16; empty: f32, or a --plan's own type
};

/// --kv-type as a type; nullopt when not given.
std::optional<DType> kv_type_of(const RunArgs& a) {
    if (a.kv_type.empty()) return std::nullopt;
    return runtime::parse_kv_dtype(a.kv_type, "--kv-type");
}

std::string kv_type_name(DType dtype) {
    return dtype == DType::F16 ? "f16" : "f32";
}

/// generate() on CUDA GPU a.gpu: the model's weights uploaded, KV cache and forward pass on the device.
std::vector<int32_t> generate_on_gpu(const runtime::Model& model, int64_t ctx, std::span<const int32_t> prompt,
                                     const RunArgs& a, std::function<bool(int32_t)> on_token,
                                     runtime::GenerateStats* st) {
#ifdef MOERIG_HAVE_CUDA
    runtime::cuda::CudaDevice device(a.gpu, 0);
    const runtime::cuda::CudaModel gpu_model(model, device);
    runtime::cuda::CudaSession session(gpu_model, ctx);
    return runtime::cuda::generate(session, prompt, a.n_predict, a.sampling, std::move(on_token), st);
#else
    (void)model, (void)ctx, (void)prompt, (void)on_token, (void)st;
    MOERIG_THROW(UnsupportedError, "--gpu {}: this moerig was built without CUDA (configure with -DMOERIG_CUDA=ON)",
                 a.gpu);
#endif
}

/// --gpu with --rig or --plan: every card's experts on GPU a.gpu, one virtual card per card.
runtime::CardExpertsFactory gpu_card_experts(const RunArgs& a) {
#ifdef MOERIG_HAVE_CUDA
    return runtime::cuda::cuda_card_experts(runtime::cuda::CudaCardExpertsOptions{.gpu_idx = a.gpu});
#else
    MOERIG_THROW(UnsupportedError,
                 "--gpu {} with --rig/--plan: this moerig was built without CUDA (configure with -DMOERIG_CUDA=ON)",
                 a.gpu);
#endif
}

double per_second(int64_t n, double seconds) {
    return seconds > 0 ? static_cast<double>(n) / seconds : 0.0;
}

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        ++u;
    }
    return fmt::format("{:.1f} {}", b, units[u]);
}

/// The prompts of a batched run: -f's lines (blank lines skipped), else -p.
std::vector<std::string> prompt_texts(const RunArgs& a) {
    if (a.prompts_file.empty()) return {a.prompt};
    std::ifstream in(a.prompts_file);
    MOERIG_CHECK(in, ConfigError, "cannot read the prompts file {}", a.prompts_file);
    std::vector<std::string> texts;
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) texts.push_back(line);
    MOERIG_CHECK(!texts.empty(), ConfigError, "the prompts file {} has no prompt (one per line)", a.prompts_file);
    return texts;
}

int run_sharded(const RunArgs& a, const runtime::Model& model, const std::vector<int32_t>& prompt) {
    runtime::ShardedRunRequest req;
    req.model_path = a.model;
    req.rig = a.rig;
    req.plan_path = a.plan;
    req.prompt = prompt;
    req.batch = a.batch;
    const std::vector<std::string> texts = prompt_texts(a);
    if (!a.prompts_file.empty()) {
        for (const std::string& t : texts) req.prompts.push_back(model.tokenizer().encode(t, true, true));
    }
    req.max_tokens = a.n_predict;
    req.sampler = a.sampling;
    req.context = a.ctx;
    req.threads_per_card = a.threads_per_card;
    req.emulate_links = a.emulate_links || a.sleep_links;
    req.sleep_links = a.sleep_links;
    req.quantize_8bit = a.int8_transfer;
    req.strategy = a.strategy;
    req.allow_host_spill = a.spill;
    req.kv_dtype = kv_type_of(a);
    if (a.gpu >= 0) req.card_experts = gpu_card_experts(a);
    const runtime::ShardedRunResult r = runtime::run_sharded(req);
    const auto& tok = model.tokenizer();
    std::vector<std::string> seq_texts;  // generated text of every sequence
    for (const auto& seq : r.sequences) {
        runtime::Utf8Stream utf8;
        std::string t;
        for (int32_t id : seq) t += utf8.push(tok.token_to_piece(id, false));
        seq_texts.push_back(t + utf8.finish());
    }
    const std::string text = seq_texts.front();
    const size_t num_seqs = r.sequences.size();
    int64_t num_prompt_tokens = 0;
    for (size_t s = 0; s < num_seqs; ++s)
        num_prompt_tokens += static_cast<int64_t>(req.prompts.empty() ? prompt.size() : req.prompts[s].size());
    const double prompt_tps = per_second(num_prompt_tokens, r.prefill_s);
    if (a.json) {
        nlohmann::json cards = nlohmann::json::array();
        for (const auto& c : r.cards) {
            cards.push_back({{"name", c.name},
                             {"host", c.host},
                             {"budget_bytes", c.budget_bytes},
                             {"used_bytes", c.used_bytes},
                             {"peak_bytes", c.peak_bytes},
                             {"weights_bytes", c.weights_bytes},
                             {"kv_bytes", c.kv_bytes},
                             {"predicted_bytes", c.predicted_bytes},
                             {"bytes_sent", c.bytes_sent},
                             {"bytes_received", c.bytes_received},
                             {"busy_s", c.busy_s},
                             {"modelled_link_s", c.modelled_link_s},
                             {"expert_backend_bytes", c.expert_backend_bytes}});
        }
        nlohmann::json j = {{"model", a.model},
                            {"rig", a.rig},
                            {"plan", a.plan},
                            {"strategy", r.strategy},
                            {"kv_type", kv_type_name(r.kv_dtype)},
                            {"prompt_tokens", prompt},
                            {"tokens", r.tokens},
                            {"text", text},
                            {"prompt_tokens_per_s", prompt_tps},
                            {"decode_tokens_per_s", r.decode_tokens_per_s},
                            {"predicted_decode_tokens_per_s", r.predicted_decode_tokens_per_s},
                            {"modelled_link_s", r.modelled_link_s},
                            {"cards", cards}};
        if (num_seqs > 1) {
            j["sequences"] = nlohmann::json::array();
            for (size_t s = 0; s < num_seqs; ++s) {
                j["sequences"].push_back({{"prompt", texts[std::min(s, texts.size() - 1)]},
                                          {"tokens", r.sequences[s]},
                                          {"text", seq_texts[s]}});
            }
        }
        std::puts(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        return 0;
    }
    if (num_seqs == 1) std::printf("%s%s\n", a.prompt.c_str(), text.c_str());
    for (size_t s = 0; num_seqs > 1 && s < num_seqs; ++s) {
        std::printf("[%zu] %s%s\n", s, texts[std::min(s, texts.size() - 1)].c_str(), seq_texts[s].c_str());
    }
    std::printf("\n%-24s %12s %12s %12s %12s %12s %9s\n", "card", "used", "predicted", "budget", "sent", "received",
                "busy_s");
    for (const auto& c : r.cards) {
        std::printf("%-24s %12s %12s %12s %12s %12s %9.3f\n", c.name.c_str(), human_bytes(c.used_bytes).c_str(),
                    human_bytes(c.predicted_bytes).c_str(), human_bytes(c.budget_bytes).c_str(),
                    human_bytes(c.bytes_sent).c_str(), human_bytes(c.bytes_received).c_str(), c.busy_s);
    }
    if (a.gpu >= 0) {
        std::printf("experts on GPU %d (a virtual card per card):", a.gpu);
        for (const auto& c : r.cards)
            if (c.expert_backend_bytes > 0)
                std::printf(" %s %s", c.name.c_str(), human_bytes(static_cast<double>(c.expert_backend_bytes)).c_str());
        std::printf("\n");
    }
    std::printf(
        "strategy %s | %s KV | %zu sequence(s) | prompt %.2f tok/s | decode %.2f tok/s (planner predicts %.2f on "
        "the real cards)%s\n",
        r.strategy.c_str(), kv_type_name(r.kv_dtype).c_str(), num_seqs, prompt_tps, r.decode_tokens_per_s,
        r.predicted_decode_tokens_per_s,
        req.emulate_links ? fmt::format(" | modelled link time {:.3f} s", r.modelled_link_s).c_str() : "");
    return 0;
}

int run_generate(const RunArgs& a) {
    runtime::ModelOptions opts;
    opts.num_threads = a.threads;
    opts.context = a.ctx;
    const auto load_t0 = std::chrono::steady_clock::now();
    const auto model = runtime::Model::load(a.model, opts);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_t0).count();
    const auto& tok = model->tokenizer();
    MOERIG_CHECK(!a.prompt.empty() || !a.prompts_file.empty(), ConfigError,
                 "give a prompt (-p) or a prompts file (-f)");
    MOERIG_CHECK((a.batch == 1 && a.prompts_file.empty()) || !a.rig.empty() || !a.plan.empty(), ConfigError,
                 "--batch and -f run several sequences sharded: give --rig or --plan too");
    const std::vector<int32_t> prompt =
        tok.encode(a.prompts_file.empty() ? a.prompt : prompt_texts(a).front(), true, true);
    MOERIG_CHECK(!prompt.empty(), ConfigError, "the prompt is empty after tokenization");
    const int64_t ctx = a.ctx;
    MOERIG_CHECK(static_cast<int64_t>(prompt.size()) < ctx, ConfigError,
                 "the prompt has {} tokens but the context is {} (--ctx)", prompt.size(), ctx);
    const std::optional<DType> kv_type = kv_type_of(a);  // refuses an unknown type before anything runs
    MOERIG_CHECK(a.gpu < 0 || !a.rig.empty() || !a.plan.empty() || kv_type.value_or(DType::F32) == DType::F32,
                 ConfigError, "--kv-type {}: the GPU session keeps an f32 KV cache", a.kv_type);
    if (!a.rig.empty() || !a.plan.empty()) return run_sharded(a, *model, prompt);
    const DType kv_dtype = kv_type.value_or(DType::F32);
    runtime::Session session(*model, ctx, nullptr,
                             runtime::KvOptions{.dtype = kv_dtype, .max_step_rows = runtime::kSessionStepRows});

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
    const auto tokens = a.gpu >= 0 ? generate_on_gpu(*model, ctx, prompt, a, on_token, &st)
                                   : runtime::generate(session, prompt, a.n_predict, a.sampling, on_token, &st);
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
                                  {"kv_type", kv_type_name(kv_dtype)},
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
        sub.add_option("-m,--model", a->model,
                       "GGUF model file (first part of a split model), or a Hugging Face checkpoint directory "
                       "(config.json + *.safetensors)")
            ->required()
            ->check(CLI::ExistingPath);
        sub.add_option("-p,--prompt", a->prompt, "prompt text (required unless -f)");
        sub.add_option("-f,--prompts-file", a->prompts_file, "sharded: one prompt per line, decoded together")
            ->check(CLI::ExistingFile);
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
        sub.add_option("--rig", a->rig, "run sharded over this rig's cards as virtual cards (name or .yaml)");
        sub.add_option("--plan", a->plan, "run sharded with this plan (from `moerig plan --out`) instead of planning");
        sub.add_flag("--emulate-links", a->emulate_links, "model each card's PCIe link (gen x lanes, P2P or staged)");
        sub.add_flag("--sleep-links", a->sleep_links, "with link emulation, let wall-clock time include link time");
        sub.add_flag("--int8-transfer", a->int8_transfer, "send hidden states between cards as int8 + per-row scale");
        sub.add_option("--strategy", a->strategy, "when planning: auto | pipeline | expert-parallel | hybrid")
            ->capture_default_str()
            ->check(CLI::IsMember({"auto", "pipeline", "expert-parallel", "hybrid"}));
        sub.add_flag("--spill", a->spill,
                     "when planning: keep cold experts in host RAM (run on the CPU) when the cards cannot hold them");
        sub.add_option("--batch", a->batch, "sharded: sequences of the prompt decoded together")
            ->capture_default_str()
            ->check(CLI::PositiveNumber);
        sub.add_option("--kv-type", a->kv_type,
                       "KV cache type: f32 | f16 (half the memory). Default f32; with --plan, the plan's type");
        sub.add_option("--gpu", a->gpu,
                       "run on this CUDA GPU (index; CUDA builds); with --rig/--plan, every card's experts run on it "
                       "as virtual cards")
            ->check(CLI::NonNegativeNumber);
        sub.add_option("--threads-per-card", a->threads_per_card, "CPU threads per virtual card")
            ->capture_default_str()
            ->check(CLI::PositiveNumber);
        return [a] { return run_generate(*a); };
    },
    30);

}  // namespace
}  // namespace moerig::cli
