// Model loading and the non-attention forward steps: embedding, FFN (dense, or router -> experts + shared
// experts), output head, and the per-layer loop. Numerics follow llama.cpp's graphs (src/models/*.cpp).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "formats/gguf.h"
#include "kernels/error.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "kernels/router.h"
#include "runtime/hf_model.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

namespace moerig::runtime {

namespace {

/// Reads one byte per page of every tensor so that the first token does not pay for page faults; draws a
/// progress bar when stderr is a terminal.
void touch_weights(const formats::GgufModel& g) {
    const uint64_t total = g.total_tensor_bytes();
    if (total == 0) return;
    const long page = std::max(4096L, sysconf(_SC_PAGESIZE));
    uint64_t done = 0;
    int last_pct = -1;
    volatile uint8_t sink = 0;
    for (const auto& t : g.tensors()) {
        for (uint64_t off = 0; off < t.num_bytes; off += static_cast<uint64_t>(page)) sink = sink + t.data[off];
        done += t.num_bytes;
        const int pct = static_cast<int>(100 * done / total);
        if (pct != last_pct) {
            last_pct = pct;
            const int bars = pct / 4;
            std::fprintf(stderr, "\rloading %-25s [%.*s%*s] %3d%%", g.path().substr(g.path().rfind('/') + 1).c_str(),
                         bars, "#########################", 25 - bars, "", pct);
        }
    }
    std::fprintf(stderr, "\n");
}

/// The tokenizer of a Hugging Face checkpoint's tokenizer.json, once the tokenizer can read one
/// (Tokenizer::from_hf_json); nullptr until then, and the caller feeds token ids.
template <typename T>
std::unique_ptr<T> hf_tokenizer(const std::filesystem::path& tokenizer_json) {
    if constexpr (requires { T::from_hf_json(tokenizer_json.string()); }) {
        return std::make_unique<T>(T::from_hf_json(tokenizer_json.string()));
    } else {
        return nullptr;
    }
}

}  // namespace

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::string& gguf_path, const ModelOptions& options) {
    std::unique_ptr<Model> m(new Model());
    m->options_ = options;
    // The pool first: its workers start while the file is parsed.
    if (options.num_threads > 0) {
        m->own_pool_ = std::make_unique<kernels::ThreadPool>(options.num_threads);
        m->pool_ = m->own_pool_.get();
    } else {
        m->pool_ = &kernels::ThreadPool::global();
    }
    std::vector<int32_t> hf_eog_ids;
    std::optional<std::filesystem::path> hf_tokenizer_json;
    if (is_hf_checkpoint(gguf_path)) {
        // A Hugging Face directory (or its config.json): the safetensors tensors under GGUF names, in place.
        HfCheckpoint hf = import_hf_checkpoint(gguf_path);
        m->gguf_ = std::move(hf.model);
        hf_eog_ids = std::move(hf.eog_ids);
        hf_tokenizer_json = std::move(hf.tokenizer_json);
    } else {
        m->gguf_ = std::make_unique<formats::GgufModel>(gguf_path);
    }
    m->hparams_ = ModelHParams::from_gguf(*m->gguf_);
    for (int32_t id : hf_eog_ids) {
        if (!m->hparams_.is_eog(id)) m->hparams_.eog_ids.push_back(id);
    }
    std::sort(m->hparams_.eog_ids.begin(), m->hparams_.eog_ids.end());
    m->weights_ = ModelWeights::bind(*m->gguf_, m->hparams_);
    m->hparams_.n_vocab = m->weights_.token_embd.rows;
    if (hf_tokenizer_json) m->tokenizer_ = hf_tokenizer<Tokenizer>(*hf_tokenizer_json);
    if (m->tokenizer_ || m->gguf_->find("tokenizer.ggml.model")) {
        if (!m->tokenizer_) m->tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(*m->gguf_));
        m->hparams_.add_bos = m->tokenizer_->add_bos();
        m->hparams_.bos_id = m->tokenizer_->bos_id();
        for (int32_t id = 0; id < static_cast<int32_t>(m->tokenizer_->vocab_size()); ++id) {
            if (m->tokenizer_->is_eog(id) && !m->hparams_.is_eog(id)) m->hparams_.eog_ids.push_back(id);
        }
        std::sort(m->hparams_.eog_ids.begin(), m->hparams_.eog_ids.end());
    }
    if (options.progress && isatty(STDERR_FILENO)) touch_weights(*m->gguf_);
    return m;
}

const Tokenizer& Model::tokenizer() const {
    MOERIG_CHECK(tokenizer_, FormatError, "{}: the model has no tokenizer ({})", gguf_->path(),
                 gguf_->find("moerig.import") ? "no tokenizer.json this engine can read in the checkpoint directory"
                                              : "tokenizer.ggml.model is missing");
    return *tokenizer_;
}

void Model::embed(std::span<const int32_t> tokens, float* x) const {
    const auto& e = weights_.token_embd;
    for (size_t t = 0; t < tokens.size(); ++t) {
        const int32_t id = tokens[t];
        MOERIG_CHECK(id >= 0 && id < e.rows, ConfigError,
                     "token id {} at input position {} is outside the vocabulary "
                     "of {} tokens",
                     id, t, e.rows);
        kernels::dequantize_row(e.type, e.row(id), x + static_cast<int64_t>(t) * e.cols, e.cols);
    }
}

RouterOutput Model::router(int64_t layer_idx, const float* xn, int64_t num_tokens, kernels::ThreadPool& pool) const {
    const auto& hp = hparams_;
    const auto& l = weights_.layers.at(static_cast<size_t>(layer_idx));
    std::vector<float> logits(static_cast<size_t>(num_tokens * hp.n_expert));
    kernels::matmul(l.ffn_gate_inp, xn, num_tokens, logits.data(), pool);
    if (l.ffn_gate_inp_b) {
        for (int64_t t = 0; t < num_tokens; ++t) {
            float* row = logits.data() + t * hp.n_expert;
            kernels::add(row, l.ffn_gate_inp_b, row, hp.n_expert);
        }
    }
    kernels::RouterParams p;
    p.num_experts = hp.n_expert;
    p.num_experts_used = hp.n_expert_used;
    switch (hp.gating_func) {
        case GatingFunc::kSoftmax:
            p.gating = kernels::ExpertGating::kSoftmax;
            break;
        case GatingFunc::kSigmoid:
            p.gating = kernels::ExpertGating::kSigmoid;
            break;
        case GatingFunc::kSoftmaxWeight:
            p.gating = kernels::ExpertGating::kSoftmaxWeight;
            break;
    }
    p.selection_bias = l.exp_probs_b;
    if (hp.n_expert_groups > 1) {
        p.num_groups = hp.n_expert_groups;
        p.num_groups_used = hp.n_group_used;
    }
    p.normalize = hp.expert_weights_norm;
    p.weights_scale = hp.expert_weights_scale != 0.f ? hp.expert_weights_scale : 1.f;
    RouterOutput out;
    out.num_tokens = num_tokens;
    out.k = hp.n_expert_used;
    out.expert_ids.resize(static_cast<size_t>(num_tokens * out.k));
    out.weights.resize(out.expert_ids.size());
    kernels::route(p, logits.data(), num_tokens, out.expert_ids.data(), out.weights.data());
    return out;
}

namespace {

/// out = down(silu(gate(x)) * up(x)) over num_tokens rows.
void dense_swiglu(const WeightView& gate, const WeightView& up, const WeightView& down, const float* x,
                  int64_t num_tokens, float* out, kernels::ThreadPool& pool) {
    const int64_t n_ff = gate.rows;
    std::vector<float> g(static_cast<size_t>(num_tokens * n_ff)), u(g.size());
    kernels::matmul(gate, x, num_tokens, g.data(), pool);
    kernels::matmul(up, x, num_tokens, u.data(), pool);
    kernels::swiglu(g.data(), u.data(), g.data(), num_tokens * n_ff);
    kernels::matmul(down, g.data(), num_tokens, out, pool);
}

}  // namespace

void Model::ffn(int64_t layer_idx, float* x, int64_t num_tokens, kernels::ThreadPool& pool,
                ExpertRunner* experts) const {
    const auto& hp = hparams_;
    const int64_t n_embd = hp.n_embd, n = num_tokens * n_embd;
    const auto& l = weights_.layers.at(static_cast<size_t>(layer_idx));
    std::vector<float> xn(static_cast<size_t>(n)), out(static_cast<size_t>(n));
    kernels::rms_norm_rows(x, l.ffn_norm, xn.data(), num_tokens, n_embd, hp.rms_eps);
    if (!l.ffn_gate_inp.data) {
        dense_swiglu(l.ffn_gate, l.ffn_up, l.ffn_down, xn.data(), num_tokens, out.data(), pool);
        kernels::add(x, out.data(), x, n);
        return;
    }
    const RouterOutput route = router(layer_idx, xn.data(), num_tokens, pool);
    if (experts) {
        const bool oai = l.swiglu_oai || l.gate_exps_b || l.up_exps_b || l.down_exps_b;
        MOERIG_CHECK(!oai || experts->supports_oai_experts(), UnsupportedError,
                     "layer {}: {} experts (per-expert biases, clamped SwiGLU) are not supported by this expert "
                     "runner (sharded execution); run the model on one card",
                     layer_idx, hp.arch_name);
        experts->run(layer_idx, xn.data(), route, out.data());
    } else {
        run_experts_local(l, n_embd, xn.data(), route, out.data(), pool);
    }
    if (l.gate_shexp.data) {
        std::vector<float> sh(static_cast<size_t>(n));
        dense_swiglu(l.gate_shexp, l.up_shexp, l.down_shexp, xn.data(), num_tokens, sh.data(), pool);
        if (l.gate_inp_shexp.data) {
            // Qwen2-MoE: shared output scaled by sigmoid(gate . x), computed as silu(g) / g like llama.cpp.
            std::vector<float> gs(static_cast<size_t>(num_tokens));
            kernels::matmul(l.gate_inp_shexp, xn.data(), num_tokens, gs.data(), pool);
            for (int64_t t = 0; t < num_tokens; ++t) {
                const float g = gs[static_cast<size_t>(t)];
                const float s = (g / (1.f + std::exp(-g))) / g;
                kernels::scale(sh.data() + t * n_embd, s, sh.data() + t * n_embd, n_embd);
            }
        }
        kernels::add(out.data(), sh.data(), out.data(), n);
    }
    kernels::add(x, out.data(), x, n);
}

void Model::output(float* x, int64_t num_tokens, float* logits, kernels::ThreadPool& pool) const {
    kernels::rms_norm_rows(x, weights_.output_norm, x, num_tokens, hparams_.n_embd, hparams_.rms_eps);
    kernels::matmul(weights_.output, x, num_tokens, logits, pool);
}

void Model::forward_layers(int64_t layer_begin, int64_t layer_end, float* x, int64_t num_tokens, int64_t n_past,
                           KvCache& kv, kernels::ThreadPool& pool, ExpertRunner* experts) const {
    for (int64_t il = layer_begin; il < layer_end; ++il) {
        attention(il, x, num_tokens, n_past, kv, pool);
        ffn(il, x, num_tokens, pool, experts);
    }
}

}  // namespace moerig::runtime
