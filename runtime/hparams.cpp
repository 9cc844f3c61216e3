// Reads ModelHParams from GGUF metadata. Keys and defaults follow llama.cpp's loader for each
// architecture (src/models/<arch>.cpp, load_arch_hparams), so both engines see the same model.
#include "runtime/hparams.h"

#include <algorithm>
#include <cmath>

#include "formats/gguf.h"
#include "kernels/error.h"

namespace moerig::runtime {

const char* supported_architectures() {
    return "llama (incl. Mixtral), qwen2moe, qwen3moe, olmoe, deepseek2, gpt-oss";
}

bool ModelHParams::is_eog(int32_t token) const {
    return std::find(eog_ids.begin(), eog_ids.end(), token) != eog_ids.end();
}

namespace {

Arch parse_arch(const std::string& name, const std::string& path) {
    if (name == "llama") return Arch::kLlama;
    if (name == "qwen2moe") return Arch::kQwen2Moe;
    if (name == "qwen3moe") return Arch::kQwen3Moe;
    if (name == "olmoe") return Arch::kOlmoe;
    if (name == "deepseek2") return Arch::kDeepseek2;
    if (name == "gpt-oss") return Arch::kGptOss;
    MOERIG_THROW(UnsupportedError, "{}: general.architecture '{}' is not supported; supported: {}", path, name,
                 supported_architectures());
}

void read_vocab(const formats::GgufModel& g, ModelHParams& hp) {
    const auto tokens =
        g.find("tokenizer.ggml.tokens") ? g.get_strings("tokenizer.ggml.tokens") : std::vector<std::string>{};
    auto id_opt = [&](const char* key) -> int32_t {
        auto v = g.get_u64_opt(key);
        return v ? static_cast<int32_t>(*v) : -1;
    };
    hp.bos_id = id_opt("tokenizer.ggml.bos_token_id");
    hp.eos_id = id_opt("tokenizer.ggml.eos_token_id");
    const std::string tok_model = g.get_string_opt("tokenizer.ggml.model").value_or("");
    hp.add_bos = g.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(tok_model == "llama");
    for (const char* key :
         {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
        const int32_t id = id_opt(key);
        if (id >= 0) hp.eog_ids.push_back(id);
    }
    // llama.cpp also treats these texts as end of generation (llama-vocab.cpp, special_eog_ids).
    static const char* const kEogTexts[] = {
        "<|eot_id|>",           "<|im_end|>",    "<|end|>",    "<|return|>", "<|call|>",
        "<end_of_turn>",        "<|endoftext|>", "<|eom_id|>", "<EOT>",      "<|end_of_text|>",
        "<｜end▁of▁sentence｜>"};
    for (size_t i = 0; i < tokens.size(); ++i) {
        for (const char* t : kEogTexts) {
            if (tokens[i] == t) hp.eog_ids.push_back(static_cast<int32_t>(i));
        }
    }
    std::sort(hp.eog_ids.begin(), hp.eog_ids.end());
    hp.eog_ids.erase(std::unique(hp.eog_ids.begin(), hp.eog_ids.end()), hp.eog_ids.end());
    if (hp.n_vocab == 0) hp.n_vocab = static_cast<int64_t>(tokens.size());
}

/// gpt-oss: window size, which layers slide (llama.cpp's load_swa_pattern: a per-layer bool array, or a period
/// n where every layer but each n-th slides; default 2) and the sliding layers' RoPE base.
void read_sliding_window(const formats::GgufModel& g, ModelHParams& hp) {
    const std::string a = hp.arch_name;
    hp.n_swa = static_cast<int64_t>(g.get_u64(a + ".attention.sliding_window"));
    hp.swa_layers.assign(static_cast<size_t>(hp.n_layer), false);
    const std::string pattern_key = a + ".attention.sliding_window_pattern";
    const formats::GgufValue* pattern = g.find(pattern_key);
    if (pattern && pattern->type == formats::GgufType::ARRAY) {
        const auto flags = g.get_ints(pattern_key);
        MOERIG_CHECK(static_cast<int64_t>(flags.size()) >= hp.n_layer, FormatError,
                     "{}: {} has {} entries, expected one per layer ({})", g.path(), pattern_key, flags.size(),
                     hp.n_layer);
        for (int64_t il = 0; il < hp.n_layer; ++il) hp.swa_layers[static_cast<size_t>(il)] = flags[il] != 0;
    } else {
        const int64_t period = pattern ? static_cast<int64_t>(g.get_u64(pattern_key)) : 2;
        for (int64_t il = 0; il < hp.n_layer; ++il)
            hp.swa_layers[static_cast<size_t>(il)] = period == 0 || il % period < period - 1;
    }
    hp.rope_freq_base_swa = static_cast<float>(g.get_f64_opt(a + ".rope.freq_base_swa").value_or(hp.rope_freq_base));
    MOERIG_CHECK(hp.n_swa > 0, FormatError, "{}: {}.attention.sliding_window must be > 0", g.path(), a);
}

}  // namespace

ModelHParams ModelHParams::from_gguf(const formats::GgufModel& g) {
    ModelHParams hp;
    hp.arch_name = g.architecture();
    hp.arch = parse_arch(hp.arch_name, g.path());
    const std::string& a = hp.arch_name;
    auto key = [&](const char* suffix) { return a + "." + suffix; };
    auto u64_or = [&](const char* suffix, int64_t dflt) {
        auto v = g.get_u64_opt(key(suffix));
        return v ? static_cast<int64_t>(*v) : dflt;
    };
    auto f32_or = [&](const char* suffix, float dflt) {
        auto v = g.get_f64_opt(key(suffix));
        return v ? static_cast<float>(*v) : dflt;
    };

    hp.n_layer = static_cast<int64_t>(g.get_u64(key("block_count")));
    hp.n_embd = static_cast<int64_t>(g.get_u64(key("embedding_length")));
    hp.n_head = static_cast<int64_t>(g.get_u64(key("attention.head_count")));
    hp.n_head_kv = u64_or("attention.head_count_kv", hp.n_head);
    hp.n_ctx_train = u64_or("context_length", 4096);
    hp.n_ff = u64_or("feed_forward_length", 0);
    hp.n_vocab = u64_or("vocab_size", 0);
    hp.rms_eps = static_cast<float>(g.get_f64(key("attention.layer_norm_rms_epsilon")));
    MOERIG_CHECK(hp.n_layer > 0 && hp.n_embd > 0 && hp.n_head > 0 && hp.n_head_kv > 0 && hp.n_head % hp.n_head_kv == 0,
                 FormatError, "{}: inconsistent {}.block_count/embedding_length/attention.head_count(_kv)", g.path(),
                 a);

    hp.head_dim_k = u64_or("attention.key_length", hp.n_embd / hp.n_head);
    hp.head_dim_v = u64_or("attention.value_length", hp.n_embd / hp.n_head);
    hp.n_rot = u64_or("rope.dimension_count", hp.head_dim_k);
    hp.rope_freq_base = f32_or("rope.freq_base", 10000.f);
    const std::string scaling = g.get_string_opt(key("rope.scaling.type")).value_or("none");
    const float scale_factor = f32_or("rope.scaling.factor", 0.f);
    hp.rope_freq_scale = scale_factor > 0.f && scaling != "none" ? 1.f / scale_factor : 1.f;
    hp.rope_n_ctx_orig = u64_or("rope.scaling.original_context_length", hp.n_ctx_train);
    MOERIG_CHECK(scaling == "none" || scaling == "linear" || scaling == "yarn", UnsupportedError,
                 "{}: {}.rope.scaling.type '{}' is not supported; supported: none, linear, yarn", g.path(), a, scaling);
    hp.yarn_log_mul = f32_or("rope.scaling.yarn_log_multiplier", 0.f);
    if (hp.arch == Arch::kDeepseek2) hp.yarn_log_mul /= 0.1f;  // llama.cpp cancels the converter's 0.1
    if (scaling == "yarn") {
        // llama.cpp's context setup (llama-context.cpp): ext_factor 1 and an attention factor that cancels
        // the mscale ggml's rope multiplies in, corrected by DeepSeek's mscale_all_dim.
        hp.rope_yarn = true;
        hp.yarn_ext_factor = 1.f;
        hp.yarn_beta_fast = f32_or("rope.scaling.yarn_beta_fast", 32.f);
        hp.yarn_beta_slow = f32_or("rope.scaling.yarn_beta_slow", 1.f);
        const float factor = 1.f / hp.rope_freq_scale;
        auto get_mscale = [](float scale, float m) { return scale <= 1.f ? 1.f : 0.1f * m * std::log(scale) + 1.f; };
        if (hp.yarn_log_mul != 0.f) {
            const float all_dims = hp.yarn_log_mul;
            const float mscale = hp.arch == Arch::kDeepseek2 && all_dims != 1.f ? all_dims : 1.f;
            hp.yarn_attn_factor = get_mscale(factor, mscale) / get_mscale(factor, all_dims);
        } else {
            hp.yarn_attn_factor = get_mscale(factor, 1.f);
        }
        hp.yarn_attn_factor *= 1.f / (1.f + 0.1f * std::log(factor));
    }
    hp.yarn_attn_factor *= f32_or("rope.scaling.attn_factor", 1.f);
    hp.rope_type = hp.arch == Arch::kLlama || hp.arch == Arch::kDeepseek2 ? RopeType::kNorm : RopeType::kNeox;
    // Checkpoints imported from Hugging Face (runtime/hf_model.cpp) keep their own conventions where llama.cpp's
    // converter rewrites them: unpermuted q/k (rotate halves) and the config's norm_topk_prob.
    const bool hf_import = g.get_string_opt("moerig.import").value_or("") == "huggingface";
    if (hf_import) {
        const auto neox = g.get_bool_opt("moerig.rope_neox");
        if (neox) hp.rope_type = *neox ? RopeType::kNeox : RopeType::kNorm;
    }

    hp.n_expert = u64_or("expert_count", 0);
    hp.n_expert_used = u64_or("expert_used_count", 0);
    hp.n_expert_shared = u64_or("expert_shared_count", 0);
    hp.n_ff_exp = u64_or("expert_feed_forward_length", 0);
    hp.n_ff_shexp = u64_or("expert_shared_feed_forward_length", 0);
    hp.n_layer_dense_lead = u64_or("leading_dense_block_count", 0);
    hp.n_expert_groups = u64_or("expert_group_count", 0);
    hp.n_group_used = u64_or("expert_group_used_count", 0);
    hp.expert_weights_scale = f32_or("expert_weights_scale", 0.f);
    hp.expert_weights_norm = g.get_bool_opt(key("expert_weights_norm")).value_or(false);
    const int64_t gating = u64_or("expert_gating_func", 1);
    MOERIG_CHECK(gating == 1 || gating == 2, UnsupportedError,
                 "{}: {}.expert_gating_func {} is not supported; supported: 1 (softmax), 2 (sigmoid)", g.path(), a,
                 gating);
    hp.gating_func = static_cast<GatingFunc>(gating);
    // Which graphs renormalise the selected weights is fixed per architecture in llama.cpp.
    if (!hf_import && (hp.arch == Arch::kLlama || hp.arch == Arch::kQwen3Moe)) hp.expert_weights_norm = true;
    if (!hf_import && (hp.arch == Arch::kQwen2Moe || hp.arch == Arch::kOlmoe)) hp.expert_weights_norm = false;
    if (hp.arch != Arch::kDeepseek2) hp.gating_func = GatingFunc::kSoftmax;
    if (hp.arch == Arch::kGptOss) {  // openai-moe graph: softmax over the selected logits, no renormalisation
        hp.gating_func = GatingFunc::kSoftmaxWeight;
        hp.expert_weights_norm = false;
    }
    if (hp.arch != Arch::kDeepseek2) hp.n_layer_dense_lead = 0;
    // Without the key, llama.cpp sizes Mixtral's and OLMoE's experts by feed_forward_length, Qwen3's by
    // feed_forward_length / expert_used_count.
    if (hp.n_ff_exp == 0)
        hp.n_ff_exp = hp.arch == Arch::kQwen3Moe && hp.n_expert_used > 0 ? hp.n_ff / hp.n_expert_used : hp.n_ff;
    MOERIG_CHECK(hp.n_expert == 0 || (hp.n_expert_used > 0 && hp.n_expert_used <= hp.n_expert), FormatError,
                 "{}: {}.expert_used_count {} must be in 1..expert_count {}", g.path(), a, hp.n_expert_used,
                 hp.n_expert);
    MOERIG_CHECK(hp.n_expert_groups <= 1 || (hp.n_expert % hp.n_expert_groups == 0 && hp.n_group_used > 0), FormatError,
                 "{}: {}.expert_group_count {} must divide expert_count {}", g.path(), a, hp.n_expert_groups,
                 hp.n_expert);
    if (hp.arch != Arch::kLlama && hp.arch != Arch::kDeepseek2) {
        MOERIG_CHECK(hp.n_expert > 0, FormatError, "{}: {}.expert_count must be > 0 for {}", g.path(), a, a);
    }

    if (hp.is_mla()) {
        hp.q_lora_rank = u64_or("attention.q_lora_rank", 0);
        hp.kv_lora_rank = static_cast<int64_t>(g.get_u64(key("attention.kv_lora_rank")));
        // Files converted for absorbed MLA store the per-head sizes under *_mla and the latent sizes plain.
        hp.head_dim_k = u64_or("attention.key_length_mla", hp.head_dim_k);
        hp.head_dim_v = u64_or("attention.value_length_mla", hp.head_dim_v);
        hp.qk_nope_dim = hp.head_dim_k - hp.n_rot;
        hp.n_head_kv = hp.n_head;
        MOERIG_CHECK(hp.qk_nope_dim > 0, FormatError, "{}: {}.attention.key_length {} must exceed rope dims {}",
                     g.path(), a, hp.head_dim_k, hp.n_rot);
    }
    MOERIG_CHECK(hp.n_rot > 0 && hp.n_rot <= hp.head_dim_k && hp.n_rot % 2 == 0, FormatError,
                 "{}: {}.rope.dimension_count {} must be even and <= head size {}", g.path(), a, hp.n_rot,
                 hp.head_dim_k);
    if (hp.arch == Arch::kGptOss) read_sliding_window(g, hp);
    read_vocab(g, hp);
    return hp;
}

kernels::RopeParams rope_params(const ModelHParams& hp, const float* freq_factors) {
    kernels::RopeParams p;
    p.n_dims = hp.n_rot;
    p.neox = hp.rope_type == RopeType::kNeox;
    p.freq_base = hp.rope_freq_base;
    p.freq_scale = hp.rope_freq_scale;
    p.ext_factor = hp.yarn_ext_factor;
    p.attn_factor = hp.yarn_attn_factor;
    p.beta_fast = hp.yarn_beta_fast;
    p.beta_slow = hp.yarn_beta_slow;
    p.n_ctx_orig = hp.rope_n_ctx_orig;
    p.freq_factors = freq_factors;
    return p;
}

}  // namespace moerig::runtime
