// Model accounting from a spec (the tensor list implied by the architecture, typed by a quant mix) or from
// a GGUF header (exact tensor table), and the totals both share: per-layer bytes, params, active params.
#include "sharding/accounting.h"

#include <cstdio>
#include <filesystem>
#include <map>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "sharding/catalog.h"
#include "sharding/hf_import.h"

namespace moerig::sharding {
namespace {

namespace fs = std::filesystem;

// Builds the GGUF tensor list of a spec, in llama.cpp's names and shapes (ne[0] innermost).
class TensorListBuilder {
  public:
    TensorListBuilder(const ModelSpec& spec, const QuantMix& mix, ModelAccount& out)
        : spec_(spec), mix_(mix), out_(out) {}

    void build() {
        add(-1, "token_embd.weight", TensorRole::kEmbedding, {spec_.hidden, spec_.vocab});
        for (uint32_t l = 0; l < spec_.num_layers + spec_.num_mtp_layers; ++l) add_layer(l);
        add(-1, "output_norm.weight", TensorRole::kNorm, {spec_.hidden});
        if (!spec_.tied_embeddings) add(-1, "output.weight", TensorRole::kOutput, {spec_.hidden, spec_.vocab});
    }

  private:
    void add(int32_t layer_idx, const std::string& name, TensorRole role, std::vector<uint64_t> dims,
             uint32_t num_experts = 1) {
        TensorAccount t;
        t.name = layer_idx >= 0 ? "blk." + std::to_string(layer_idx) + "." + name : name;
        t.role = role;
        t.layer_idx = layer_idx;
        t.num_experts = num_experts;
        t.dims = std::move(dims);
        t.num_elems = 1;
        for (uint64_t d : t.dims) t.num_elems *= d;
        TensorQuantContext ctx;
        ctx.name = t.name;
        ctx.role = role;
        ctx.layer_idx = layer_idx;
        ctx.num_layers = spec_.num_layers;
        ctx.num_dims = static_cast<uint32_t>(t.dims.size());
        ctx.row_elems = t.dims[0];
        ctx.num_experts = spec_.num_experts;
        ctx.gqa_ratio = spec_.num_kv_heads ? spec_.num_heads / spec_.num_kv_heads : 1;
        t.dtype = quant_tensor_type(mix_, ctx);
        t.num_bytes = dtype_bytes(t.dtype, t.num_elems);
        t.bytes_per_expert = t.num_bytes / num_experts;
        t.elems_per_expert = t.num_elems / num_experts;
        const bool mtp = layer_idx >= static_cast<int32_t>(spec_.num_layers);
        (mtp ? out_.mtp_tensors : out_.tensors).push_back(std::move(t));
    }

    void add_gqa(int32_t l) {
        const uint64_t h = spec_.hidden, q = uint64_t{spec_.num_heads} * spec_.head_dim,
                       kv = uint64_t{spec_.num_kv_heads} * spec_.head_dim;
        add(l, "attn_q.weight", TensorRole::kAttention, {h, q});
        add(l, "attn_k.weight", TensorRole::kAttention, {h, kv});
        add(l, "attn_v.weight", TensorRole::kAttention, {h, kv});
        add(l, "attn_output.weight", TensorRole::kAttention, {q, h});
        if (spec_.qkv_bias) {
            add(l, "attn_q.bias", TensorRole::kAttention, {q});
            add(l, "attn_k.bias", TensorRole::kAttention, {kv});
            add(l, "attn_v.bias", TensorRole::kAttention, {kv});
        }
        if (spec_.out_bias) add(l, "attn_output.bias", TensorRole::kAttention, {h});
        if (spec_.qk_norm == QkNorm::kPerHead) {
            add(l, "attn_q_norm.weight", TensorRole::kNorm, {spec_.head_dim});
            add(l, "attn_k_norm.weight", TensorRole::kNorm, {spec_.head_dim});
        } else if (spec_.qk_norm == QkNorm::kFull) {
            add(l, "attn_q_norm.weight", TensorRole::kNorm, {q});
            add(l, "attn_k_norm.weight", TensorRole::kNorm, {kv});
        }
        if (spec_.attn_sinks) add(l, "attn_sinks.weight", TensorRole::kAttention, {spec_.num_heads});
    }

    void add_mla(int32_t l) {
        const uint64_t h = spec_.hidden, heads = spec_.num_heads;
        const uint64_t q_dim = heads * (spec_.qk_nope_head_dim + spec_.qk_rope_head_dim);
        if (spec_.q_lora_rank > 0) {
            add(l, "attn_q_a.weight", TensorRole::kAttention, {h, spec_.q_lora_rank});
            add(l, "attn_q_a_norm.weight", TensorRole::kNorm, {spec_.q_lora_rank});
            add(l, "attn_q_b.weight", TensorRole::kAttention, {spec_.q_lora_rank, q_dim});
        } else {
            add(l, "attn_q.weight", TensorRole::kAttention, {h, q_dim});
        }
        add(l, "attn_kv_a_mqa.weight", TensorRole::kAttention,
            {h, uint64_t{spec_.kv_lora_rank} + spec_.qk_rope_head_dim});
        add(l, "attn_kv_a_norm.weight", TensorRole::kNorm, {spec_.kv_lora_rank});
        // llama.cpp's converter splits kv_b per head into the absorbed-MLA halves k_b and v_b.
        add(l, "attn_k_b.weight", TensorRole::kAttention, {spec_.qk_nope_head_dim, spec_.kv_lora_rank, heads});
        add(l, "attn_v_b.weight", TensorRole::kAttention, {spec_.kv_lora_rank, spec_.v_head_dim, heads});
        add(l, "attn_output.weight", TensorRole::kAttention, {heads * spec_.v_head_dim, h});
    }

    void add_moe(int32_t l) {
        const uint64_t h = spec_.hidden, f = spec_.expert_ffn, e = spec_.num_experts;
        const uint32_t ne = spec_.num_experts;
        add(l, "ffn_gate_inp.weight", TensorRole::kRouter, {h, e});
        if (spec_.expert_bias) add(l, "ffn_gate_inp.bias", TensorRole::kRouter, {e});
        if (spec_.router_score_bias) add(l, "exp_probs_b.bias", TensorRole::kRouter, {e});
        add(l, "ffn_gate_exps.weight", TensorRole::kExpert, {h, f, e}, ne);
        add(l, "ffn_up_exps.weight", TensorRole::kExpert, {h, f, e}, ne);
        add(l, "ffn_down_exps.weight", TensorRole::kExpert, {f, h, e}, ne);
        if (spec_.expert_bias) {
            add(l, "ffn_gate_exps.bias", TensorRole::kExpert, {f, e}, ne);
            add(l, "ffn_up_exps.bias", TensorRole::kExpert, {f, e}, ne);
            add(l, "ffn_down_exps.bias", TensorRole::kExpert, {h, e}, ne);
        }
        if (spec_.num_shared_experts > 0) {
            const uint64_t s = spec_.shared_expert_ffn;
            if (spec_.shared_expert_gate) add(l, "ffn_gate_inp_shexp.weight", TensorRole::kSharedExpert, {h});
            add(l, "ffn_gate_shexp.weight", TensorRole::kSharedExpert, {h, s});
            add(l, "ffn_up_shexp.weight", TensorRole::kSharedExpert, {h, s});
            add(l, "ffn_down_shexp.weight", TensorRole::kSharedExpert, {s, h});
        }
    }

    void add_layer(uint32_t layer) {
        const auto l = static_cast<int32_t>(layer);
        const uint64_t h = spec_.hidden;
        add(l, "attn_norm.weight", TensorRole::kNorm, {h});
        if (spec_.attention == AttentionKind::kMla) {
            add_mla(l);
        } else {
            add_gqa(l);
        }
        add(l, spec_.ffn_norm_name + ".weight", TensorRole::kNorm, {h});
        if (spec_.is_moe_layer(layer)) {
            add_moe(l);
        } else {
            add(l, "ffn_gate.weight", TensorRole::kDenseFfn, {h, spec_.dense_ffn});
            add(l, "ffn_up.weight", TensorRole::kDenseFfn, {h, spec_.dense_ffn});
            add(l, "ffn_down.weight", TensorRole::kDenseFfn, {spec_.dense_ffn, h});
        }
        if (layer >= spec_.num_layers) {
            // DeepSeek's MTP block: its own norms and the projection of [embedding; hidden] back to hidden.
            add(l, "nextn.enorm.weight", TensorRole::kNorm, {h});
            add(l, "nextn.hnorm.weight", TensorRole::kNorm, {h});
            add(l, "nextn.eh_proj.weight", TensorRole::kOther, {2 * h, h});
            add(l, "nextn.shared_head_norm.weight", TensorRole::kNorm, {h});
        }
    }

    const ModelSpec& spec_;
    const QuantMix& mix_;
    ModelAccount& out_;
};

bool is_attention_norm(const TensorAccount& t) {
    return t.role == TensorRole::kNorm && t.name.find(".attn_") != std::string::npos;
}

std::string lower_ext(const fs::path& p) {
    std::string e = p.extension().string();
    for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return e;
}

// ---- GGUF --------------------------------------------------------------------------------------------

// Role of a GGUF tensor from its name (the part after "blk.N.").
TensorRole gguf_role(const std::string& local) {
    auto has = [&](const char* part) { return local.find(part) != std::string::npos; };
    if (has("_exps")) return TensorRole::kExpert;
    if (has("_shexp")) return TensorRole::kSharedExpert;
    if (has("ffn_gate_inp") || has("exp_probs_b")) return TensorRole::kRouter;
    if (has("norm")) return TensorRole::kNorm;
    if (local.rfind("attn_", 0) == 0) return TensorRole::kAttention;
    if (local.rfind("ffn_gate", 0) == 0 || local.rfind("ffn_up", 0) == 0 || local.rfind("ffn_down", 0) == 0) {
        return TensorRole::kDenseFfn;
    }
    return TensorRole::kOther;
}

// Old Mixtral GGUFs store one tensor per expert: "ffn_gate.3.weight". Returns the merged name or "".
std::string split_expert_name(const std::string& local, uint32_t& expert_idx) {
    for (const char* proj : {"ffn_gate", "ffn_up", "ffn_down"}) {
        const std::string prefix = std::string(proj) + ".";
        if (local.rfind(prefix, 0) != 0) continue;
        unsigned idx = 0;
        int consumed = 0;
        if (std::sscanf(local.c_str() + prefix.size(), "%u.weight%n", &idx, &consumed) == 1 &&
            prefix.size() + consumed == local.size()) {
            expert_idx = idx;
            return std::string(proj) + "_exps.weight";
        }
    }
    return "";
}

bool has_tensor(const formats::GgufModel& g, const std::string& name) {
    return g.find_tensor(name) != nullptr;
}

}  // namespace

void finish_account(ModelAccount& a) {
    const ModelSpec& s = a.spec;
    a.layers.assign(s.num_layers, LayerAccount{});
    for (uint32_t l = 0; l < s.num_layers; ++l) {
        a.layers[l].layer_idx = l;
        a.layers[l].sliding = s.is_sliding_layer(l);
        a.layers[l].kv_values_per_token = s.kv_values_per_token(l);
    }
    a.embedding_bytes = a.output_bytes = a.total_bytes = a.total_params = a.routed_expert_bytes = 0;
    uint64_t active_params = 0, active_bytes = 0;
    for (const auto& t : a.tensors) {
        a.total_bytes += t.num_bytes;
        a.total_params += t.num_elems;
        if (t.layer_idx < 0) {
            if (t.role == TensorRole::kEmbedding) {
                a.embedding_bytes += t.num_bytes;
                if (!s.active_excludes_embeddings) active_params += t.num_elems;
                continue;  // a decoded token reads one row of it, not the table
            }
            a.output_bytes += t.num_bytes;
            active_params += t.num_elems;
            active_bytes += t.num_bytes;
            continue;
        }
        MOERIG_CHECK(t.layer_idx < static_cast<int32_t>(s.num_layers), FormatError,
                     "{}: tensor {} names layer {} but the model has {} layers", s.source, t.name, t.layer_idx,
                     s.num_layers);
        LayerAccount& layer = a.layers[t.layer_idx];
        switch (t.role) {
            case TensorRole::kExpert:
                layer.num_experts = t.num_experts;
                layer.expert_bytes += t.bytes_per_expert;
                layer.expert_params += t.elems_per_expert;
                a.routed_expert_bytes += t.num_bytes;
                continue;  // active share added per layer below
            case TensorRole::kSharedExpert:
                layer.shared_expert_bytes += t.num_bytes;
                break;
            case TensorRole::kAttention:
                layer.attention_bytes += t.num_bytes;
                break;
            case TensorRole::kRouter:
                layer.router_bytes += t.num_bytes;
                layer.dense_bytes += t.num_bytes;
                break;
            default:
                (is_attention_norm(t) ? layer.attention_bytes : layer.dense_bytes) += t.num_bytes;
                break;
        }
        active_params += t.num_elems;
        active_bytes += t.num_bytes;
    }
    for (const auto& layer : a.layers) {
        const uint64_t used = std::min<uint64_t>(s.num_experts_used, layer.num_experts);
        active_params += used * layer.expert_params;
        active_bytes += used * layer.expert_bytes;
    }
    a.active_params = active_params;
    a.active_bytes = active_bytes;
    a.mtp_bytes = 0;
    for (const auto& t : a.mtp_tensors) a.mtp_bytes += t.num_bytes;
}

ModelAccount account_model(const ModelSpec& spec, const QuantMix& mix) {
    spec.validate();
    ModelAccount a;
    a.spec = spec;
    a.quant = std::string(mix.name());
    TensorListBuilder(spec, mix, a).build();
    finish_account(a);
    return a;
}

ModelAccount load_model(const std::string& name_or_path, std::optional<QuantMix> mix) {
    const fs::path p(name_or_path);
    const std::string ext = lower_ext(p);
    if (ext == ".gguf") {
        MOERIG_CHECK(!mix.has_value(), ConfigError,
                     "{}: a GGUF file's tensor types are fixed; --quant applies to catalog models and config.json",
                     name_or_path);
        return account_gguf_file(p);
    }
    ModelSpec spec;
    if (ext == ".json" || (fs::is_directory(p) && fs::exists(p / "config.json"))) {
        spec = load_hf_config(p);
    } else if (ext == ".yaml" || ext == ".yml") {
        spec = load_model_yaml(p);
    } else {
        spec = load_catalog_model(name_or_path);
    }
    return account_model(spec, mix ? *mix : native_quant_mix(spec));
}

}  // namespace moerig::sharding

namespace moerig::sharding {

ModelSpec spec_from_gguf(const formats::GgufModel& g) {
    ModelSpec s;
    s.arch = g.architecture();
    const std::string k = s.arch + ".";
    s.source = g.path();
    s.name = fs::path(g.path()).stem().string();
    s.display_name = g.get_string_opt("general.name").value_or(s.name);
    s.native_dtype = "gguf";
    s.hidden = g.get_u64(k + "embedding_length");
    const uint64_t nextn = g.get_u64_opt(k + "nextn_predict_layers").value_or(0);
    const uint64_t blocks = g.get_u64(k + "block_count");
    MOERIG_CHECK(nextn < blocks, FormatError, "{}: {}nextn_predict_layers ({}) must be below block_count ({})",
                 g.path(), k, nextn, blocks);
    s.num_layers = static_cast<uint32_t>(blocks - nextn);
    s.num_mtp_layers = static_cast<uint32_t>(nextn);
    s.max_context = g.get_u64_opt(k + "context_length").value_or(0);
    if (const auto* emb = g.find_tensor("token_embd.weight"); emb && emb->dims.size() >= 2) {
        s.vocab = emb->dims[1];
    } else {
        s.vocab = g.get_u64_opt(k + "vocab_size").value_or(0);
    }
    s.tied_embeddings = !has_tensor(g, "output.weight");
    s.num_heads = static_cast<uint32_t>(g.get_u64(k + "attention.head_count"));
    s.num_kv_heads = static_cast<uint32_t>(g.get_u64_opt(k + "attention.head_count_kv").value_or(s.num_heads));
    if (auto lora = g.get_u64_opt(k + "attention.kv_lora_rank")) {
        s.attention = AttentionKind::kMla;
        s.kv_lora_rank = static_cast<uint32_t>(*lora);
        s.q_lora_rank = static_cast<uint32_t>(g.get_u64_opt(k + "attention.q_lora_rank").value_or(0));
        s.qk_rope_head_dim = static_cast<uint32_t>(g.get_u64(k + "rope.dimension_count"));
        // Newer conversions store the absorbed-MLA widths in key_length and the originals in *_mla.
        const uint64_t key =
            g.get_u64_opt(k + "attention.key_length_mla").value_or(g.get_u64(k + "attention.key_length"));
        s.v_head_dim = static_cast<uint32_t>(
            g.get_u64_opt(k + "attention.value_length_mla").value_or(g.get_u64(k + "attention.value_length")));
        s.head_dim = static_cast<uint32_t>(key);
        s.qk_nope_head_dim = static_cast<uint32_t>(key - s.qk_rope_head_dim);
    } else {
        s.head_dim = static_cast<uint32_t>(g.get_u64_opt(k + "attention.key_length").value_or(s.hidden / s.num_heads));
    }
    s.num_experts = static_cast<uint32_t>(g.get_u64_opt(k + "expert_count").value_or(0));
    s.num_experts_used = static_cast<uint32_t>(g.get_u64_opt(k + "expert_used_count").value_or(0));
    s.num_leading_dense = static_cast<uint32_t>(g.get_u64_opt(k + "leading_dense_block_count").value_or(0));
    const uint64_t ffn = g.get_u64_opt(k + "feed_forward_length").value_or(0);
    s.expert_ffn = g.get_u64_opt(k + "expert_feed_forward_length").value_or(ffn);  // Mixtral: llama arch
    if (s.num_leading_dense > 0 || s.num_experts == 0) s.dense_ffn = ffn;
    s.num_shared_experts = static_cast<uint32_t>(g.get_u64_opt(k + "expert_shared_count").value_or(0));
    if (has_tensor(g, "blk." + std::to_string(s.num_leading_dense) + ".ffn_up_shexp.weight")) {
        s.num_shared_experts = std::max<uint32_t>(s.num_shared_experts, 1);
        s.shared_expert_ffn = g.tensor("blk." + std::to_string(s.num_leading_dense) + ".ffn_up_shexp.weight").dims[1];
    }
    s.routing =
        g.get_u64_opt(k + "expert_gating_func").value_or(1) == 2 ? RoutingFunc::kSigmoid : RoutingFunc::kSoftmax;
    s.num_expert_groups = static_cast<uint32_t>(g.get_u64_opt(k + "expert_group_count").value_or(1));
    s.num_expert_groups_used =
        static_cast<uint32_t>(g.get_u64_opt(k + "expert_group_used_count").value_or(s.num_expert_groups));
    s.routed_scaling = g.get_f64_opt(k + "expert_weights_scale").value_or(1.0);
    s.norm_topk = g.get_bool_opt(k + "expert_weights_norm").value_or(false);
    s.sliding_window = static_cast<uint32_t>(g.get_u64_opt(k + "attention.sliding_window").value_or(0));
    if (s.arch == "gpt-oss" && s.sliding_window > 0) s.sliding_window_pattern = 2;  // llama.cpp hard-codes it
    // Flags that only the tensor table tells.
    const std::string b0 = "blk.0.", bm = "blk." + std::to_string(s.num_leading_dense) + ".";
    s.qkv_bias = has_tensor(g, b0 + "attn_q.bias");
    s.out_bias = has_tensor(g, b0 + "attn_output.bias");
    if (const auto* qn = g.find_tensor(b0 + "attn_q_norm.weight")) {
        s.qk_norm = qn->dims[0] == s.head_dim ? QkNorm::kPerHead : QkNorm::kFull;
    }
    s.attn_sinks = has_tensor(g, b0 + "attn_sinks.weight");
    if (!has_tensor(g, b0 + "ffn_norm.weight") && has_tensor(g, b0 + "post_attention_norm.weight")) {
        s.ffn_norm_name = "post_attention_norm";
    }
    s.shared_expert_gate = has_tensor(g, bm + "ffn_gate_inp_shexp.weight");
    s.expert_bias = has_tensor(g, bm + "ffn_gate_exps.bias") || has_tensor(g, bm + "ffn_gate_inp.bias");
    s.router_score_bias = has_tensor(g, bm + "exp_probs_b.bias");
    s.validate();
    return s;
}

ModelAccount account_gguf(const formats::GgufModel& g) {
    ModelAccount a;
    a.spec = spec_from_gguf(g);
    a.quant = "gguf";
    // Per-expert tensors of old files are merged into one account per (layer, projection).
    std::map<std::string, size_t> merged;
    for (const auto& gt : g.tensors()) {
        TensorAccount t;
        t.name = gt.name;
        t.dtype = gt.type;
        t.dims = gt.dims;
        t.num_elems = gt.num_elems();
        t.num_bytes = gt.num_bytes;
        std::string local = gt.name;
        int layer = -1, consumed = 0;
        if (std::sscanf(gt.name.c_str(), "blk.%d.%n", &layer, &consumed) == 1 && consumed > 0) {
            local = gt.name.substr(consumed);
        } else {
            layer = -1;
        }
        t.layer_idx = layer;
        if (layer < 0) {
            t.role = gt.name.rfind("token_embd.", 0) == 0        ? TensorRole::kEmbedding
                     : gt.name.rfind("output.", 0) == 0          ? TensorRole::kOutput
                     : gt.name.find("norm") != std::string::npos ? TensorRole::kNorm
                                                                 : TensorRole::kOther;
        } else {
            t.role = gguf_role(local);
        }
        uint32_t expert_idx = 0;
        const std::string merged_local = layer >= 0 ? split_expert_name(local, expert_idx) : "";
        if (!merged_local.empty()) {
            const std::string key = "blk." + std::to_string(layer) + "." + merged_local;
            auto it = merged.find(key);
            if (it == merged.end()) {
                t.name = key;
                t.role = TensorRole::kExpert;
                t.num_experts = 0;
                t.dims.push_back(0);
                t.num_elems = t.num_bytes = 0;
                merged[key] = a.tensors.size();
                a.tensors.push_back(t);
                it = merged.find(key);
            }
            TensorAccount& m = a.tensors[it->second];
            MOERIG_CHECK(m.dtype == gt.type, UnsupportedError,
                         "{}: experts of {} have different types ({} and {}); per-expert types are not supported",
                         g.path(), key, dtype_name(m.dtype), dtype_name(gt.type));
            m.num_experts += 1;
            m.dims.back() += 1;
            m.num_elems += gt.num_elems();
            m.num_bytes += gt.num_bytes;
            m.bytes_per_expert = gt.num_bytes;
            m.elems_per_expert = gt.num_elems();
            continue;
        }
        if (t.role == TensorRole::kExpert) {
            // Merged experts: ne[2] (weights) or ne[1] (biases) counts them.
            const uint64_t n = t.dims.size() >= 3 ? t.dims[2] : t.dims.size() == 2 ? t.dims[1] : 1;
            MOERIG_CHECK(n > 0 && t.num_bytes % n == 0, FormatError,
                         "{}: tensor {} has {} bytes, not divisible by its {} experts", g.path(), t.name, t.num_bytes,
                         n);
            t.num_experts = static_cast<uint32_t>(n);
        }
        t.bytes_per_expert = t.num_bytes / t.num_experts;
        t.elems_per_expert = t.num_elems / t.num_experts;
        const bool mtp = layer >= static_cast<int32_t>(a.spec.num_layers);
        (mtp ? a.mtp_tensors : a.tensors).push_back(std::move(t));
    }
    finish_account(a);
    return a;
}

ModelAccount account_gguf_file(const std::filesystem::path& path) {
    const formats::GgufModel g(path);
    return account_gguf(g);
}

}  // namespace moerig::sharding
