// Binds GGUF tensors to ModelWeights: looks each one up by llama.cpp's name, checks its shape against
// the hyperparameters, and hands out zero-copy views. Only MLA's k half of wkv_b is re-laid out (transposed)
// because the absorbed attention multiplies by its transpose.
#include "runtime/weights.h"

#include <fmt/ranges.h>

#include <string>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "kernels/quant.h"

namespace moerig::runtime {

class WeightBinder {
  public:
    WeightBinder(const formats::GgufModel& g, ModelWeights& w) : g_(g), w_(w) {}

    const formats::GgufTensor* find(const std::string& name) const { return g_.find_tensor(name); }

    const formats::GgufTensor& require(const std::string& name) const {
        const auto* t = find(name);
        MOERIG_CHECK(t, FormatError, "{}: tensor '{}' is missing (required for {})", g_.path(),
                     g_.describe_tensor(name), g_.architecture());
        return *t;
    }

    void check_shape(const formats::GgufTensor& t, std::vector<int64_t> want) const {
        std::vector<int64_t> have(t.dims.begin(), t.dims.end());
        while (have.size() < want.size()) have.push_back(1);
        while (want.size() < have.size()) want.push_back(1);
        MOERIG_CHECK(have == want, FormatError,
                     "{}: tensor '{}' has shape [{}], expected [{}] (GGUF order, innermost first)", g_.path(),
                     g_.describe_tensor(t.name), fmt::join(t.dims, ", "), fmt::join(want, ", "));
    }

    void check_type(const formats::GgufTensor& t) const {
        MOERIG_CHECK(kernels::can_matmul(t.type), UnsupportedError,
                     "{}: tensor '{}' has type {}, which the CPU engine does not support; supported: F32, F16, "
                     "BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4",
                     g_.path(), g_.describe_tensor(t.name), dtype_name(t.type));
    }

    /// A 2-D matrix (rows, cols) = GGUF ne {cols, rows}.
    WeightView matrix(const std::string& name, int64_t rows, int64_t cols, bool required = true) const {
        const auto* t = required ? &require(name) : find(name);
        if (!t) return {};
        check_shape(*t, {cols, rows});
        check_type(*t);
        return WeightView::dense(t->type, rows, cols, t->data);
    }

    /// Routed experts: the merged tensor `merged` (ne {cols, rows, num_experts}), or, when it is absent and
    /// `per_expert_fmt` names existing tensors, one tensor per expert (ne {cols, rows} each, one type for all).
    ExpertTensor experts(const std::string& merged, const std::string& per_expert_fmt, int64_t rows, int64_t cols,
                         int64_t num_experts) const {
        const auto per_expert_name = [&](int64_t e) { return fmt::format(fmt::runtime(per_expert_fmt), e); };
        // Any per-expert tensor (expert 0 may be the one missing) selects the per-expert layout.
        if (find(merged) || (!find(per_expert_name(0)) && !find(per_expert_name(1)))) {
            const auto& t = require(merged);
            check_shape(t, {cols, rows, num_experts});
            check_type(t);
            return ExpertTensor{t.type, rows, cols, num_experts, t.data, {}};
        }
        ExpertTensor out{DType::F32, rows, cols, num_experts, nullptr, {}};
        out.per_expert.reserve(static_cast<size_t>(num_experts));
        for (int64_t e = 0; e < num_experts; ++e) {
            const std::string name = per_expert_name(e);
            const auto* t = find(name);
            MOERIG_CHECK(t, FormatError, "{}: tensor '{}' is missing (per-expert tensors of {} need experts 0..{})",
                         g_.path(), g_.describe_tensor(name), merged, num_experts - 1);
            check_shape(*t, {cols, rows});
            check_type(*t);
            if (e == 0) out.type = t->type;
            MOERIG_CHECK(t->type == out.type, FormatError, "{}: tensor '{}' has type {} but expert 0 has type {}",
                         g_.path(), g_.describe_tensor(name), dtype_name(t->type), dtype_name(out.type));
            out.per_expert.push_back(t->data);
        }
        MOERIG_CHECK(!find(per_expert_name(num_experts)), FormatError,
                     "{}: tensor '{}' exists but the model has {} experts", g_.path(),
                     g_.describe_tensor(per_expert_name(num_experts)), num_experts);
        out.data = out.per_expert.front();
        return out;
    }

    /// A float vector; converted (and owned) when stored as F16/BF16.
    const float* vec(const std::string& name, int64_t n, bool required = true) const {
        const auto* t = required ? &require(name) : find(name);
        if (!t) return nullptr;
        check_shape(*t, {n});
        if (t->type == DType::F32) return reinterpret_cast<const float*>(t->data);
        return dequantized(*t).data();
    }

    /// A float matrix [rows][cols] (GGUF ne {cols, rows}), e.g. per-expert biases; converted when not F32.
    const float* vec2(const std::string& name, int64_t cols, int64_t rows) const {
        const auto& t = require(name);
        check_shape(t, {cols, rows});
        if (t.type == DType::F32) return reinterpret_cast<const float*>(t.data);
        return dequantized(t).data();
    }

    std::vector<float>& dequantized(const formats::GgufTensor& t) const {
        MOERIG_CHECK(kernels::can_dequantize(t.type), UnsupportedError, "{}: tensor '{}' has unsupported type {}",
                     g_.path(), g_.describe_tensor(t.name), dtype_name(t.type));
        auto& out = w_.owned_.emplace_back(t.num_elems());
        kernels::dequantize_row(t.type, t.data, out.data(), static_cast<int64_t>(t.num_elems()));
        return out;
    }

    std::vector<float>& own(size_t n) const { return w_.owned_.emplace_back(n); }

  private:
    const formats::GgufModel& g_;
    ModelWeights& w_;
};

namespace {

std::string blk(int64_t i, const char* name) {
    return fmt::format("blk.{}.{}.weight", i, name);
}
std::string blk_bias(int64_t i, const char* name) {
    return fmt::format("blk.{}.{}.bias", i, name);
}

void bind_mla(const WeightBinder& b, const ModelHParams& hp, int64_t i, LayerWeights& l) {
    const int64_t n_embd = hp.n_embd, n_head = hp.n_head, rank = hp.kv_lora_rank, nope = hp.qk_nope_dim;
    const int64_t hk = hp.head_dim_k, hv = hp.head_dim_v;
    if (hp.q_lora_rank > 0) {
        l.wq_a = b.matrix(blk(i, "attn_q_a"), hp.q_lora_rank, n_embd);
        l.q_a_norm = b.vec(blk(i, "attn_q_a_norm"), hp.q_lora_rank);
        l.wq_b = b.matrix(blk(i, "attn_q_b"), n_head * hk, hp.q_lora_rank);
    } else {
        l.wq = b.matrix(blk(i, "attn_q"), n_head * hk, n_embd);
    }
    l.wkv_a_mqa = b.matrix(blk(i, "attn_kv_a_mqa"), rank + hp.n_rot, n_embd);
    l.kv_a_norm = b.vec(blk(i, "attn_kv_a_norm"), rank);
    l.wo = b.matrix(blk(i, "attn_output"), n_embd, n_head * hv);
    if (const auto* k_b = b.find(blk(i, "attn_k_b"))) {
        // Absorbed layout: wk_b ne {nope, rank, n_head}, wv_b ne {rank, hv, n_head}.
        const auto& v_b = b.require(blk(i, "attn_v_b"));
        b.check_shape(*k_b, {nope, rank, n_head});
        b.check_shape(v_b, {rank, hv, n_head});
        b.check_type(*k_b);
        b.check_type(v_b);
        for (int64_t h = 0; h < n_head; ++h) {
            l.wk_b.push_back(WeightView::expert(k_b->type, rank, nope, k_b->data, h));
            l.wv_b.push_back(WeightView::expert(v_b.type, hv, rank, v_b.data, h));
        }
        return;
    }
    // Older files: wkv_b ne {rank, n_head*(nope+hv)}; per head nope rows of k then hv rows of v.
    const auto& kv_b = b.require(blk(i, "attn_kv_b"));
    b.check_shape(kv_b, {rank, n_head * (nope + hv)});
    b.check_type(kv_b);
    const auto full = WeightView::dense(kv_b.type, n_head * (nope + hv), rank, kv_b.data);
    std::vector<float> row(static_cast<size_t>(rank));
    for (int64_t h = 0; h < n_head; ++h) {
        l.wv_b.push_back(full.slice_rows(h * (nope + hv) + nope, (h + 1) * (nope + hv)));
        auto& kt = b.own(static_cast<size_t>(rank * nope));  // (rank, nope): transposed k half
        for (int64_t r = 0; r < nope; ++r) {
            kernels::dequantize_row(kv_b.type, full.row(h * (nope + hv) + r), row.data(), rank);
            for (int64_t c = 0; c < rank; ++c) kt[static_cast<size_t>(c * nope + r)] = row[static_cast<size_t>(c)];
        }
        l.wk_b.push_back(WeightView::dense(DType::F32, rank, nope, kt.data()));
    }
}

void bind_layer(const WeightBinder& b, const ModelHParams& hp, int64_t i, LayerWeights& l) {
    const int64_t n_embd = hp.n_embd;
    l.attn_norm = b.vec(blk(i, "attn_norm"), n_embd);
    if (hp.is_mla()) {
        bind_mla(b, hp, i, l);
    } else {
        const int64_t q_dim = hp.n_head * hp.head_dim_k, kv_dim = hp.n_head_kv * hp.head_dim_k;
        const int64_t v_dim = hp.n_head_kv * hp.head_dim_v;
        MOERIG_CHECK(!b.find(blk(i, "attn_qkv")), UnsupportedError,
                     "blk.{}.attn_qkv: fused QKV tensors are not supported; expected attn_q, attn_k, attn_v", i);
        l.wq = b.matrix(blk(i, "attn_q"), q_dim, n_embd);
        l.wk = b.matrix(blk(i, "attn_k"), kv_dim, n_embd);
        l.wv = b.matrix(blk(i, "attn_v"), v_dim, n_embd);
        l.wo = b.matrix(blk(i, "attn_output"), n_embd, hp.n_head * hp.head_dim_v);
        l.bq = b.vec(blk_bias(i, "attn_q"), q_dim, false);
        l.bk = b.vec(blk_bias(i, "attn_k"), kv_dim, false);
        l.bv = b.vec(blk_bias(i, "attn_v"), v_dim, false);
        if (hp.arch == Arch::kGptOss) {
            l.bo = b.vec(blk_bias(i, "attn_output"), n_embd);
            l.sinks = b.vec(blk(i, "attn_sinks"), hp.n_head);
        }
        if (hp.arch == Arch::kQwen3Moe) {
            l.q_norm = b.vec(blk(i, "attn_q_norm"), hp.head_dim_k);
            l.k_norm = b.vec(blk(i, "attn_k_norm"), hp.head_dim_k);
        } else if (hp.arch == Arch::kOlmoe) {
            l.q_norm = b.vec(blk(i, "attn_q_norm"), q_dim);
            l.k_norm = b.vec(blk(i, "attn_k_norm"), kv_dim);
        }
    }
    // gpt-oss names the pre-FFN norm post_attention_norm.
    l.ffn_norm = b.vec(blk(i, hp.arch == Arch::kGptOss ? "post_attention_norm" : "ffn_norm"), n_embd);
    const bool moe = hp.is_moe_layer(i) && (hp.arch != Arch::kLlama || b.find(blk(i, "ffn_gate_inp")));
    if (!moe) {
        const auto* gate = b.find(blk(i, "ffn_gate"));
        const int64_t n_ff = gate && gate->dims.size() >= 2 ? static_cast<int64_t>(gate->dims[1]) : hp.n_ff;
        l.ffn_gate = b.matrix(blk(i, "ffn_gate"), n_ff, n_embd);
        l.ffn_up = b.matrix(blk(i, "ffn_up"), n_ff, n_embd);
        l.ffn_down = b.matrix(blk(i, "ffn_down"), n_embd, n_ff);
        return;
    }
    const int64_t n_exp = hp.n_expert, n_ff_exp = hp.n_ff_exp;
    l.ffn_gate_inp = b.matrix(blk(i, "ffn_gate_inp"), n_exp, n_embd);
    const auto per_expert = [&](const char* name) { return fmt::format("blk.{}.{}.{{}}.weight", i, name); };
    l.gate_exps = b.experts(blk(i, "ffn_gate_exps"), per_expert("ffn_gate"), n_ff_exp, n_embd, n_exp);
    l.up_exps = b.experts(blk(i, "ffn_up_exps"), per_expert("ffn_up"), n_ff_exp, n_embd, n_exp);
    l.down_exps = b.experts(blk(i, "ffn_down_exps"), per_expert("ffn_down"), n_embd, n_ff_exp, n_exp);
    if (hp.arch == Arch::kGptOss) {
        l.ffn_gate_inp_b = b.vec(blk_bias(i, "ffn_gate_inp"), n_exp);
        l.gate_exps_b = b.vec2(blk_bias(i, "ffn_gate_exps"), n_ff_exp, n_exp);
        l.up_exps_b = b.vec2(blk_bias(i, "ffn_up_exps"), n_ff_exp, n_exp);
        l.down_exps_b = b.vec2(blk_bias(i, "ffn_down_exps"), n_embd, n_exp);
        l.swiglu_oai = true;
    } else if (hp.arch == Arch::kDeepseek2) {
        l.exp_probs_b = b.vec(fmt::format("blk.{}.exp_probs_b.bias", i), n_exp, false);
        const int64_t n_ff_sh = n_ff_exp * hp.n_expert_shared;
        if (n_ff_sh > 0) {
            l.gate_shexp = b.matrix(blk(i, "ffn_gate_shexp"), n_ff_sh, n_embd);
            l.up_shexp = b.matrix(blk(i, "ffn_up_shexp"), n_ff_sh, n_embd);
            l.down_shexp = b.matrix(blk(i, "ffn_down_shexp"), n_embd, n_ff_sh);
        }
    } else if (hp.arch == Arch::kQwen2Moe) {
        const auto& g = b.require(blk(i, "ffn_gate_shexp"));
        const int64_t n_ff_sh = hp.n_ff_shexp > 0 ? hp.n_ff_shexp : static_cast<int64_t>(g.dims.at(1));
        l.gate_inp_shexp = b.matrix(blk(i, "ffn_gate_inp_shexp"), 1, n_embd);
        l.gate_shexp = b.matrix(blk(i, "ffn_gate_shexp"), n_ff_sh, n_embd);
        l.up_shexp = b.matrix(blk(i, "ffn_up_shexp"), n_ff_sh, n_embd);
        l.down_shexp = b.matrix(blk(i, "ffn_down_shexp"), n_embd, n_ff_sh);
    }
}

}  // namespace

ModelWeights ModelWeights::bind(const formats::GgufModel& g, const ModelHParams& hp) {
    ModelWeights w;
    WeightBinder b(g, w);
    const auto& embd = b.require("token_embd.weight");
    MOERIG_CHECK(embd.dims.size() == 2 && static_cast<int64_t>(embd.dims[0]) == hp.n_embd, FormatError,
                 "{}: tensor 'token_embd.weight' has shape [{}], expected [{}, n_vocab]", g.path(),
                 fmt::join(embd.dims, ", "), hp.n_embd);
    const int64_t n_vocab = static_cast<int64_t>(embd.dims[1]);
    MOERIG_CHECK(hp.n_vocab == 0 || hp.n_vocab == n_vocab, FormatError,
                 "{}: token_embd.weight has {} rows but the vocabulary has {} tokens", g.path(), n_vocab, hp.n_vocab);
    MOERIG_CHECK(kernels::can_dequantize(embd.type), UnsupportedError,
                 "{}: tensor 'token_embd.weight' has unsupported type {}", g.path(), dtype_name(embd.type));
    w.token_embd = WeightView::dense(embd.type, n_vocab, hp.n_embd, embd.data);
    w.output_norm = b.vec("output_norm.weight", hp.n_embd);
    w.output = b.find("output.weight") ? b.matrix("output.weight", n_vocab, hp.n_embd) : w.token_embd;
    if (!b.find("output.weight")) b.check_type(embd);
    w.rope_freqs = b.vec("rope_freqs.weight", hp.n_rot / 2, false);
    w.layers.resize(static_cast<size_t>(hp.n_layer));
    for (int64_t i = 0; i < hp.n_layer; ++i) bind_layer(b, hp, i, w.layers[static_cast<size_t>(i)]);
    return w;
}

}  // namespace moerig::runtime
