// Attention step of the forward pass: grouped-query attention (Llama/Mixtral, Qwen-MoE, OLMoE; gpt-oss with
// sink logits, biases and alternating sliding-window layers) and
// DeepSeek's multi-head latent attention in llama.cpp's absorbed form (one latent K/V row per token,
// queries mapped into the latent space through wk_b, outputs back through wv_b).
#include <algorithm>
#include <cmath>

#include "kernels/attention.h"
#include "kernels/error.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "runtime/model.h"

namespace moerig::runtime {

namespace {

void add_bias(float* y, const float* bias, int64_t num_tokens, int64_t n) {
    if (!bias) return;
    for (int64_t t = 0; t < num_tokens; ++t) kernels::add(y + t * n, bias, y + t * n, n);
}

/// Absolute position of every row of the step, segment by segment.
std::vector<int32_t> row_positions(std::span<const AttentionSegment> segments, int64_t num_rows) {
    std::vector<int32_t> pos(static_cast<size_t>(num_rows));
    for (const AttentionSegment& s : segments) {
        for (int64_t t = 0; t < s.num_tokens; ++t) {
            pos[static_cast<size_t>(s.row_begin + t)] = static_cast<int32_t>(s.n_past + t);
        }
    }
    return pos;
}

int64_t total_rows(std::span<const AttentionSegment> segments) {
    return segments.back().row_begin + segments.back().num_tokens;
}

}  // namespace

void Model::attention(int64_t layer_idx, float* x, int64_t num_tokens, int64_t n_past, KvCache& kv,
                      kernels::ThreadPool& pool) const {
    const AttentionSegment one{.row_begin = 0, .num_tokens = num_tokens, .n_past = n_past, .kv = &kv};
    attention(layer_idx, x, std::span(&one, 1), pool);
}

void Model::attention(int64_t layer_idx, float* x, std::span<const AttentionSegment> segments,
                      kernels::ThreadPool& pool) const {
    const auto& hp = hparams_;
    MOERIG_CHECK(!segments.empty(), ConfigError, "attention: a step needs at least one sequence");
    int64_t row = 0;
    for (const AttentionSegment& s : segments) {
        MOERIG_ASSERT(s.kv && s.row_begin == row && s.num_tokens > 0);
        MOERIG_CHECK(s.n_past + s.num_tokens <= s.kv->capacity(), ConfigError,
                     "context full: {} cached + {} new tokens exceed the context of {} positions", s.n_past,
                     s.num_tokens, s.kv->capacity());
        MOERIG_CHECK(s.kv->max_step_rows() == 0 || s.num_tokens <= s.kv->max_step_rows(), ConfigError,
                     "a step of {} new tokens for one sequence exceeds the {} its sliding-window KV ring was sized "
                     "for (a ring of {} positions for a window of {}); split the step",
                     s.num_tokens, s.kv->max_step_rows(), s.kv->ring(), s.kv->window());
        row += s.num_tokens;
    }
    const int64_t num_tokens = row;
    const auto& l = weights_.layers.at(static_cast<size_t>(layer_idx));
    const int64_t n = num_tokens * hp.n_embd;
    std::vector<float> xn(static_cast<size_t>(n)), out(static_cast<size_t>(n));
    kernels::rms_norm_rows(x, l.attn_norm, xn.data(), num_tokens, hp.n_embd, hp.rms_eps);
    if (hp.is_mla()) {
        attention_mla(layer_idx, xn.data(), out.data(), segments, pool);
    } else {
        attention_gqa(layer_idx, xn.data(), out.data(), segments, pool);
    }
    kernels::add(x, out.data(), x, n);
}

void Model::attention_gqa(int64_t layer_idx, const float* xn, float* out, std::span<const AttentionSegment> segments,
                          kernels::ThreadPool& pool) const {
    const auto& hp = hparams_;
    const int64_t num_tokens = total_rows(segments);
    const auto& l = weights_.layers[static_cast<size_t>(layer_idx)];
    const int64_t hd = hp.head_dim_k, hdv = hp.head_dim_v;
    const int64_t q_dim = hp.n_head * hd, k_dim = hp.n_head_kv * hd, v_dim = hp.n_head_kv * hdv;
    std::vector<float> q(static_cast<size_t>(num_tokens * q_dim)), k(static_cast<size_t>(num_tokens * k_dim)),
        v(static_cast<size_t>(num_tokens * v_dim));
    kernels::matmul(l.wq, xn, num_tokens, q.data(), pool);
    kernels::matmul(l.wk, xn, num_tokens, k.data(), pool);
    kernels::matmul(l.wv, xn, num_tokens, v.data(), pool);
    add_bias(q.data(), l.bq, num_tokens, q_dim);
    add_bias(k.data(), l.bk, num_tokens, k_dim);
    add_bias(v.data(), l.bv, num_tokens, v_dim);
    if (hp.arch == Arch::kQwen3Moe) {  // per-head RMS norm of q and k, before RoPE
        kernels::rms_norm_rows(q.data(), l.q_norm, q.data(), num_tokens * hp.n_head, hd, hp.rms_eps);
        kernels::rms_norm_rows(k.data(), l.k_norm, k.data(), num_tokens * hp.n_head_kv, hd, hp.rms_eps);
    } else if (hp.arch == Arch::kOlmoe) {  // RMS norm over the whole q and k vectors
        kernels::rms_norm_rows(q.data(), l.q_norm, q.data(), num_tokens, q_dim, hp.rms_eps);
        kernels::rms_norm_rows(k.data(), l.k_norm, k.data(), num_tokens, k_dim, hp.rms_eps);
    }
    const std::vector<int32_t> pos = row_positions(segments, num_tokens);
    auto rp = rope_params(hp, weights_.rope_freqs);
    const bool swa = hp.is_swa(layer_idx);
    if (swa) rp.freq_base = hp.rope_freq_base_swa;
    kernels::rope(rp, q.data(), num_tokens, hp.n_head, q_dim, hd, pos.data());
    kernels::rope(rp, k.data(), num_tokens, hp.n_head_kv, k_dim, hd, pos.data());
    for (const AttentionSegment& s : segments) {
        for (int64_t t = 0; t < s.num_tokens; ++t) {
            s.kv->write_k(layer_idx, s.n_past + t, k.data() + (s.row_begin + t) * k_dim);
            s.kv->write_v(layer_idx, s.n_past + t, v.data() + (s.row_begin + t) * v_dim);
        }
    }

    kernels::AttentionParams ap;
    ap.num_heads = hp.n_head;
    ap.num_kv_heads = hp.n_head_kv;
    ap.head_dim = hd;
    ap.v_head_dim = hdv;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ap.sliding_window = swa ? hp.n_swa : 0;
    ap.sinks = l.sinks;
    std::vector<float> att(static_cast<size_t>(num_tokens * hp.n_head * hdv));
    for (const AttentionSegment& s : segments) {
        kernels::AttentionIo io;
        io.q = q.data() + s.row_begin * q_dim;
        io.q_token_stride = q_dim;
        io.q_head_stride = hd;
        s.kv->bind(layer_idx, io);
        io.k_head_stride = hd;
        io.v_head_stride = hdv;
        io.out = att.data() + s.row_begin * hp.n_head * hdv;
        io.out_token_stride = hp.n_head * hdv;
        io.out_head_stride = hdv;
        io.num_tokens = s.num_tokens;
        io.kv_len = s.n_past + s.num_tokens;
        io.positions = pos.data() + s.row_begin;
        kernels::attention(ap, io, pool);
    }
    kernels::matmul(l.wo, att.data(), num_tokens, out, pool);
    add_bias(out, l.bo, num_tokens, hp.n_embd);
}

void Model::attention_mla(int64_t layer_idx, const float* xn, float* out, std::span<const AttentionSegment> segments,
                          kernels::ThreadPool& pool) const {
    const auto& hp = hparams_;
    const int64_t num_tokens = total_rows(segments);
    const auto& l = weights_.layers[static_cast<size_t>(layer_idx)];
    const int64_t n_head = hp.n_head, hk = hp.head_dim_k, hv = hp.head_dim_v, nope = hp.qk_nope_dim;
    const int64_t rank = hp.kv_lora_rank, n_rot = hp.n_rot, lat = rank + n_rot;
    const int64_t q_dim = n_head * hk;

    std::vector<float> q(static_cast<size_t>(num_tokens * q_dim));
    if (l.wq_a.data) {
        std::vector<float> qa(static_cast<size_t>(num_tokens * hp.q_lora_rank));
        kernels::matmul(l.wq_a, xn, num_tokens, qa.data(), pool);
        kernels::rms_norm_rows(qa.data(), l.q_a_norm, qa.data(), num_tokens, hp.q_lora_rank, hp.rms_eps);
        kernels::matmul(l.wq_b, qa.data(), num_tokens, q.data(), pool);
    } else {
        kernels::matmul(l.wq, xn, num_tokens, q.data(), pool);
    }
    std::vector<float> kvc(static_cast<size_t>(num_tokens * lat));
    kernels::matmul(l.wkv_a_mqa, xn, num_tokens, kvc.data(), pool);

    const std::vector<int32_t> pos = row_positions(segments, num_tokens);
    const auto rp = rope_params(hp, nullptr);
    // q_pe sits after q_nope in each head; k_pe after the latent in each row.
    kernels::rope(rp, q.data() + nope, num_tokens, n_head, q_dim, hk, pos.data());
    kernels::rope(rp, kvc.data() + rank, num_tokens, 1, lat, lat, pos.data());
    for (const AttentionSegment& s : segments) {
        for (int64_t t = 0; t < s.num_tokens; ++t) {
            float* row = kvc.data() + (s.row_begin + t) * lat;
            kernels::rms_norm(row, l.kv_a_norm, row, rank, hp.rms_eps);
            s.kv->write_k(layer_idx, s.n_past + t, row);
        }
    }

    // Absorbed queries: [wk_b[h] q_nope[h] (rank) | q_pe[h] (n_rot)] per head.
    const int64_t qa_dim = n_head * lat;
    std::vector<float> qa(static_cast<size_t>(num_tokens * qa_dim));
    for (int64_t h = 0; h < n_head; ++h) {
        kernels::TokenRows io{q.data() + h * hk, q_dim, nullptr, qa.data() + h * lat, qa_dim, nullptr, num_tokens};
        kernels::matmul(l.wk_b[static_cast<size_t>(h)], io, pool);
        for (int64_t t = 0; t < num_tokens; ++t) {
            std::copy_n(q.data() + t * q_dim + h * hk + nope, n_rot, qa.data() + t * qa_dim + h * lat + rank);
        }
    }

    // llama.cpp pre-scales kq_scale for YaRN (deepseek2.cpp): mscale from the original attention factor.
    const float attn_factor_org = hp.yarn_attn_factor * (1.f + 0.1f * std::log(1.f / hp.rope_freq_scale));
    const float mscale = attn_factor_org * (1.f + 0.1f * hp.yarn_log_mul * std::log(1.f / hp.rope_freq_scale));
    kernels::AttentionParams ap;
    ap.num_heads = n_head;
    ap.num_kv_heads = 1;
    ap.head_dim = lat;
    ap.v_head_dim = rank;
    ap.scale = mscale * mscale / std::sqrt(static_cast<float>(hk));
    std::vector<float> att(static_cast<size_t>(num_tokens * n_head * rank));
    for (const AttentionSegment& s : segments) {
        kernels::AttentionIo io;
        io.q = qa.data() + s.row_begin * qa_dim;
        io.q_token_stride = qa_dim;
        io.q_head_stride = lat;
        s.kv->bind_shared(layer_idx, io);  // V is the latent: the first `rank` values of each K row
        io.k_head_stride = 0;
        io.v_head_stride = 0;
        io.out = att.data() + s.row_begin * n_head * rank;
        io.out_token_stride = n_head * rank;
        io.out_head_stride = rank;
        io.num_tokens = s.num_tokens;
        io.kv_len = s.n_past + s.num_tokens;
        io.positions = pos.data() + s.row_begin;
        kernels::attention(ap, io, pool);
    }

    std::vector<float> o(static_cast<size_t>(num_tokens * n_head * hv));
    for (int64_t h = 0; h < n_head; ++h) {
        kernels::TokenRows io_v{att.data() + h * rank, n_head * rank, nullptr,   o.data() + h * hv,
                                n_head * hv,           nullptr,       num_tokens};
        kernels::matmul(l.wv_b[static_cast<size_t>(h)], io_v, pool);
    }
    kernels::matmul(l.wo, o.data(), num_tokens, out, pool);
}

}  // namespace moerig::runtime
