// The engine's forward pass on one GPU: a runtime::Model's weights uploaded to a CudaDevice (every tensor the
// CPU engine reads, budget-charged as weights), and CudaSession, the GPU twin of runtime::Session, which keeps
// its KV cache on the device and chains the kernels of kernels/cuda/ through the same steps as the CPU engine
// (runtime/forward.cpp, forward_attention.cpp, moe.cpp): embed -> per layer { RMSNorm, GQA or MLA attention
// (biases, q/k norms, RoPE/YaRN, sinks, sliding window), dense SwiGLU or router -> expert-indexed SwiGLU
// (per-expert biases, gpt-oss's clamped form) + shared experts } -> output head. Decode products are GEMVs
// straight from the quantised blocks; prefill products go through cuBLAS on dequantised tiles.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/generate.h"
#include "runtime/model.h"

namespace moerig::runtime::cuda {

/// A dense weight matrix [rows][cols] of `type` on the device (absent: data == nullptr).
struct DeviceMatrix {
    DType type = DType::F32;
    int64_t rows = 0, cols = 0;
    const void* data = nullptr;
    bool present() const { return data != nullptr; }
};

/// num matrices of rows x cols of `type`, back to back on the device (merged experts, per-head MLA blocks).
struct DeviceMatrices {
    DType type = DType::F32;
    int64_t rows = 0, cols = 0, num = 0;
    int64_t matrix_bytes = 0;
    const void* data = nullptr;
    bool present() const { return data != nullptr; }
};

/// One transformer block's device pointers; mirrors runtime::LayerWeights.
struct DeviceLayer {
    const float* attn_norm = nullptr;
    DeviceMatrix wq, wk, wv, wo;
    const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    const float* sinks = nullptr;
    const float *q_norm = nullptr, *k_norm = nullptr;
    DeviceMatrix wq_a, wq_b, wkv_a_mqa;
    const float *q_a_norm = nullptr, *kv_a_norm = nullptr;
    DeviceMatrices wk_b, wv_b;  // [n_head] x (kv_lora_rank, qk_nope), [n_head] x (head_dim_v, kv_lora_rank)
    const float* ffn_norm = nullptr;
    DeviceMatrix ffn_gate, ffn_up, ffn_down;
    DeviceMatrix ffn_gate_inp;
    const float* ffn_gate_inp_b = nullptr;
    const float* exp_probs_b = nullptr;
    DeviceMatrices gate_exps, up_exps, down_exps;
    const float *gate_exps_b = nullptr, *up_exps_b = nullptr, *down_exps_b = nullptr;
    bool swiglu_oai = false;
    DeviceMatrix gate_shexp, up_shexp, down_shexp, gate_inp_shexp;
};

/// A model's weights on one GPU card. The host Model must outlive it (its mapping supplies the embeddings, read
/// on the host, and the hyperparameters).
class CudaModel {
  public:
    /// Uploads every weight the forward pass reads. Tensors of a type without a CUDA decoder (e.g. Q5_0 or Q4_1
    /// fallbacks of llama.cpp's K-quant mixes) are dequantised to F32 on the host first and listed in
    /// f32_fallbacks(). Throws OutOfMemoryError naming the card when the weights exceed its budget.
    CudaModel(const Model& model, CudaDevice& device);
    ~CudaModel();
    CudaModel(const CudaModel&) = delete;
    CudaModel& operator=(const CudaModel&) = delete;

    const Model& model() const { return model_; }
    const ModelHParams& hparams() const { return model_.hparams(); }
    CudaDevice& device() const { return device_; }
    /// Bytes of weights held on the device.
    size_t weight_bytes() const { return weight_bytes_; }
    /// Descriptions of the tensors uploaded as F32 because the GPU has no decoder for their type.
    const std::vector<std::string>& f32_fallbacks() const { return f32_fallbacks_; }

    const DeviceLayer& layer(int64_t layer_idx) const { return layers_.at(static_cast<size_t>(layer_idx)); }
    const DeviceMatrix& output() const { return output_; }
    const float* output_norm() const { return output_norm_; }
    const float* rope_freqs() const { return rope_freqs_; }
    /// Largest dequantisation scratch (floats) a prefill GEMM over any of the matrices needs.
    int64_t gemm_scratch_elems() const { return gemm_scratch_elems_; }

  private:
    struct Uploaded {
        const uint8_t* host_end;
        Buffer buffer;
    };
    /// Device address of host bytes [host, host + num_bytes): inside an uploaded GGUF tensor when the bytes
    /// lie in one (uploading it whole on first use), else a copy of just those bytes (converted tensors).
    const void* device_bytes(const void* host, size_t num_bytes, const std::string& what);
    const float* device_floats(const float* host, int64_t n, const std::string& what);
    DeviceMatrix device_matrix(const WeightView& w, const std::string& what);
    DeviceMatrices device_matrices(std::span<const WeightView> views, const std::string& what);
    DeviceMatrices device_experts(const ExpertTensor& e, const std::string& what);
    const void* upload(const void* host, size_t num_bytes);
    void note_gemm(DType type, int64_t rows, int64_t cols);

    const Model& model_;
    CudaDevice& device_;
    std::map<const uint8_t*, const uint8_t*> gguf_ranges_;  // tensor start -> end, in the host mapping
    std::map<const uint8_t*, Uploaded> uploaded_;           // host start -> its device copy
    std::vector<Buffer> owned_;                             // packed or converted copies
    std::vector<DeviceLayer> layers_;
    DeviceMatrix output_;
    const float* output_norm_ = nullptr;
    const float* rope_freqs_ = nullptr;
    size_t weight_bytes_ = 0;
    int64_t gemm_scratch_elems_ = 0;
    std::vector<std::string> f32_fallbacks_;
};

/// One sequence on the GPU, as runtime::Session: its KV cache on the device, position, cuBLAS handle and
/// activation buffers (grown on demand). Not thread-safe; calls must come from one thread at a time.
class CudaSession {
  public:
    /// dp4a: decode-sized products with Q8_0/Q4_0 weights quantise the activations to Q8_0 and use the int8
    /// DP4A GEMV (kernels/cuda/gemv_dp4a.h), llama.cpp's and the CPU engine's semantic for those types; Q4_K,
    /// Q5_K and Q6_K weights (dense decode products and every expert-indexed product) use the same int8
    /// activations with per-32 scales; false: the float GEMV for every type.
    CudaSession(const CudaModel& model, int64_t context, bool dp4a = true);
    ~CudaSession();
    CudaSession(const CudaSession&) = delete;
    CudaSession& operator=(const CudaSession&) = delete;

    /// Runs tokens at positions n_past.. and appends them to the KV cache. Returns logits (n_vocab floats) of
    /// the last token, or of every token (tokens.size() * n_vocab) when all_logits, copied to the host.
    std::vector<float> eval(std::span<const int32_t> tokens, bool all_logits = false);
    /// As eval, but returns only the greedy choice for the last token (argmax on the device, first on ties).
    int32_t eval_greedy(std::span<const int32_t> tokens);

    int64_t n_past() const { return n_past_; }
    int64_t context() const { return context_; }
    void reset() { n_past_ = 0; }
    /// Keeps positions [0, n_past) and forgets the rest (n_past <= current n_past).
    void truncate(int64_t n_past);
    const CudaModel& model() const { return model_; }
    /// Bytes of this session's KV cache on the device.
    size_t kv_bytes() const { return kv_bytes_; }

    /// CUDA graphs for decode (on by default): a one-token step that follows another one-token step is recorded by
    /// stream capture instead of launched kernel by kernel, the instantiated graph is updated in place with the
    /// new recording (cudaGraphExecUpdate: the cache length and positions change every step, the shape does not)
    /// and replayed with one launch. A recording that cannot finish (a buffer must grow first) falls back to the
    /// eager launches for that step. Results are identical either way (the same kernels on the same buffers).
    void set_graphs(bool on) { graphs_ = on; }
    struct GraphStats {
        int64_t launched = 0;      ///< steps run as one graph launch
        int64_t instantiated = 0;  ///< graphs instantiated (first capture, or an update the driver refused)
        int64_t updated = 0;       ///< steps whose recording updated the instantiated graph in place
        int64_t fell_back = 0;     ///< captures abandoned for eager launches
    };
    const GraphStats& graph_stats() const { return graph_stats_; }

  private:
    enum Slot : int;
    /// Runs the forward pass; afterwards the device buffer of logits holds num_out rows (the last ones).
    float* forward(std::span<const int32_t> tokens, int64_t num_out);
    /// The device part of forward once inputs are on the device: layers, output norm and head, all enqueued
    /// on the stream (nothing synchronises unless a buffer grows). Positions start at n_past_.
    float* enqueue_layers(int64_t num_tokens, int64_t num_out);
    /// enqueue_layers recorded as a graph and launched; nullptr when the recording had to be abandoned.
    float* launch_graph(int64_t num_tokens, int64_t num_out);
    float* f32(Slot slot, int64_t count);
    int32_t* i32(Slot slot, int64_t count);
    void* bytes(Slot slot, size_t num_bytes);
    /// y [num_tokens][w.rows] = W x: GEMV for decode-sized batches, cuBLAS GEMM otherwise.
    void matmul(const DeviceMatrix& w, const float* x, int64_t num_tokens, float* y);
    /// Per-slot products with matrix ids[s] of m (gemv_indexed, in launches of at most 65535 slots).
    void matmul_indexed(const DeviceMatrices& m, const int32_t* ids, int64_t num_slots, const float* x,
                        int64_t x_stride, int64_t slots_per_x, float* y, int64_t y_stride);
    void attention_gqa(int64_t layer_idx, const float* xn, float* out, int64_t num_tokens);
    void attention_mla(int64_t layer_idx, const float* xn, float* out, int64_t num_tokens);
    void ffn(int64_t layer_idx, float* x, int64_t num_tokens);
    void dense_swiglu(const DeviceMatrix& gate, const DeviceMatrix& up, const DeviceMatrix& down, const float* x,
                      int64_t num_tokens, float* out);

    const CudaModel& model_;
    CudaDevice& device_;
    cudaStream_t stream_;
    cublasHandle_t cublas_ = nullptr;
    int64_t context_;
    bool dp4a_;
    int64_t n_past_ = 0;
    std::vector<Buffer> k_cache_, v_cache_;  // per layer [context][k_row] / [context][v_row]
    int64_t k_row_ = 0, v_row_ = 0;
    size_t kv_bytes_ = 0;
    std::vector<Buffer> slots_;
    std::vector<float> host_x_;
    std::vector<int32_t> host_positions_;
    std::vector<int32_t> host_head_ids_;
    bool graphs_ = true;
    bool capturing_ = false;        // bytes() must not grow a buffer (it would synchronise) while recording
    int64_t last_step_tokens_ = 0;  // a one-token step after a one-token step has every buffer at its size
    cudaGraphExec_t graph_exec_ = nullptr;
    GraphStats graph_stats_;
};

/// runtime::generate on a GPU session: prefill, then sample -> accept -> decode with the same sampler, stop
/// conditions (n_predict, end of generation, full context, on_token returning false) and statistics.
std::vector<int32_t> generate(CudaSession& session, std::span<const int32_t> prompt, int n_predict,
                              const SamplerParams& params, std::function<bool(int32_t token)> on_token = {},
                              GenerateStats* stats = nullptr);

}  // namespace moerig::runtime::cuda
