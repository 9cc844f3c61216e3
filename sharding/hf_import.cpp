// Hugging Face config.json -> ModelSpec for the MoE families moerig runs. Field names per model_type follow
// transformers' configuration classes; model.safetensors.index.json, when present, settles what only the
// tensor list tells (MTP layers, biases, q/k norms, sinks, tied embeddings).
#include "sharding/hf_import.h"

#include <nlohmann/json.hpp>
#include <set>

#include "kernels/error.h"
#include "sharding/json_fields.h"
#include "sharding/suggest.h"

namespace moerig::sharding {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void read_common(const JsonFields& f, ModelSpec& s) {
    s.hidden = f.u64("hidden_size");
    s.num_layers = static_cast<uint32_t>(f.u64("num_hidden_layers"));
    s.vocab = f.u64("vocab_size");
    s.max_context = f.u64("max_position_embeddings", 0);
    s.num_heads = static_cast<uint32_t>(f.u64("num_attention_heads"));
    s.num_kv_heads = static_cast<uint32_t>(f.u64("num_key_value_heads", s.num_heads));
    MOERIG_CHECK(s.num_heads > 0, ConfigError, "{}: num_attention_heads must be > 0", s.source);
    s.head_dim = static_cast<uint32_t>(f.u64("head_dim", s.hidden / s.num_heads));
    s.tied_embeddings = f.boolean("tie_word_embeddings", false);
    const std::string dtype = f.str("torch_dtype", f.str("dtype", "bfloat16"));
    s.native_dtype = dtype == "float16" ? "f16" : "bf16";
    s.num_experts_used = static_cast<uint32_t>(f.u64("num_experts_per_tok", 0));
    s.norm_topk = f.boolean("norm_topk_prob", false);
}

void read_deepseek(const JsonFields& f, ModelSpec& s, bool v3) {
    s.arch = "deepseek2";
    s.attention = AttentionKind::kMla;
    s.q_lora_rank = static_cast<uint32_t>(f.u64("q_lora_rank", 0));  // null in V2-Lite
    s.kv_lora_rank = static_cast<uint32_t>(f.u64("kv_lora_rank"));
    s.qk_nope_head_dim = static_cast<uint32_t>(f.u64("qk_nope_head_dim"));
    s.qk_rope_head_dim = static_cast<uint32_t>(f.u64("qk_rope_head_dim"));
    s.v_head_dim = static_cast<uint32_t>(f.u64("v_head_dim"));
    s.head_dim = s.qk_nope_head_dim + s.qk_rope_head_dim;
    s.dense_ffn = f.u64("intermediate_size");
    s.expert_ffn = f.u64("moe_intermediate_size");
    s.num_experts = static_cast<uint32_t>(f.u64("n_routed_experts"));
    s.num_shared_experts = static_cast<uint32_t>(f.u64("n_shared_experts", 0));
    s.shared_expert_ffn = s.num_shared_experts * s.expert_ffn;  // stored fused
    s.num_leading_dense = static_cast<uint32_t>(f.u64("first_k_dense_replace", 0));
    s.num_expert_groups = static_cast<uint32_t>(f.u64("n_group", 1));
    s.num_expert_groups_used = static_cast<uint32_t>(f.u64("topk_group", s.num_expert_groups));
    s.routed_scaling = f.f64("routed_scaling_factor", 1.0);
    s.routing = f.str("scoring_func", "softmax") == "sigmoid" ? RoutingFunc::kSigmoid : RoutingFunc::kSoftmax;
    s.router_score_bias = f.str("topk_method", "") == "noaux_tc";
    if (v3) s.num_mtp_layers = static_cast<uint32_t>(f.u64("num_nextn_predict_layers", 0));
}

void read_model_type(const std::string& type, const JsonFields& f, ModelSpec& s) {
    if (type == "mixtral") {
        s.arch = "llama";
        s.expert_ffn = f.u64("intermediate_size");
        s.num_experts = static_cast<uint32_t>(f.u64("num_local_experts"));
        s.norm_topk = true;  // softmax over the selected logits
    } else if (type == "qwen2_moe") {
        s.arch = "qwen2moe";
        s.qkv_bias = true;
        s.expert_ffn = f.u64("moe_intermediate_size");
        s.num_experts = static_cast<uint32_t>(f.u64("num_experts"));
        s.shared_expert_ffn = f.u64("shared_expert_intermediate_size", 0);
        s.num_shared_experts = s.shared_expert_ffn > 0 ? 1 : 0;
        s.shared_expert_gate = s.num_shared_experts > 0;
    } else if (type == "qwen3_moe") {
        s.arch = "qwen3moe";
        s.qkv_bias = f.boolean("attention_bias", false);
        s.qk_norm = QkNorm::kPerHead;
        s.expert_ffn = f.u64("moe_intermediate_size");
        s.num_experts = static_cast<uint32_t>(f.u64("num_experts"));
    } else if (type == "olmoe") {
        s.arch = "olmoe";
        s.qk_norm = QkNorm::kFull;
        s.expert_ffn = f.u64("intermediate_size");
        s.num_experts = static_cast<uint32_t>(f.u64("num_experts"));
    } else if (type == "deepseek_v2" || type == "deepseek_v3") {
        read_deepseek(f, s, type == "deepseek_v3");
    } else if (type == "gpt_oss") {
        s.arch = "gpt-oss";
        s.qkv_bias = s.out_bias = f.boolean("attention_bias", true);
        s.attn_sinks = true;
        s.ffn_norm_name = "post_attention_norm";
        s.expert_ffn = f.u64("intermediate_size");
        s.num_experts = static_cast<uint32_t>(f.u64("num_local_experts"));
        s.num_experts_used = static_cast<uint32_t>(f.u64("num_experts_per_tok", f.u64("experts_per_token", 0)));
        s.expert_bias = true;
        s.norm_topk = true;
        s.sliding_window = static_cast<uint32_t>(f.u64("sliding_window", 0));
        s.sliding_window_pattern = s.sliding_window > 0 ? 2 : 0;
    } else {
        MOERIG_THROW(
            ConfigError, "{}: unsupported model_type '{}'{}; supported: {}", s.source, type,
            did_you_mean(type, {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "gpt_oss"}),
            "mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, gpt_oss");
    }
}

// gpt-oss lists each layer's attention type; llama.cpp's pattern 2 assumes sliding on even layers.
void read_layer_types(const json& j, ModelSpec& s) {
    if (!j.contains("layer_types") || !j["layer_types"].is_array()) return;
    const auto& types = j["layer_types"];
    bool alternating = types.size() == s.num_layers;
    for (size_t i = 0; i < types.size() && alternating; ++i) {
        alternating = types[i] == (i % 2 == 0 ? "sliding_attention" : "full_attention");
    }
    MOERIG_CHECK(alternating || s.sliding_window == 0, UnsupportedError,
                 "{}: layer_types is not the alternating sliding/full pattern moerig supports", s.source);
}

// Settles tensor-level facts from the safetensors weight map.
void read_index(const json& index, const std::string& label, ModelSpec& s) {
    MOERIG_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), ConfigError,
                 "{}: missing object 'weight_map'", label);
    std::set<std::string> names;
    int64_t max_layer = -1;
    for (const auto& [name, file] : index["weight_map"].items()) {
        names.insert(name);
        int layer = -1;
        if (std::sscanf(name.c_str(), "model.layers.%d.", &layer) == 1) max_layer = std::max<int64_t>(max_layer, layer);
    }
    if (max_layer >= static_cast<int64_t>(s.num_layers)) {
        s.num_mtp_layers = static_cast<uint32_t>(max_layer + 1 - s.num_layers);
    }
    s.tied_embeddings = !names.count("lm_head.weight");
    const std::string l0 = "model.layers.0.self_attn.";
    const std::string lm = "model.layers." + std::to_string(s.num_leading_dense) + ".mlp.";
    s.qkv_bias = names.count(l0 + "q_proj.bias") > 0;
    s.out_bias = names.count(l0 + "o_proj.bias") > 0;
    if (!names.count(l0 + "q_norm.weight")) s.qk_norm = QkNorm::kNone;
    s.attn_sinks = names.count(l0 + "sinks") > 0;
    if (s.num_shared_experts > 0) s.shared_expert_gate = names.count(lm + "shared_expert_gate.weight") > 0;
    if (s.arch == "deepseek2") s.router_score_bias = names.count(lm + "gate.e_score_correction_bias") > 0;
}

}  // namespace

ModelSpec parse_hf_config(const std::string& config_json, const std::optional<std::string>& index_json,
                          const std::string& label) {
    const json j = parse_json(config_json, label);
    MOERIG_CHECK(j.is_object(), ConfigError, "{}: expected a JSON object", label);
    ModelSpec s;
    s.source = label;
    const JsonFields f(j, label);
    MOERIG_CHECK(f.has("model_type"), ConfigError, "{}: missing field 'model_type'", label);
    const std::string type = f.str("model_type", "");
    read_common(f, s);
    read_model_type(type, f, s);
    read_layer_types(j, s);
    if (j.contains("quantization_config") && j["quantization_config"].is_object()) {
        const std::string method = JsonFields(j["quantization_config"], label).str("quant_method", "");
        if (method == "fp8" || method == "mxfp4") s.native_dtype = method;
    }
    std::string stem = fs::path(label).parent_path().filename().string();
    s.name = stem.empty() ? type : stem;
    s.display_name = s.name;
    if (index_json) read_index(parse_json(*index_json, label + " (safetensors index)"), label, s);
    s.validate();
    return s;
}

ModelSpec load_hf_config(const fs::path& config_path) {
    const fs::path config = fs::is_directory(config_path) ? config_path / "config.json" : config_path;
    const fs::path index = config.parent_path() / "model.safetensors.index.json";
    std::optional<std::string> index_text;
    if (fs::exists(index)) index_text = read_text_file(index);
    return parse_hf_config(read_text_file(config), index_text, config.string());
}

}  // namespace moerig::sharding
