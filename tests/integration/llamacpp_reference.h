// Reads the llama.cpp reference outputs that tools/make_fixtures.py writes next to each fixture model
// (tests/data/models/<name>.json + <name>.logits.bin) and compares logits the way ggml's test-backend-ops does:
// normalised mean squared error, after a finiteness check.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "kernels/error.h"

namespace moerig::testing {

/// One prompt's expectations: llama.cpp's token ids, last-position logits and 32-token greedy continuation;
/// for the first prompt also the teacher-forced run over prompt + greedy[:-1] (top-1 per position, and all
/// logits where the model is not F32).
struct ReferencePrompt {
    std::string text;
    std::vector<int32_t> tokens;
    std::span<const float> last_logits;
    std::vector<int32_t> greedy;
    double greedy_min_margin = 0;
    std::vector<int32_t> teacher_tokens;
    std::vector<int32_t> teacher_top1;
    std::span<const float> teacher_logits;  // empty when not stored
};

struct ReferencePerplexity {
    int64_t n_ctx = 0;
    std::vector<int32_t> tokens;
    int64_t num_chunks = 0;
    int64_t num_scored = 0;
    double ppl = 0;
    std::vector<double> chunk_ppl;
};

/// Everything llama.cpp produced for one fixture model, and the tolerances its JSON states.
struct LlamaCppReference {
    std::string name;        // file stem, e.g. "qwen3moe-f32"
    std::string model_path;  // absolute .gguf path
    std::string arch;
    bool exact = true;  // F32/F16/BF16 weights: greedy must match token for token
    int64_t n_vocab = 0;
    bool add_bos = false;
    double last_logits_nmse_max = 1e-5;
    double teacher_top1_min = 0.95;
    double ppl_rel_tol = 0.005;
    std::vector<ReferencePrompt> prompts;
    ReferencePerplexity perplexity;
    std::vector<float> logits;  // backing store of the spans above

    static LlamaCppReference load(const std::filesystem::path& json_path) {
        std::ifstream in(json_path);
        MOERIG_CHECK(in.good(), FormatError, "cannot open reference {}", json_path.string());
        const nlohmann::json j = nlohmann::json::parse(in);
        LlamaCppReference r;
        const auto dir = json_path.parent_path();
        r.name = json_path.stem().string();
        r.model_path = (dir / j.at("model").get<std::string>()).string();
        r.arch = j.at("arch").get<std::string>();
        r.n_vocab = j.at("n_vocab").get<int64_t>();
        r.add_bos = j.at("add_bos").get<bool>();
        const auto& check = j.at("check");
        r.exact = check.at("kind").get<std::string>() == "exact";
        r.last_logits_nmse_max = check.at("last_logits_nmse_max").get<double>();
        r.teacher_top1_min = check.at("teacher_forced_top1_min").get<double>();
        r.ppl_rel_tol = check.at("ppl_rel_tol").get<double>();

        const auto bin = dir / j.at("logits_file").get<std::string>();
        const auto num_floats = std::filesystem::file_size(bin) / sizeof(float);
        r.logits.resize(num_floats);
        std::ifstream lf(bin, std::ios::binary);
        lf.read(reinterpret_cast<char*>(r.logits.data()), static_cast<std::streamsize>(num_floats * sizeof(float)));
        MOERIG_CHECK(lf.good(), FormatError, "short read of {}", bin.string());

        auto slice = [&](const nlohmann::json& offset, int64_t count) {
            const auto off = offset.get<size_t>();
            MOERIG_CHECK(off + static_cast<size_t>(count) <= r.logits.size(), FormatError,
                         "{}: logits offset {} + {} past {}", json_path.string(), off, count, r.logits.size());
            return std::span<const float>(r.logits.data() + off, static_cast<size_t>(count));
        };
        for (const auto& p : j.at("prompts")) {
            ReferencePrompt rp;
            rp.text = p.at("text").get<std::string>();
            rp.tokens = p.at("tokens").get<std::vector<int32_t>>();
            rp.last_logits = slice(p.at("last_logits_offset"), r.n_vocab);
            rp.greedy = p.at("greedy").get<std::vector<int32_t>>();
            rp.greedy_min_margin = p.at("greedy_min_margin").get<double>();
            if (p.contains("teacher_forced")) {
                const auto& tf = p.at("teacher_forced");
                rp.teacher_tokens = tf.at("tokens").get<std::vector<int32_t>>();
                rp.teacher_top1 = tf.at("top1").get<std::vector<int32_t>>();
                if (tf.contains("logits_offset")) {
                    rp.teacher_logits =
                        slice(tf.at("logits_offset"), static_cast<int64_t>(rp.teacher_tokens.size()) * r.n_vocab);
                }
            }
            r.prompts.push_back(std::move(rp));
        }
        const auto& pp = j.at("perplexity");
        r.perplexity.n_ctx = pp.at("n_ctx").get<int64_t>();
        r.perplexity.tokens = pp.at("tokens").get<std::vector<int32_t>>();
        r.perplexity.num_chunks = pp.at("n_chunks").get<int64_t>();
        r.perplexity.num_scored = pp.at("num_scored").get<int64_t>();
        r.perplexity.ppl = pp.at("ppl").get<double>();
        r.perplexity.chunk_ppl = pp.at("chunk_ppl").get<std::vector<double>>();
        return r;
    }
};

/// sum((a-b)^2) / sum(b^2), b the reference; +inf when a has a non-finite value or the sizes differ.
inline double nmse(std::span<const float> a, std::span<const float> ref) {
    if (a.size() != ref.size()) return INFINITY;
    double err = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (!std::isfinite(a[i])) return INFINITY;
        const double d = double(a[i]) - double(ref[i]);
        err += d * d;
        norm += double(ref[i]) * double(ref[i]);
    }
    return err / std::max(norm, 1e-30);
}

inline int32_t argmax(std::span<const float> row) {
    return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

/// The reference JSON files under dir, sorted by name.
inline std::vector<std::filesystem::path> reference_files(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> out;
    if (!std::filesystem::is_directory(dir)) return out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (e.path().extension() == ".json") out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace moerig::testing
