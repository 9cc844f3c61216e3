// CudaModel (weight upload) and CudaSession (the forward pass on the GPU). The steps and their order follow the
// CPU engine line for line (runtime/forward.cpp, forward_attention.cpp, moe.cpp), so a GPU run differs from a
// CPU run only by float rounding: the CPU quantises activations inside its quantised matmuls (llama.cpp's
// vec_dot types) and the GPU multiplies float activations with the decoded weights.
#include "runtime/cuda/cuda_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "formats/gguf.h"
#include "kernels/cuda/argmax.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/bias.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/cuda/matmul_path.h"
#include "kernels/cuda/permute.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/router.h"
#include "kernels/error.h"
#include "kernels/ops.h"
#include "kernels/quant.h"

namespace moerig::runtime::cuda {

namespace kc = kernels::cuda;

namespace {

constexpr int64_t kMaxSlotsPerLaunch = 65535;

int64_t round_up4(int64_t n) {
    return (n + 3) / 4 * 4;
}

/// Host rows of w dequantised to F32 ([rows][cols], dense).
std::vector<float> dequantize_host(DType type, const void* data, size_t row_stride, int64_t rows, int64_t cols) {
    std::vector<float> out(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
        kernels::dequantize_row(type, static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_stride,
                                out.data() + r * cols, cols);
    }
    return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ CudaModel

CudaModel::CudaModel(const Model& model, CudaDevice& device) : model_(model), device_(device) {
    const auto& hp = model.hparams();
    const auto& w = model.weights();
    for (const auto& t : model.gguf().tensors()) gguf_ranges_[t.data] = t.data + t.num_bytes;
    device_.make_current();

    layers_.resize(static_cast<size_t>(hp.n_layer));
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const LayerWeights& l = w.layers.at(static_cast<size_t>(il));
        DeviceLayer& d = layers_[static_cast<size_t>(il)];
        const std::string at = fmt::format("layer {} ", il);
        const int64_t q_dim = hp.n_head * hp.head_dim_k, k_dim = hp.n_head_kv * hp.head_dim_k;
        const int64_t v_dim = hp.n_head_kv * hp.head_dim_v;
        d.attn_norm = device_floats(l.attn_norm, hp.n_embd, at + "attn_norm");
        d.wq = device_matrix(l.wq, at + "attn_q");
        d.wk = device_matrix(l.wk, at + "attn_k");
        d.wv = device_matrix(l.wv, at + "attn_v");
        d.wo = device_matrix(l.wo, at + "attn_output");
        d.bq = device_floats(l.bq, q_dim, at + "attn_q.bias");
        d.bk = device_floats(l.bk, k_dim, at + "attn_k.bias");
        d.bv = device_floats(l.bv, v_dim, at + "attn_v.bias");
        d.bo = device_floats(l.bo, hp.n_embd, at + "attn_output.bias");
        d.sinks = device_floats(l.sinks, hp.n_head, at + "attn_sinks");
        if (hp.arch == Arch::kQwen3Moe) {
            d.q_norm = device_floats(l.q_norm, hp.head_dim_k, at + "attn_q_norm");
            d.k_norm = device_floats(l.k_norm, hp.head_dim_k, at + "attn_k_norm");
        } else if (hp.arch == Arch::kOlmoe) {
            d.q_norm = device_floats(l.q_norm, q_dim, at + "attn_q_norm");
            d.k_norm = device_floats(l.k_norm, k_dim, at + "attn_k_norm");
        }
        if (hp.is_mla()) {
            d.wq_a = device_matrix(l.wq_a, at + "attn_q_a");
            d.wq_b = device_matrix(l.wq_b, at + "attn_q_b");
            d.q_a_norm = device_floats(l.q_a_norm, hp.q_lora_rank, at + "attn_q_a_norm");
            d.wkv_a_mqa = device_matrix(l.wkv_a_mqa, at + "attn_kv_a_mqa");
            d.kv_a_norm = device_floats(l.kv_a_norm, hp.kv_lora_rank, at + "attn_kv_a_norm");
            d.wk_b = device_matrices(l.wk_b, at + "attn_k_b");
            d.wv_b = device_matrices(l.wv_b, at + "attn_v_b");
        }
        d.ffn_norm = device_floats(l.ffn_norm, hp.n_embd, at + "ffn_norm");
        d.ffn_gate = device_matrix(l.ffn_gate, at + "ffn_gate");
        d.ffn_up = device_matrix(l.ffn_up, at + "ffn_up");
        d.ffn_down = device_matrix(l.ffn_down, at + "ffn_down");
        d.ffn_gate_inp = device_matrix(l.ffn_gate_inp, at + "ffn_gate_inp");
        if (l.ffn_gate_inp.data) {
            d.ffn_gate_inp_b = device_floats(l.ffn_gate_inp_b, hp.n_expert, at + "ffn_gate_inp.bias");
            d.exp_probs_b = device_floats(l.exp_probs_b, hp.n_expert, at + "exp_probs_b");
            d.gate_exps = device_experts(l.gate_exps, at + "ffn_gate_exps");
            d.up_exps = device_experts(l.up_exps, at + "ffn_up_exps");
            d.down_exps = device_experts(l.down_exps, at + "ffn_down_exps");
            const int64_t n_ff = l.gate_exps.rows, n_exp = l.gate_exps.num_experts;
            d.gate_exps_b = device_floats(l.gate_exps_b, n_exp * n_ff, at + "ffn_gate_exps.bias");
            d.up_exps_b = device_floats(l.up_exps_b, n_exp * n_ff, at + "ffn_up_exps.bias");
            d.down_exps_b = device_floats(l.down_exps_b, n_exp * hp.n_embd, at + "ffn_down_exps.bias");
        }
        d.swiglu_oai = l.swiglu_oai;
        d.gate_shexp = device_matrix(l.gate_shexp, at + "ffn_gate_shexp");
        d.up_shexp = device_matrix(l.up_shexp, at + "ffn_up_shexp");
        d.down_shexp = device_matrix(l.down_shexp, at + "ffn_down_shexp");
        d.gate_inp_shexp = device_matrix(l.gate_inp_shexp, at + "ffn_gate_inp_shexp");
    }
    output_norm_ = device_floats(w.output_norm, hp.n_embd, "output_norm");
    output_ = device_matrix(w.output, "output");
    rope_freqs_ = device_floats(w.rope_freqs, hp.n_rot / 2, "rope_freqs");
    device_.synchronize();
}

CudaModel::~CudaModel() {
    cudaSetDevice(device_.gpu_idx());
    cudaStreamSynchronize(device_.stream());  // no throwing from a destructor
}

const void* CudaModel::upload(const void* host, size_t num_bytes) {
    Buffer b = device_.alloc(std::max<size_t>(num_bytes, 16), MemoryKind::kWeights);
    device_.copy_to_device(b.data(), host, num_bytes);
    weight_bytes_ += num_bytes;
    const void* p = b.data();
    owned_.push_back(std::move(b));
    return p;
}

const void* CudaModel::device_bytes(const void* host, size_t num_bytes, const std::string& what) {
    const auto* h = static_cast<const uint8_t*>(host);
    auto it = gguf_ranges_.upper_bound(h);
    if (it != gguf_ranges_.begin()) {
        --it;
        const uint8_t* begin = it->first;
        const uint8_t* end = it->second;
        if (h >= begin && h + num_bytes <= end) {
            auto up = uploaded_.find(begin);
            if (up == uploaded_.end()) {
                const auto size = static_cast<size_t>(end - begin);
                Buffer b = device_.alloc(std::max<size_t>(size, 16), MemoryKind::kWeights);
                device_.copy_to_device(b.data(), begin, size);
                weight_bytes_ += size;
                up = uploaded_.emplace(begin, Uploaded{end, std::move(b)}).first;
            }
            return static_cast<const uint8_t*>(up->second.buffer.data()) + (h - begin);
        }
    }
    (void)what;
    return upload(host, num_bytes);  // converted or packed on the host (ModelWeights' own vectors)
}

const float* CudaModel::device_floats(const float* host, int64_t n, const std::string& what) {
    if (host == nullptr) return nullptr;
    MOERIG_CHECK(n > 0, ConfigError, "{}: {} floats to upload", what, n);
    return static_cast<const float*>(device_bytes(host, static_cast<size_t>(n) * sizeof(float), what));
}

void CudaModel::note_gemm(DType type, int64_t rows, int64_t cols) {
    gemm_scratch_elems_ = std::max(gemm_scratch_elems_, kc::gemm_scratch_elems(type, rows, cols));
}

DeviceMatrix CudaModel::device_matrix(const WeightView& w, const std::string& what) {
    DeviceMatrix d;
    if (w.data == nullptr) return d;
    d.rows = w.rows;
    d.cols = w.cols;
    const size_t row_bytes = dtype_bytes(w.type, static_cast<uint64_t>(w.cols));
    if (!kc::gemv_supported(w.type)) {
        const auto f = dequantize_host(w.type, w.data, w.row_stride_bytes, w.rows, w.cols);
        f32_fallbacks_.push_back(fmt::format("{} ({} -> F32)", what, dtype_name(w.type)));
        d.type = DType::F32;
        d.data = upload(f.data(), f.size() * sizeof(float));
    } else if (w.row_stride_bytes != row_bytes) {
        std::vector<uint8_t> packed(row_bytes * static_cast<size_t>(w.rows));
        for (int64_t r = 0; r < w.rows; ++r) {
            std::copy_n(static_cast<const uint8_t*>(w.row(r)), row_bytes, packed.data() + r * row_bytes);
        }
        d.type = w.type;
        d.data = upload(packed.data(), packed.size());
    } else {
        d.type = w.type;
        d.data = device_bytes(w.data, row_bytes * static_cast<size_t>(w.rows), what);
    }
    note_gemm(d.type, d.rows, d.cols);
    return d;
}

DeviceMatrices CudaModel::device_matrices(std::span<const WeightView> views, const std::string& what) {
    DeviceMatrices d;
    if (views.empty() || views.front().data == nullptr) return d;
    const WeightView& v0 = views.front();
    d.rows = v0.rows;
    d.cols = v0.cols;
    d.num = static_cast<int64_t>(views.size());
    const size_t row_bytes = dtype_bytes(v0.type, static_cast<uint64_t>(v0.cols));
    const size_t mat_bytes = row_bytes * static_cast<size_t>(v0.rows);
    bool contiguous = kc::gemv_supported(v0.type);
    for (size_t i = 0; i < views.size() && contiguous; ++i) {
        const WeightView& v = views[i];
        MOERIG_CHECK(v.type == v0.type && v.rows == v0.rows && v.cols == v0.cols, FormatError,
                     "{}: block {} is {} {}x{}, block 0 {} {}x{}", what, i, dtype_name(v.type), v.rows, v.cols,
                     dtype_name(v0.type), v0.rows, v0.cols);
        contiguous = v.row_stride_bytes == row_bytes &&
                     static_cast<const uint8_t*>(v.data) == static_cast<const uint8_t*>(v0.data) + i * mat_bytes;
    }
    if (contiguous) {
        d.type = v0.type;
        d.matrix_bytes = static_cast<int64_t>(mat_bytes);
        d.data = device_bytes(v0.data, mat_bytes * views.size(), what);
    } else if (kc::gemv_supported(v0.type)) {
        std::vector<uint8_t> packed(mat_bytes * views.size());
        for (size_t i = 0; i < views.size(); ++i) {
            for (int64_t r = 0; r < v0.rows; ++r) {
                std::copy_n(static_cast<const uint8_t*>(views[i].row(r)), row_bytes,
                            packed.data() + i * mat_bytes + static_cast<size_t>(r) * row_bytes);
            }
        }
        d.type = v0.type;
        d.matrix_bytes = static_cast<int64_t>(mat_bytes);
        d.data = upload(packed.data(), packed.size());
    } else {
        std::vector<float> f;
        f.reserve(static_cast<size_t>(d.num * d.rows * d.cols));
        for (const WeightView& v : views) {
            const auto m = dequantize_host(v.type, v.data, v.row_stride_bytes, v.rows, v.cols);
            f.insert(f.end(), m.begin(), m.end());
        }
        f32_fallbacks_.push_back(fmt::format("{} ({} -> F32)", what, dtype_name(v0.type)));
        d.type = DType::F32;
        d.matrix_bytes = d.rows * d.cols * static_cast<int64_t>(sizeof(float));
        d.data = upload(f.data(), f.size() * sizeof(float));
    }
    return d;
}

DeviceMatrices CudaModel::device_experts(const ExpertTensor& e, const std::string& what) {
    if (!e.present()) return {};
    std::vector<WeightView> views;
    views.reserve(static_cast<size_t>(e.num_experts));
    for (int64_t i = 0; i < e.num_experts; ++i) views.push_back(e.expert(i));
    return device_matrices(views, what);
}

// ---------------------------------------------------------------------------------------------- CudaSession

namespace {

/// Thrown by CudaSession::bytes while recording a graph when a buffer would have to grow.
struct CaptureNeedsGrowth {};

}  // namespace

enum CudaSession::Slot : int {
    kX,
    kXn,
    kOut,
    kQ,
    kK,
    kV,
    kAtt,
    kQLora,
    kKvc,
    kLatent,
    kQAbs,
    kGather,
    kMlaOut,
    kGate,
    kUp,
    kShared,
    kSharedGate,
    kRouterLogits,
    kExpertIds,
    kExpertWeights,
    kExpertGate,
    kExpertUp,
    kExpertDown,
    kPositions,
    kHeadIds,
    kLogits,
    kArgmax,
    kGemmScratch,
    kQ8Activations,
    kNumSlots
};

CudaSession::CudaSession(const CudaModel& model, int64_t context, bool dp4a)
    : model_(model), device_(model.device()), stream_(model.device().stream()), context_(context), dp4a_(dp4a) {
    const auto& hp = model.hparams();
    MOERIG_CHECK(context > 0, ConfigError, "GPU session: context must be positive, got {}", context);
    device_.make_current();
    const cublasStatus_t st = cublasCreate(&cublas_);
    MOERIG_CHECK(st == CUBLAS_STATUS_SUCCESS, CudaError, "cublasCreate failed with status {} on '{}'",
                 static_cast<int>(st), device_.name());
    // The same row layout as runtime::KvCache: MLA keeps one latent row per token (V is its head).
    if (hp.is_mla()) {
        k_row_ = hp.kv_lora_rank + hp.n_rot;
        v_row_ = 0;
    } else {
        k_row_ = hp.n_head_kv * hp.head_dim_k;
        v_row_ = hp.n_head_kv * hp.head_dim_v;
    }
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        k_cache_.push_back(device_.alloc(static_cast<size_t>(context * k_row_) * sizeof(float), MemoryKind::kKv));
        kv_bytes_ += k_cache_.back().num_bytes();
        if (v_row_ > 0) {
            v_cache_.push_back(device_.alloc(static_cast<size_t>(context * v_row_) * sizeof(float), MemoryKind::kKv));
            kv_bytes_ += v_cache_.back().num_bytes();
        }
    }
    slots_.resize(kNumSlots);
    // MOERIG_CUDA_GRAPHS=0 turns graphs off for every session (comparing, or a driver that misbehaves with them).
    if (const char* env = std::getenv("MOERIG_CUDA_GRAPHS"); env != nullptr && std::string_view(env) == "0")
        graphs_ = false;
}

CudaSession::~CudaSession() {
    cudaSetDevice(device_.gpu_idx());
    cudaStreamSynchronize(stream_);
    if (graph_exec_ != nullptr) cudaGraphExecDestroy(graph_exec_);
    if (cublas_ != nullptr) cublasDestroy(cublas_);
}

void CudaSession::truncate(int64_t n_past) {
    MOERIG_CHECK(n_past >= 0 && n_past <= n_past_, ConfigError, "cannot truncate a session of {} tokens to {}", n_past_,
                 n_past);
    n_past_ = n_past;
}

void* CudaSession::bytes(Slot slot, size_t num_bytes) {
    Buffer& b = slots_[static_cast<size_t>(slot)];
    if (b.num_bytes() < num_bytes) {
        if (capturing_) throw CaptureNeedsGrowth();  // launch_graph abandons the recording
        device_.synchronize();                       // queued kernels may still read the old buffer
        b.reset();
        b = device_.alloc(std::max<size_t>(num_bytes + num_bytes / 2, 256), MemoryKind::kActivations);
    }
    return b.data();
}

float* CudaSession::f32(Slot slot, int64_t count) {
    return static_cast<float*>(bytes(slot, static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(float)));
}

int32_t* CudaSession::i32(Slot slot, int64_t count) {
    return static_cast<int32_t*>(bytes(slot, static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(int32_t)));
}

void CudaSession::matmul(const DeviceMatrix& w, const float* x, int64_t num_tokens, float* y) {
    const kc::MatmulPath path = kc::matmul_path(w.type, w.data, x, w.cols, num_tokens, dp4a_);
    if (path == kc::MatmulPath::kGemvDp4a) {
        void* xq = bytes(kQ8Activations, static_cast<size_t>(kc::q8_activation_bytes(num_tokens, w.cols)));
        kc::quantize_q8_activations(x, num_tokens, w.cols, xq, stream_);
        kc::gemv_dp4a(w.type, w.data, w.rows, w.cols, xq, num_tokens, y, stream_);
    } else if (path == kc::MatmulPath::kGemv) {
        kc::gemv(w.type, w.data, w.rows, w.cols, x, num_tokens, y, stream_);
    } else {
        float* scratch = w.type == DType::F32 ? nullptr : f32(kGemmScratch, model_.gemm_scratch_elems());
        kc::gemm(cublas_, w.type, w.data, w.rows, w.cols, x, num_tokens, y, scratch, stream_);
    }
}

void CudaSession::matmul_indexed(const DeviceMatrices& m, const int32_t* ids, int64_t num_slots, const float* x,
                                 int64_t x_stride, int64_t slots_per_x, float* y, int64_t y_stride) {
    // K-quant experts: int8 activations and DP4A block dots, when x is dense [vectors][cols].
    if (dp4a_ && kc::gemv_dp4a_indexed_supported(m.type) && x_stride == m.cols &&
        reinterpret_cast<uintptr_t>(m.data) % kc::gemv_dp4a_weight_alignment(m.type) == 0 &&
        m.matrix_bytes % static_cast<int64_t>(kc::gemv_dp4a_weight_alignment(m.type)) == 0) {
        const int64_t num_x = (num_slots + slots_per_x - 1) / slots_per_x;
        void* xq = bytes(kQ8Activations, static_cast<size_t>(kc::q8_activation_bytes(num_x, m.cols)));
        kc::quantize_q8_activations(x, num_x, m.cols, xq, stream_);
        kc::gemv_dp4a_indexed(m.type, m.data, m.matrix_bytes, m.rows, m.cols, ids, num_slots, xq, num_x, slots_per_x, y,
                              y_stride, stream_);
        return;
    }
    // Launch in chunks of whole x rows so that each chunk's slots start at a row of x.
    const int64_t chunk = kMaxSlotsPerLaunch / slots_per_x * slots_per_x;
    for (int64_t s0 = 0; s0 < num_slots; s0 += chunk) {
        const int64_t n = std::min(chunk, num_slots - s0);
        kc::gemv_indexed(m.type, m.data, m.matrix_bytes, m.rows, m.cols, ids + s0, n, x + s0 / slots_per_x * x_stride,
                         x_stride, slots_per_x, y + s0 * y_stride, y_stride, stream_);
    }
}

void CudaSession::attention_gqa(int64_t layer_idx, const float* xn, float* out, int64_t num_tokens) {
    const auto& hp = model_.hparams();
    const DeviceLayer& l = model_.layer(layer_idx);
    const int64_t hd = hp.head_dim_k, hdv = hp.head_dim_v;
    const int64_t q_dim = hp.n_head * hd, k_dim = hp.n_head_kv * hd, v_dim = hp.n_head_kv * hdv;
    float* q = f32(kQ, num_tokens * q_dim);
    float* k = f32(kK, num_tokens * k_dim);
    float* v = f32(kV, num_tokens * v_dim);
    matmul(l.wq, xn, num_tokens, q);
    matmul(l.wk, xn, num_tokens, k);
    matmul(l.wv, xn, num_tokens, v);
    if (l.bq) kc::add_bias_rows(q, l.bq, num_tokens, q_dim, stream_);
    if (l.bk) kc::add_bias_rows(k, l.bk, num_tokens, k_dim, stream_);
    if (l.bv) kc::add_bias_rows(v, l.bv, num_tokens, v_dim, stream_);
    if (hp.arch == Arch::kQwen3Moe) {
        kc::rms_norm_rows(q, l.q_norm, q, num_tokens * hp.n_head, hd, hp.rms_eps, stream_);
        kc::rms_norm_rows(k, l.k_norm, k, num_tokens * hp.n_head_kv, hd, hp.rms_eps, stream_);
    } else if (hp.arch == Arch::kOlmoe) {
        kc::rms_norm_rows(q, l.q_norm, q, num_tokens, q_dim, hp.rms_eps, stream_);
        kc::rms_norm_rows(k, l.k_norm, k, num_tokens, k_dim, hp.rms_eps, stream_);
    }
    const int32_t* pos = i32(kPositions, num_tokens);
    auto rp = rope_params(hp, model_.rope_freqs());
    const bool swa = hp.is_swa(layer_idx);
    if (swa) rp.freq_base = hp.rope_freq_base_swa;
    kc::rope(rp, q, num_tokens, hp.n_head, q_dim, hd, pos, stream_);
    kc::rope(rp, k, num_tokens, hp.n_head_kv, k_dim, hd, pos, stream_);
    float* kc_layer = k_cache_[static_cast<size_t>(layer_idx)].as<float>();
    float* vc_layer = v_cache_[static_cast<size_t>(layer_idx)].as<float>();
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(kc_layer + n_past_ * k_row_, k, static_cast<size_t>(num_tokens * k_dim) * 4,
                                      cudaMemcpyDeviceToDevice, stream_));
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(vc_layer + n_past_ * v_row_, v, static_cast<size_t>(num_tokens * v_dim) * 4,
                                      cudaMemcpyDeviceToDevice, stream_));

    kernels::AttentionParams ap;
    ap.num_heads = hp.n_head;
    ap.num_kv_heads = hp.n_head_kv;
    ap.head_dim = hd;
    ap.v_head_dim = hdv;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    ap.sliding_window = swa ? hp.n_swa : 0;
    ap.sinks = l.sinks;
    float* att = f32(kAtt, num_tokens * hp.n_head * hdv);
    kernels::AttentionIo io;
    io.q = q;
    io.q_token_stride = q_dim;
    io.q_head_stride = hd;
    io.k = kc_layer;
    io.k_token_stride = k_row_;
    io.k_head_stride = hd;
    io.v = vc_layer;
    io.v_token_stride = v_row_;
    io.v_head_stride = hdv;
    io.out = att;
    io.out_token_stride = hp.n_head * hdv;
    io.out_head_stride = hdv;
    io.num_tokens = num_tokens;
    io.kv_len = n_past_ + num_tokens;
    io.positions = pos;
    kc::attention(ap, io, stream_);
    matmul(l.wo, att, num_tokens, out);
    if (l.bo) kc::add_bias_rows(out, l.bo, num_tokens, hp.n_embd, stream_);
}

void CudaSession::attention_mla(int64_t layer_idx, const float* xn, float* out, int64_t num_tokens) {
    const auto& hp = model_.hparams();
    const DeviceLayer& l = model_.layer(layer_idx);
    const int64_t n_head = hp.n_head, hk = hp.head_dim_k, hv = hp.head_dim_v, nope = hp.qk_nope_dim;
    const int64_t rank = hp.kv_lora_rank, n_rot = hp.n_rot, lat = rank + n_rot;
    const int64_t q_dim = n_head * hk, num_heads_tokens = num_tokens * n_head;
    constexpr size_t F = sizeof(float);

    float* q = f32(kQ, num_tokens * q_dim);
    if (l.wq_a.present()) {
        float* qa = f32(kQLora, num_tokens * hp.q_lora_rank);
        matmul(l.wq_a, xn, num_tokens, qa);
        kc::rms_norm_rows(qa, l.q_a_norm, qa, num_tokens, hp.q_lora_rank, hp.rms_eps, stream_);
        matmul(l.wq_b, qa, num_tokens, q);
    } else {
        matmul(l.wq, xn, num_tokens, q);
    }
    float* kvc = f32(kKvc, num_tokens * lat);
    matmul(l.wkv_a_mqa, xn, num_tokens, kvc);

    const int32_t* pos = i32(kPositions, num_tokens);
    const auto rp = rope_params(hp, nullptr);
    kc::rope(rp, q + nope, num_tokens, n_head, q_dim, hk, pos, stream_);
    kc::rope(rp, kvc + rank, num_tokens, 1, lat, lat, pos, stream_);
    // RMS norm of each row's latent part (the first `rank` values), through a contiguous copy.
    float* latent = f32(kLatent, num_tokens * rank);
    MOERIG_CUDA_CHECK(cudaMemcpy2DAsync(latent, rank * F, kvc, lat * F, rank * F, static_cast<size_t>(num_tokens),
                                        cudaMemcpyDeviceToDevice, stream_));
    kc::rms_norm_rows(latent, l.kv_a_norm, latent, num_tokens, rank, hp.rms_eps, stream_);
    MOERIG_CUDA_CHECK(cudaMemcpy2DAsync(kvc, lat * F, latent, rank * F, rank * F, static_cast<size_t>(num_tokens),
                                        cudaMemcpyDeviceToDevice, stream_));
    float* cache = k_cache_[static_cast<size_t>(layer_idx)].as<float>();
    MOERIG_CUDA_CHECK(cudaMemcpyAsync(cache + n_past_ * k_row_, kvc, static_cast<size_t>(num_tokens * lat) * F,
                                      cudaMemcpyDeviceToDevice, stream_));

    // Absorbed queries [wk_b[h] q_nope[h] | q_pe[h]] per (token, head): slot t*n_head + h multiplies block h.
    const int32_t* head_ids = i32(kHeadIds, num_heads_tokens);
    const int64_t gather_stride = round_up4(std::max(nope, rank));
    float* gather = f32(kGather, num_heads_tokens * gather_stride);
    float* qabs = f32(kQAbs, num_heads_tokens * lat);
    MOERIG_CUDA_CHECK(cudaMemcpy2DAsync(gather, gather_stride * F, q, hk * F, nope * F,
                                        static_cast<size_t>(num_heads_tokens), cudaMemcpyDeviceToDevice, stream_));
    matmul_indexed(l.wk_b, head_ids, num_heads_tokens, gather, gather_stride, 1, qabs, lat);
    MOERIG_CUDA_CHECK(cudaMemcpy2DAsync(qabs + rank, lat * F, q + nope, hk * F, n_rot * F,
                                        static_cast<size_t>(num_heads_tokens), cudaMemcpyDeviceToDevice, stream_));

    // llama.cpp pre-scales kq_scale for YaRN (deepseek2.cpp), as the CPU engine.
    const float attn_factor_org = hp.yarn_attn_factor * (1.f + 0.1f * std::log(1.f / hp.rope_freq_scale));
    const float mscale = attn_factor_org * (1.f + 0.1f * hp.yarn_log_mul * std::log(1.f / hp.rope_freq_scale));
    kernels::AttentionParams ap;
    ap.num_heads = n_head;
    ap.num_kv_heads = 1;
    ap.head_dim = lat;
    ap.v_head_dim = rank;
    ap.scale = mscale * mscale / std::sqrt(static_cast<float>(hk));
    float* att = f32(kAtt, num_heads_tokens * rank);
    kernels::AttentionIo io;
    io.q = qabs;
    io.q_token_stride = n_head * lat;
    io.q_head_stride = lat;
    io.k = cache;
    io.k_token_stride = k_row_;
    io.k_head_stride = 0;
    io.v = cache;
    io.v_token_stride = k_row_;
    io.v_head_stride = 0;
    io.out = att;
    io.out_token_stride = n_head * rank;
    io.out_head_stride = rank;
    io.num_tokens = num_tokens;
    io.kv_len = n_past_ + num_tokens;
    io.positions = pos;
    kc::attention(ap, io, stream_);

    // Per-head values back out of the latent: slot t*n_head + h reads att row (t, h) through block h of wv_b.
    float* o = f32(kMlaOut, num_heads_tokens * hv);
    MOERIG_CUDA_CHECK(cudaMemcpy2DAsync(gather, gather_stride * F, att, rank * F, rank * F,
                                        static_cast<size_t>(num_heads_tokens), cudaMemcpyDeviceToDevice, stream_));
    matmul_indexed(l.wv_b, head_ids, num_heads_tokens, gather, gather_stride, 1, o, hv);
    matmul(l.wo, o, num_tokens, out);
}

void CudaSession::dense_swiglu(const DeviceMatrix& gate, const DeviceMatrix& up, const DeviceMatrix& down,
                               const float* x, int64_t num_tokens, float* out) {
    const int64_t n_ff = gate.rows;
    float* g = f32(kGate, num_tokens * n_ff);
    float* u = f32(kUp, num_tokens * n_ff);
    matmul(gate, x, num_tokens, g);
    matmul(up, x, num_tokens, u);
    kc::swiglu(g, u, g, num_tokens * n_ff, stream_);
    matmul(down, g, num_tokens, out);
}

void CudaSession::ffn(int64_t layer_idx, float* x, int64_t num_tokens) {
    const auto& hp = model_.hparams();
    const DeviceLayer& l = model_.layer(layer_idx);
    const int64_t n_embd = hp.n_embd, n = num_tokens * n_embd;
    float* xn = f32(kXn, n);
    float* out = f32(kOut, n);
    kc::rms_norm_rows(x, l.ffn_norm, xn, num_tokens, n_embd, hp.rms_eps, stream_);
    if (!l.ffn_gate_inp.present()) {
        dense_swiglu(l.ffn_gate, l.ffn_up, l.ffn_down, xn, num_tokens, out);
        kc::add(x, out, x, n, stream_);
        return;
    }
    // Router (as Model::router).
    float* logits = f32(kRouterLogits, num_tokens * hp.n_expert);
    matmul(l.ffn_gate_inp, xn, num_tokens, logits);
    if (l.ffn_gate_inp_b) kc::add_bias_rows(logits, l.ffn_gate_inp_b, num_tokens, hp.n_expert, stream_);
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
    const int64_t k = hp.n_expert_used, num_slots = num_tokens * k;
    int32_t* ids = i32(kExpertIds, num_slots);
    float* weights = f32(kExpertWeights, num_slots);
    kc::route(p, logits, num_tokens, ids, weights, stream_);

    // Routed experts (as run_experts_local): gate/up per slot, biases, SwiGLU, down, bias, combine in order.
    const int64_t n_ff = l.gate_exps.rows;
    float* g = f32(kExpertGate, num_slots * n_ff);
    float* u = f32(kExpertUp, num_slots * n_ff);
    float* d = f32(kExpertDown, num_slots * n_embd);
    matmul_indexed(l.gate_exps, ids, num_slots, xn, n_embd, k, g, n_ff);
    matmul_indexed(l.up_exps, ids, num_slots, xn, n_embd, k, u, n_ff);
    if (l.gate_exps_b) kc::add_indexed_bias(g, n_ff, l.gate_exps_b, ids, num_slots, n_ff, stream_);
    if (l.up_exps_b) kc::add_indexed_bias(u, n_ff, l.up_exps_b, ids, num_slots, n_ff, stream_);
    if (l.swiglu_oai) {
        kc::swiglu_oai(g, u, g, num_slots * n_ff, kernels::kSwigluOaiAlpha, kernels::kSwigluOaiLimit, stream_);
    } else {
        kc::swiglu(g, u, g, num_slots * n_ff, stream_);
    }
    matmul_indexed(l.down_exps, ids, num_slots, g, n_ff, 1, d, n_embd);
    if (l.down_exps_b) kc::add_indexed_bias(d, n_embd, l.down_exps_b, ids, num_slots, n_embd, stream_);
    kc::combine_rows(d, n_embd, nullptr, weights, num_tokens, k, n_embd, out, n_embd, false, stream_);

    if (l.gate_shexp.present()) {
        float* sh = f32(kShared, n);
        dense_swiglu(l.gate_shexp, l.up_shexp, l.down_shexp, xn, num_tokens, sh);
        if (l.gate_inp_shexp.present()) {
            float* gs = f32(kSharedGate, num_tokens);
            matmul(l.gate_inp_shexp, xn, num_tokens, gs);
            kc::scale_rows_by_sigmoid_gate(sh, gs, num_tokens, n_embd, stream_);
        }
        kc::add(out, sh, out, n, stream_);
    }
    kc::add(x, out, x, n, stream_);
}

float* CudaSession::forward(std::span<const int32_t> tokens, int64_t num_out) {
    const auto& hp = model_.hparams();
    const auto num_tokens = static_cast<int64_t>(tokens.size());
    MOERIG_CHECK(num_tokens > 0, ConfigError, "eval needs at least one token");
    MOERIG_CHECK(n_past_ + num_tokens <= context_, ConfigError,
                 "context full: {} cached + {} new tokens exceed the context of {} positions", n_past_, num_tokens,
                 context_);
    device_.make_current();
    const int64_t n = num_tokens * hp.n_embd;

    // Embeddings on the host from the mapping (exactly the CPU's rows), then one upload.
    host_x_.resize(static_cast<size_t>(n));
    model_.model().embed(tokens, host_x_.data());
    float* x = f32(kX, n);
    device_.copy_to_device_async(x, host_x_.data(), static_cast<size_t>(n) * sizeof(float));
    host_positions_.resize(static_cast<size_t>(num_tokens));
    for (int64_t t = 0; t < num_tokens; ++t)
        host_positions_[static_cast<size_t>(t)] = static_cast<int32_t>(n_past_ + t);
    device_.copy_to_device_async(i32(kPositions, num_tokens), host_positions_.data(),
                                 static_cast<size_t>(num_tokens) * sizeof(int32_t));
    if (hp.is_mla()) {
        host_head_ids_.resize(static_cast<size_t>(num_tokens * hp.n_head));
        for (size_t i = 0; i < host_head_ids_.size(); ++i) {
            host_head_ids_[i] = static_cast<int32_t>(static_cast<int64_t>(i) % hp.n_head);
        }
        device_.copy_to_device_async(i32(kHeadIds, num_tokens * hp.n_head), host_head_ids_.data(),
                                     host_head_ids_.size() * sizeof(int32_t));
    }

    float* logits = nullptr;
    if (graphs_ && num_tokens == 1 && num_out == 1 && last_step_tokens_ == 1)
        logits = launch_graph(num_tokens, num_out);
    if (logits == nullptr) logits = enqueue_layers(num_tokens, num_out);
    last_step_tokens_ = num_tokens;
    n_past_ += num_tokens;
    return logits;
}

float* CudaSession::launch_graph(int64_t num_tokens, int64_t num_out) {
    MOERIG_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
    float* logits = nullptr;
    bool abandoned = false;
    try {
        logits = enqueue_layers(num_tokens, num_out);
    } catch (const CaptureNeedsGrowth&) {
        abandoned = true;
    } catch (...) {
        capturing_ = false;
        cudaGraph_t partial = nullptr;
        cudaStreamEndCapture(stream_, &partial);
        if (partial != nullptr) cudaGraphDestroy(partial);
        (void)cudaGetLastError();
        throw;
    }
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
    if (abandoned || ended != cudaSuccess || graph == nullptr) {
        if (graph != nullptr) cudaGraphDestroy(graph);
        (void)cudaGetLastError();
        ++graph_stats_.fell_back;
        return nullptr;
    }
    bool updated = false;
    if (graph_exec_ != nullptr) {
        cudaGraphExecUpdateResultInfo info{};
        updated = cudaGraphExecUpdate(graph_exec_, graph, &info) == cudaSuccess;
        if (!updated) {
            (void)cudaGetLastError();
            cudaGraphExecDestroy(graph_exec_);
            graph_exec_ = nullptr;
        }
    }
    if (updated) {
        ++graph_stats_.updated;
    } else {
        const cudaError_t made = cudaGraphInstantiate(&graph_exec_, graph, 0);
        cudaGraphDestroy(graph);
        graph = nullptr;
        MOERIG_CUDA_CHECK(made);
        ++graph_stats_.instantiated;
    }
    if (graph != nullptr) cudaGraphDestroy(graph);
    MOERIG_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
    ++graph_stats_.launched;
    return logits;
}

float* CudaSession::enqueue_layers(int64_t num_tokens, int64_t num_out) {
    const auto& hp = model_.hparams();
    const int64_t n = num_tokens * hp.n_embd;
    float* x = f32(kX, n);
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const DeviceLayer& l = model_.layer(il);
        float* xn = f32(kXn, n);
        float* out = f32(kOut, n);
        kc::rms_norm_rows(x, l.attn_norm, xn, num_tokens, hp.n_embd, hp.rms_eps, stream_);
        if (hp.is_mla()) {
            attention_mla(il, xn, out, num_tokens);
        } else {
            attention_gqa(il, xn, out, num_tokens);
        }
        kc::add(x, out, x, n, stream_);
        ffn(il, x, num_tokens);
    }

    float* rows = x + (num_tokens - num_out) * hp.n_embd;
    float* xo = f32(kXn, num_out * hp.n_embd);
    kc::rms_norm_rows(rows, model_.output_norm(), xo, num_out, hp.n_embd, hp.rms_eps, stream_);
    float* logits = f32(kLogits, num_out * hp.n_vocab);
    matmul(model_.output(), xo, num_out, logits);
    return logits;
}

std::vector<float> CudaSession::eval(std::span<const int32_t> tokens, bool all_logits) {
    const int64_t num_out = all_logits ? static_cast<int64_t>(tokens.size()) : 1;
    const float* logits = forward(tokens, num_out);
    std::vector<float> host(static_cast<size_t>(num_out * model_.hparams().n_vocab));
    device_.copy_to_host(host.data(), logits, host.size() * sizeof(float));
    return host;
}

int32_t CudaSession::eval_greedy(std::span<const int32_t> tokens) {
    const float* logits = forward(tokens, 1);
    int32_t* best = i32(kArgmax, 1);
    kc::argmax_rows(logits, 1, model_.hparams().n_vocab, best, stream_);
    int32_t host = 0;
    device_.copy_to_host(&host, best, sizeof(host));
    return host;
}

std::vector<int32_t> generate(CudaSession& session, std::span<const int32_t> prompt, int n_predict,
                              const SamplerParams& params, std::function<bool(int32_t token)> on_token,
                              GenerateStats* stats) {
    return generate_loop(session, prompt, n_predict, params, std::move(on_token), stats);
}

}  // namespace moerig::runtime::cuda
