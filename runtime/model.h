// A loaded model (GGUF weights in place from the mapping, hyperparameters, tokenizer) and its forward pass
// as public per-layer steps, so a single-card session and the sharded runtime run the same code:
// embed -> for each layer { attention, ffn (router -> ExpertRunner + shared experts) } -> output.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernels/threadpool.h"
#include "runtime/hparams.h"
#include "runtime/kv_cache.h"
#include "runtime/moe.h"
#include "runtime/weights.h"

namespace moerig::formats {
class GgufModel;
}

namespace moerig::runtime {

class Tokenizer;

/// One sequence's rows of a batched step: rows [row_begin, row_begin + num_tokens) of the residual stream are its
/// tokens at positions n_past.. of its own cache.
struct AttentionSegment {
    int64_t row_begin = 0;
    int64_t num_tokens = 0;
    int64_t n_past = 0;
    KvCache* kv = nullptr;
};

struct ModelOptions {
    int num_threads = 0;  // 0 = all cores
    int64_t context = 4096;
    bool use_mmap = true;
    bool progress = true;  // progress bar on stderr while touching the weights (only when stderr is a TTY)
};

class Model {
  public:
    /// Maps the file (and its split parts), reads the hyperparameters and binds every weight. Throws
    /// UnsupportedError naming the supported architectures/types, FormatError naming file, field and offset.
    /// A directory holding config.json + *.safetensors (or that config.json) loads as a Hugging Face checkpoint
    /// (runtime/hf_model.h); gguf() is then an in-memory GGUF view of it.
    static std::unique_ptr<Model> load(const std::string& gguf_path, const ModelOptions& options = {});
    ~Model();

    const ModelHParams& hparams() const { return hparams_; }
    /// The tokenizer read from the file's tokenizer.ggml.* keys (runtime/tokenizer.h).
    const Tokenizer& tokenizer() const;
    const ModelWeights& weights() const { return weights_; }
    const formats::GgufModel& gguf() const { return *gguf_; }
    const ModelOptions& options() const { return options_; }
    /// The pool sized by options().num_threads (the process-wide pool when 0).
    kernels::ThreadPool& pool() const { return *pool_; }

    // ---- Forward pass, one step at a time. x is the residual stream [num_tokens][n_embd]. ----

    /// x[t] = embedding row of tokens[t].
    void embed(std::span<const int32_t> tokens, float* x) const;
    /// x += attention(attn_norm(x)) for tokens at positions n_past.., writing their K/V into kv first.
    void attention(int64_t layer_idx, float* x, int64_t num_tokens, int64_t n_past, KvCache& kv,
                   kernels::ThreadPool& pool) const;
    /// The same for several sequences in one step: segments tile x's rows in order, each attending over its own
    /// cache. The projections run once over all rows (weights streamed once per step, not once per sequence).
    void attention(int64_t layer_idx, float* x, std::span<const AttentionSegment> segments,
                   kernels::ThreadPool& pool) const;
    /// x += ffn(ffn_norm(x)): dense SwiGLU, or router -> experts (through `experts`, local when nullptr)
    /// plus shared experts.
    void ffn(int64_t layer_idx, float* x, int64_t num_tokens, kernels::ThreadPool& pool,
             ExpertRunner* experts = nullptr) const;
    /// Router of an MoE layer over FFN-normed inputs x_normed [num_tokens][n_embd].
    RouterOutput router(int64_t layer_idx, const float* x_normed, int64_t num_tokens, kernels::ThreadPool& pool) const;
    /// logits [num_tokens][n_vocab] = output(output_norm(x)) (x is normalised in place).
    void output(float* x, int64_t num_tokens, float* logits, kernels::ThreadPool& pool) const;
    /// Layers [layer_begin, layer_end): attention then ffn for each.
    void forward_layers(int64_t layer_begin, int64_t layer_end, float* x, int64_t num_tokens, int64_t n_past,
                        KvCache& kv, kernels::ThreadPool& pool, ExpertRunner* experts = nullptr) const;

  private:
    Model() = default;
    void attention_gqa(int64_t layer_idx, const float* xn, float* out, std::span<const AttentionSegment> segments,
                       kernels::ThreadPool& pool) const;
    void attention_mla(int64_t layer_idx, const float* xn, float* out, std::span<const AttentionSegment> segments,
                       kernels::ThreadPool& pool) const;

    ModelOptions options_;
    std::unique_ptr<formats::GgufModel> gguf_;
    ModelHParams hparams_;
    ModelWeights weights_;
    std::unique_ptr<Tokenizer> tokenizer_;
    std::unique_ptr<kernels::ThreadPool> own_pool_;
    kernels::ThreadPool* pool_ = nullptr;
};

}  // namespace moerig::runtime
