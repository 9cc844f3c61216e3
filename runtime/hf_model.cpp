// Hugging Face checkpoint import: config.json -> GGUF metadata (llama.cpp's keys, as its converter writes
// them), safetensors tensors -> GGUF names with their data in place. Field names and defaults per model_type
// follow transformers' configuration classes; the MoE semantics that differ from llama.cpp's graphs
// (norm_topk_prob, unpermuted q/k, DeepSeek-V2's scaling only without renormalisation) become moerig.* keys
// or the values of the GGUF keys that express them.
#include "runtime/hf_model.h"

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/error.h"
#include "sharding/json_fields.h"

namespace moerig::runtime {

namespace {

namespace fs = std::filesystem;
using formats::GgufTensor;
using formats::GgufType;
using formats::GgufValue;
using nlohmann::json;
using sharding::JsonFields;

// A JSON file whose top level must be an object (config.json, generation_config.json).
JsonFields read_json_object(const fs::path& path) {
    const std::string label = path.string();
    json j = sharding::parse_json(sharding::read_text_file(path), label);
    MOERIG_CHECK(j.is_object(), ConfigError, "{}: expected a JSON object at the top level", label);
    return JsonFields(std::move(j), label);
}

GgufValue v_u64(int64_t x) {
    GgufValue v;
    v.type = GgufType::U64;
    v.u = static_cast<uint64_t>(x);
    v.i = x;
    return v;
}
GgufValue v_f32(double x) {
    GgufValue v;
    v.type = GgufType::F32;
    v.f = x;
    return v;
}
GgufValue v_bool(bool x) {
    GgufValue v;
    v.type = GgufType::BOOL;
    v.u = x ? 1 : 0;
    v.i = x ? 1 : 0;
    return v;
}
GgufValue v_str(std::string x) {
    GgufValue v;
    v.type = GgufType::STRING;
    v.s = std::move(x);
    return v;
}

enum class Family { kMixtral, kQwen2Moe, kQwen3Moe, kOlmoe, kDeepseekV2, kDeepseekV3 };

/// A layer-relative name pair; '#' stands for the expert index.
struct NamePair {
    std::string hf;
    std::string gguf;
};

/// Matches `name` against `pattern` ('#' = a decimal number); returns the number (or "" without '#').
std::optional<std::string> match(const std::string& pattern, const std::string& name) {
    const size_t hash = pattern.find('#');
    if (hash == std::string::npos) return pattern == name ? std::optional<std::string>("") : std::nullopt;
    const std::string pre = pattern.substr(0, hash), post = pattern.substr(hash + 1);
    if (name.size() <= pre.size() + post.size() || !name.starts_with(pre) || !name.ends_with(post)) return std::nullopt;
    const std::string mid = name.substr(pre.size(), name.size() - pre.size() - post.size());
    for (char c : mid)
        if (c < '0' || c > '9') return std::nullopt;
    return mid;
}

std::string substitute(const std::string& pattern, const std::string& num) {
    const size_t hash = pattern.find('#');
    return hash == std::string::npos ? pattern : pattern.substr(0, hash) + num + pattern.substr(hash + 1);
}

std::vector<NamePair> layer_names(Family f) {
    std::vector<NamePair> p = {
        {"input_layernorm.weight", "attn_norm.weight"},
        {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.o_proj.bias", "attn_output.bias"},
    };
    for (const char* w : {"weight", "bias"}) {
        for (const auto& [hf, gg] : {std::pair{"q_proj", "attn_q"}, {"k_proj", "attn_k"}, {"v_proj", "attn_v"}})
            p.push_back({fmt::format("self_attn.{}.{}", hf, w), fmt::format("{}.{}", gg, w)});
    }
    p.push_back({"self_attn.q_norm.weight", "attn_q_norm.weight"});
    p.push_back({"self_attn.k_norm.weight", "attn_k_norm.weight"});
    if (f == Family::kMixtral) {
        p.push_back({"block_sparse_moe.gate.weight", "ffn_gate_inp.weight"});
        p.push_back({"block_sparse_moe.experts.#.w1.weight", "ffn_gate.#.weight"});
        p.push_back({"block_sparse_moe.experts.#.w3.weight", "ffn_up.#.weight"});
        p.push_back({"block_sparse_moe.experts.#.w2.weight", "ffn_down.#.weight"});
        return p;
    }
    p.push_back({"mlp.gate.weight", "ffn_gate_inp.weight"});
    for (const char* proj : {"gate", "up", "down"}) {
        p.push_back({fmt::format("mlp.experts.#.{}_proj.weight", proj), fmt::format("ffn_{}.#.weight", proj)});
        p.push_back({fmt::format("mlp.{}_proj.weight", proj), fmt::format("ffn_{}.weight", proj)});
    }
    if (f == Family::kQwen2Moe) {
        for (const char* proj : {"gate", "up", "down"})
            p.push_back(
                {fmt::format("mlp.shared_expert.{}_proj.weight", proj), fmt::format("ffn_{}_shexp.weight", proj)});
        p.push_back({"mlp.shared_expert_gate.weight", "ffn_gate_inp_shexp.weight"});
    }
    if (f == Family::kDeepseekV2 || f == Family::kDeepseekV3) {
        for (const char* proj : {"gate", "up", "down"}) {
            p.push_back(
                {fmt::format("mlp.shared_experts.{}_proj.weight", proj), fmt::format("ffn_{}_shexp.weight", proj)});
        }
        p.push_back({"mlp.gate.e_score_correction_bias", "exp_probs_b.bias"});
        p.push_back({"self_attn.q_a_proj.weight", "attn_q_a.weight"});
        p.push_back({"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"});
        p.push_back({"self_attn.q_b_proj.weight", "attn_q_b.weight"});
        p.push_back({"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"});
        p.push_back({"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"});
        p.push_back({"self_attn.kv_b_proj.weight", "attn_kv_b.weight"});
    }
    return p;
}

/// Maps "model.layers.N.<rest>" (and the global tensors) between Hugging Face and GGUF names.
class NameMap {
  public:
    NameMap(Family f, bool tied) : pairs_(layer_names(f)), tied_(tied) {}

    /// The GGUF name of a checkpoint tensor, nullopt for tensors the engine does not use (rotary buffers, MTP
    /// layers past n_layer, a tied lm_head).
    std::optional<std::string> to_gguf(const std::string& hf, int64_t n_layer) const {
        if (hf == "model.embed_tokens.weight") return "token_embd.weight";
        if (hf == "model.norm.weight") return "output_norm.weight";
        if (hf == "lm_head.weight") return tied_ ? std::nullopt : std::optional<std::string>("output.weight");
        const std::string prefix = "model.layers.";
        if (!hf.starts_with(prefix)) return std::nullopt;
        const size_t dot = hf.find('.', prefix.size());
        if (dot == std::string::npos) return std::nullopt;
        const std::string layer = hf.substr(prefix.size(), dot - prefix.size());
        if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos || layer.size() > 6)
            return std::nullopt;
        if (std::stoll(layer) >= n_layer) return std::nullopt;
        const std::string rest = hf.substr(dot + 1);
        for (const auto& p : pairs_) {
            if (auto num = match(p.hf, rest)) return "blk." + layer + "." + substitute(p.gguf, *num);
        }
        return std::nullopt;
    }

    /// The checkpoint name a GGUF tensor name stands for (messages about missing or mis-shaped tensors).
    std::string to_hf(const std::string& gguf) const {
        if (gguf == "token_embd.weight") return "model.embed_tokens.weight";
        if (gguf == "output_norm.weight") return "model.norm.weight";
        if (gguf == "output.weight") return "lm_head.weight";
        if (!gguf.starts_with("blk.")) return gguf;
        const size_t dot = gguf.find('.', 4);
        if (dot == std::string::npos) return gguf;
        const std::string layer = gguf.substr(4, dot - 4), rest = gguf.substr(dot + 1);
        for (const auto& p : pairs_) {
            if (auto num = match(p.gguf, rest)) return "model.layers." + layer + "." + substitute(p.hf, *num);
        }
        return gguf;
    }

  private:
    std::vector<NamePair> pairs_;
    bool tied_;
};

Family parse_family(const JsonFields& c, std::string& gguf_arch) {
    const std::string mt = c.str("model_type");
    static const std::map<std::string, std::pair<Family, const char*>> kFamilies = {
        {"mixtral", {Family::kMixtral, "llama"}},
        {"qwen2_moe", {Family::kQwen2Moe, "qwen2moe"}},
        {"qwen3_moe", {Family::kQwen3Moe, "qwen3moe"}},
        {"olmoe", {Family::kOlmoe, "olmoe"}},
        {"deepseek_v2", {Family::kDeepseekV2, "deepseek2"}},
        {"deepseek_v3", {Family::kDeepseekV3, "deepseek2"}},
    };
    auto it = kFamilies.find(mt);
    if (it == kFamilies.end()) {
        MOERIG_CHECK(mt != "gpt_oss", UnsupportedError,
                     "{}: model_type 'gpt_oss' is not supported yet for Hugging Face checkpoints (its experts are "
                     "stored transposed and gate/up interleaved); use a GGUF conversion",
                     c.label());
        MOERIG_THROW(UnsupportedError, "{}: field 'model_type' is '{}', which is not supported; supported: {}",
                     c.label(), mt, supported_hf_model_types());
    }
    gguf_arch = it->second.second;
    return it->second.first;
}

/// Quantised checkpoints: DeepSeek's FP8 block scales and gpt-oss's MXFP4 are recognised and refused.
void check_quantization(const JsonFields& c) {
    if (!c.has("quantization_config")) return;
    const auto& q = c.raw("quantization_config");
    const std::string method = q.is_object() && q.contains("quant_method") && q["quant_method"].is_string()
                                   ? q["quant_method"].get<std::string>()
                                   : q.dump();
    MOERIG_THROW(UnsupportedError,
                 "{}: field 'quantization_config.quant_method' is '{}': quantised Hugging Face checkpoints (FP8 block "
                 "scales, MXFP4) are not supported yet; use a BF16/F16/F32 checkpoint or a GGUF conversion",
                 c.label(), method);
}

void read_rope_scaling(const JsonFields& c, Family f, const std::string& a, std::map<std::string, GgufValue>& kv) {
    if (!c.has("rope_scaling")) return;
    const auto& rs = c.raw("rope_scaling");
    MOERIG_CHECK(rs.is_object(), ConfigError, "{}: field 'rope_scaling' must be an object or null, got {}", c.label(),
                 rs.dump());
    const JsonFields r(rs, c.label() + " (rope_scaling)");
    const std::string type = r.has("rope_type") ? r.str("rope_type") : r.str("type", "default");
    if (type == "default") return;
    MOERIG_CHECK(type == "linear" || type == "yarn", UnsupportedError,
                 "{}: field 'rope_scaling.rope_type' is '{}', which is not supported; supported: default, linear, yarn",
                 c.label(), type);
    kv[a + ".rope.scaling.type"] = v_str(type);
    kv[a + ".rope.scaling.factor"] = v_f32(r.f64("factor"));
    if (type != "yarn") return;
    MOERIG_CHECK(!r.has("attention_factor"), UnsupportedError,
                 "{}: field 'rope_scaling.attention_factor' is not supported yet", c.label());
    kv[a + ".rope.scaling.original_context_length"] =
        v_u64(r.u64("original_max_position_embeddings", c.u64("max_position_embeddings")));
    kv[a + ".rope.scaling.yarn_beta_fast"] = v_f32(r.f64("beta_fast", 32.0));
    kv[a + ".rope.scaling.yarn_beta_slow"] = v_f32(r.f64("beta_slow", 1.0));
    if (f == Family::kDeepseekV2 || f == Family::kDeepseekV3) {
        // transformers: cos/sin scaled by mscale(factor, mscale) / mscale(factor, mscale_all_dim), softmax by
        // mscale(factor, mscale_all_dim)^2; llama.cpp reads the same through yarn_log_multiplier (0.1 * all_dim).
        const double mscale = r.f64("mscale", 1.0), all_dim = r.f64("mscale_all_dim", 0.0);
        MOERIG_CHECK(all_dim == 0.0 || mscale == 1.0 || mscale == all_dim, UnsupportedError,
                     "{}: rope_scaling mscale {} with mscale_all_dim {} is not supported yet", c.label(), mscale,
                     all_dim);
        kv[a + ".rope.scaling.yarn_log_multiplier"] = v_f32(0.1 * all_dim);
    }
}

/// config.json -> GGUF metadata.
std::map<std::string, GgufValue> read_metadata(const JsonFields& c, Family f, const std::string& a) {
    std::map<std::string, GgufValue> kv;
    kv["general.architecture"] = v_str(a);
    kv["general.name"] = v_str(c.str("model_type"));
    kv["moerig.import"] = v_str("huggingface");
    const int64_t n_embd = c.u64("hidden_size"), n_head = c.u64("num_attention_heads");
    const int64_t n_layer = c.u64("num_hidden_layers");
    MOERIG_CHECK(n_embd > 0 && n_head > 0 && n_layer > 0, ConfigError,
                 "{}: fields 'hidden_size', 'num_attention_heads' and 'num_hidden_layers' must be > 0", c.label());
    kv[a + ".block_count"] = v_u64(n_layer);
    kv[a + ".embedding_length"] = v_u64(n_embd);
    kv[a + ".attention.head_count"] = v_u64(n_head);
    kv[a + ".attention.head_count_kv"] = v_u64(c.u64("num_key_value_heads", n_head));
    kv[a + ".vocab_size"] = v_u64(c.u64("vocab_size"));
    kv[a + ".context_length"] = v_u64(c.u64("max_position_embeddings", 4096));
    kv[a + ".attention.layer_norm_rms_epsilon"] = v_f32(c.f64("rms_norm_eps"));
    kv[a + ".rope.freq_base"] = v_f32(c.f64("rope_theta", 10000.0));
    kv[a + ".feed_forward_length"] = v_u64(c.u64("intermediate_size"));
    read_rope_scaling(c, f, a, kv);
    MOERIG_CHECK(!c.has("sliding_window") || !c.boolean("use_sliding_window", f == Family::kMixtral), UnsupportedError,
                 "{}: field 'sliding_window' ({}) is set: sliding-window attention is not supported yet for {}",
                 c.label(), c.raw("sliding_window").dump(), c.str("model_type"));

    const bool mla = f == Family::kDeepseekV2 || f == Family::kDeepseekV3;
    if (!mla) {
        const int64_t head_dim = c.u64("head_dim", n_embd / n_head);
        kv[a + ".attention.key_length"] = v_u64(head_dim);
        kv[a + ".attention.value_length"] = v_u64(head_dim);
        kv[a + ".rope.dimension_count"] = v_u64(head_dim);
    }
    // HF Llama-style checkpoints rotate halves (q/k are not permuted as in GGUF); DeepSeek interleaves pairs
    // unless rope_interleave is false.
    kv["moerig.rope_neox"] = v_bool(mla ? !c.boolean("rope_interleave", true) : true);

    switch (f) {
        case Family::kMixtral:
            kv[a + ".expert_count"] = v_u64(c.u64("num_local_experts"));
            kv[a + ".expert_used_count"] = v_u64(c.u64("num_experts_per_tok"));
            kv[a + ".expert_feed_forward_length"] = v_u64(c.u64("intermediate_size"));
            kv[a + ".expert_weights_norm"] = v_bool(true);
            break;
        case Family::kQwen2Moe:
        case Family::kQwen3Moe: {
            kv[a + ".expert_count"] = v_u64(c.u64("num_experts"));
            kv[a + ".expert_used_count"] = v_u64(c.u64("num_experts_per_tok"));
            kv[a + ".expert_feed_forward_length"] = v_u64(c.u64("moe_intermediate_size"));
            kv[a + ".expert_weights_norm"] = v_bool(c.boolean("norm_topk_prob", false));
            MOERIG_CHECK(c.u64("decoder_sparse_step", 1) == 1, UnsupportedError,
                         "{}: field 'decoder_sparse_step' must be 1 (every layer MoE); other values are not supported "
                         "yet",
                         c.label());
            MOERIG_CHECK(!c.has("mlp_only_layers") || c.raw("mlp_only_layers").empty(), UnsupportedError,
                         "{}: field 'mlp_only_layers' is not empty; dense layers between MoE layers are not supported "
                         "yet",
                         c.label());
            if (f == Family::kQwen2Moe)
                kv[a + ".expert_shared_feed_forward_length"] = v_u64(c.u64("shared_expert_intermediate_size"));
            break;
        }
        case Family::kOlmoe:
            kv[a + ".expert_count"] = v_u64(c.u64("num_experts"));
            kv[a + ".expert_used_count"] = v_u64(c.u64("num_experts_per_tok"));
            kv[a + ".expert_feed_forward_length"] = v_u64(c.u64("intermediate_size"));
            kv[a + ".expert_weights_norm"] = v_bool(c.boolean("norm_topk_prob", false));
            MOERIG_CHECK(!c.has("clip_qkv"), UnsupportedError, "{}: field 'clip_qkv' is set; not supported yet",
                         c.label());
            break;
        case Family::kDeepseekV2:
        case Family::kDeepseekV3: {
            const bool v3 = f == Family::kDeepseekV3;
            const int64_t nope = c.u64("qk_nope_head_dim"), rope = c.u64("qk_rope_head_dim");
            kv[a + ".attention.key_length"] = v_u64(nope + rope);
            kv[a + ".attention.value_length"] = v_u64(c.u64("v_head_dim"));
            kv[a + ".rope.dimension_count"] = v_u64(rope);
            kv[a + ".attention.kv_lora_rank"] = v_u64(c.u64("kv_lora_rank"));
            kv[a + ".attention.q_lora_rank"] = v_u64(c.u64("q_lora_rank", 0));
            kv[a + ".attention.head_count_kv"] = v_u64(n_head);
            kv[a + ".expert_count"] = v_u64(c.u64("n_routed_experts"));
            kv[a + ".expert_used_count"] = v_u64(c.u64("num_experts_per_tok"));
            kv[a + ".expert_feed_forward_length"] = v_u64(c.u64("moe_intermediate_size"));
            kv[a + ".expert_shared_count"] = v_u64(c.u64("n_shared_experts", 0));
            kv[a + ".leading_dense_block_count"] = v_u64(c.u64("first_k_dense_replace", 0));
            MOERIG_CHECK(c.u64("moe_layer_freq", 1) == 1, UnsupportedError,
                         "{}: field 'moe_layer_freq' must be 1; other values are not supported yet", c.label());
            const std::string scoring = c.str("scoring_func", v3 ? "sigmoid" : "softmax");
            MOERIG_CHECK(scoring == "softmax" || scoring == "sigmoid", UnsupportedError,
                         "{}: field 'scoring_func' is '{}'; supported: softmax, sigmoid", c.label(), scoring);
            kv[a + ".expert_gating_func"] = v_u64(scoring == "softmax" ? 1 : 2);
            const std::string method = c.str("topk_method", v3 ? "noaux_tc" : "greedy");
            const int64_t n_group = c.u64("n_group", 1), topk_group = c.u64("topk_group", 1);
            MOERIG_CHECK(method == "greedy" || method == "noaux_tc", UnsupportedError,
                         "{}: field 'topk_method' is '{}', which is not supported yet; supported: greedy, noaux_tc",
                         c.label(), method);
            if (method == "noaux_tc" && n_group > 1) {
                kv[a + ".expert_group_count"] = v_u64(n_group);
                kv[a + ".expert_group_used_count"] = v_u64(topk_group);
            }
            const bool norm = c.boolean("norm_topk_prob", false);
            const double scale = c.f64("routed_scaling_factor", 1.0);
            kv[a + ".expert_weights_norm"] = v_bool(norm);
            // DeepSeek-V2's reference code scales only when it does not renormalise; V3 always scales.
            kv[a + ".expert_weights_scale"] = v_f32(v3 || !norm ? scale : 1.0);
            break;
        }
    }
    const auto bos = c.ids("bos_token_id");
    if (!bos.empty()) kv["tokenizer.ggml.bos_token_id"] = v_u64(bos.front());
    const auto eos = c.ids("eos_token_id");
    if (!eos.empty()) kv["tokenizer.ggml.eos_token_id"] = v_u64(eos.front());
    kv["tokenizer.ggml.add_bos_token"] = v_bool(false);
    return kv;
}

}  // namespace

const char* supported_hf_model_types() {
    return "mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3";
}

bool is_hf_checkpoint(const fs::path& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return fs::exists(path / "config.json", ec);
    return path.filename() == "config.json";
}

HfCheckpoint import_hf_checkpoint(const fs::path& path) {
    HfCheckpoint out;
    std::error_code ec;
    out.dir = fs::is_directory(path, ec) ? path : path.parent_path();
    if (out.dir.empty()) out.dir = ".";
    out.config_path = out.dir / "config.json";
    const std::string label = out.config_path.string();
    const JsonFields c = read_json_object(out.config_path);
    check_quantization(c);
    std::string arch;
    const Family family = parse_family(c, arch);
    out.model_type = c.str("model_type");
    auto kv = read_metadata(c, family, arch);

    out.eog_ids = c.ids("eos_token_id");
    const fs::path gen = out.dir / "generation_config.json";
    if (fs::exists(gen, ec)) {
        const JsonFields g = read_json_object(gen);
        for (int32_t id : g.ids("eos_token_id")) out.eog_ids.push_back(id);
    }
    std::sort(out.eog_ids.begin(), out.eog_ids.end());
    out.eog_ids.erase(std::unique(out.eog_ids.begin(), out.eog_ids.end()), out.eog_ids.end());
    if (fs::exists(out.dir / "tokenizer.json", ec)) out.tokenizer_json = out.dir / "tokenizer.json";

    auto st = std::make_shared<formats::SafetensorsModel>(out.dir);
    const bool tied = c.boolean("tie_word_embeddings", false);
    const NameMap names(family, tied);
    const int64_t n_layer = c.u64("num_hidden_layers");
    std::vector<GgufTensor> tensors;
    for (const auto& t : st->tensors()) {
        const auto gguf_name = names.to_gguf(t.name, n_layer);
        if (!gguf_name) continue;
        const std::string file = st->file(t.file_idx).path();
        const DType type = formats::require_supported(t, file);
        MOERIG_CHECK(type == DType::F32 || type == DType::F16 || type == DType::BF16, UnsupportedError,
                     "{}: tensor '{}' has dtype {}; supported: F32, F16, BF16", file, t.name,
                     formats::st_dtype_name(t.dtype));
        MOERIG_CHECK(!t.shape.empty() && t.shape.size() <= 3, FormatError, "{}: tensor '{}' has {} dimensions", file,
                     t.name, t.shape.size());
        GgufTensor g;
        g.name = *gguf_name;
        g.dims.assign(t.shape.rbegin(), t.shape.rend());
        g.type = type;
        g.offset = t.offset;
        g.num_bytes = t.num_bytes;
        g.file_idx = t.file_idx;
        g.data = t.data;
        tensors.push_back(std::move(g));
    }
    const bool has_lm_head = st->find("lm_head.weight") != nullptr;
    MOERIG_CHECK(tied || has_lm_head, FormatError,
                 "{}: tensor 'lm_head.weight' is missing and tie_word_embeddings is false ({})", out.dir.string(),
                 label);
    // Messages about tensors name the checkpoint's tensor and, when it exists, the shard holding it.
    auto describe = [names, st](const std::string& gguf_name) {
        const std::string hf = names.to_hf(gguf_name);
        const auto* t = st->find(hf);
        return t ? fmt::format("{}' in '{}", hf, st->file(t->file_idx).path()) : hf;
    };
    out.model = std::make_unique<formats::GgufModel>(out.dir.string(), std::move(kv), std::move(tensors), st,
                                                     std::move(describe));
    return out;
}

}  // namespace moerig::runtime
