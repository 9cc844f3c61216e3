// CudaCardExperts: upload of a card's expert slots to its own CudaDevice, and one expert's FFN there, step for
// step as runtime/moe.cpp's run_expert_rows: gate and up products, their per-expert biases, SwiGLU (or gpt-oss's
// clamped form), the down product and its bias. Products are chosen as CudaSession::matmul chooses them.
#include "runtime/cuda/cuda_card_experts.h"

#include <algorithm>

#include "kernels/cuda/bias.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_dp4a.h"
#include "kernels/cuda/matmul_path.h"
#include "kernels/error.h"
#include "kernels/ops.h"

namespace moerig::runtime::cuda {

namespace kc = kernels::cuda;

namespace {

size_t card_budget(const ShardCard& card, const CudaCardExpertsOptions& options) {
    return options.budget_bytes > 0 ? options.budget_bytes : card.budget_bytes;
}

}  // namespace

bool gpu_decodes(DType type) {
    return kc::gemv_supported(type);
}

/// The CardExperts of one layer, handed to the dispatcher.
class CudaCardExperts::LayerExperts final : public CardExperts {
  public:
    explicit LayerExperts(CudaCardExperts& owner) : owner_(owner) {}
    void run_expert(int expert_idx, const float* x, int64_t num_rows, float* y) override {
        owner_.run_expert(layer_idx, expert_idx, x, num_rows, y);
    }
    int64_t layer_idx = 0;

  private:
    CudaCardExperts& owner_;
};

CudaCardExperts::CudaCardExperts(const Model& model, const ShardCard& card, int card_idx,
                                 const CudaCardExpertsOptions& options)
    : model_(model),
      options_(options),
      device_(std::make_unique<CudaDevice>(options.gpu_idx, card_budget(card, options),
                                           fmt::format("{} (GPU {})", card.name, options.gpu_idx), card_idx)),
      upload_(card_expert_upload(model, card, gpu_decodes)),
      current_(std::make_unique<LayerExperts>(*this)) {
    const size_t budget = device_->memory_info().budget_bytes;
    size_t num_slots = 0;
    for (const CardLayerUpload& l : upload_.layers) num_slots += l.experts.size();
    // Refuse before uploading anything.
    MOERIG_CHECK(upload_.bytes() <= budget, OutOfMemoryError,
                 "card '{}' cannot hold its experts: {} needed ({} expert slots in {} layers) but its GPU budget is "
                 "{}; nothing was uploaded",
                 device_->name(), format_bytes(upload_.bytes()), num_slots, upload_.layers.size(),
                 format_bytes(budget));
    device_->make_current();
    const ModelHParams& hp = model.hparams();
    layers_.resize(static_cast<size_t>(hp.n_layer));
    for (const CardLayerUpload& u : upload_.layers) {
        const LayerWeights& w = model.weights().layers.at(static_cast<size_t>(u.layer_idx));
        DeviceLayer& d = layers_[static_cast<size_t>(u.layer_idx)];
        d.upload = &u;
        d.local_idx.assign(static_cast<size_t>(w.gate_exps.num_experts), -1);
        for (size_t i = 0; i < u.experts.size(); ++i)
            d.local_idx[static_cast<size_t>(u.experts[i])] = static_cast<int32_t>(i);
        upload_projection(w.gate_exps, w.gate_exps_b, u.gate, u.experts, d.gate, d.gate_b);
        upload_projection(w.up_exps, w.up_exps_b, u.up, u.experts, d.up, d.up_b);
        upload_projection(w.down_exps, w.down_exps_b, u.down, u.experts, d.down, d.down_b);
    }
    device_->synchronize();
}

CudaCardExperts::~CudaCardExperts() {
    cudaSetDevice(device_->gpu_idx());
    cudaStreamSynchronize(device_->stream());  // no throwing from a destructor
}

void CudaCardExperts::upload_projection(const ExpertTensor& t, const float* bias, const ExpertProjectionUpload& p,
                                        const std::vector<int32_t>& experts, Buffer& matrices, Buffer& biases) {
    matrices = device_->alloc(experts.size() * p.matrix_bytes, MemoryKind::kWeights);
    const size_t row_bytes = dtype_bytes(p.type, static_cast<uint64_t>(p.cols));
    std::vector<uint8_t> staging;
    for (size_t i = 0; i < experts.size(); ++i) {
        const WeightView w = t.expert(experts[i]);
        uint8_t* dst = matrices.as<uint8_t>() + i * p.matrix_bytes;
        if (!p.converted && w.row_stride_bytes == row_bytes) {
            device_->copy_to_device(dst, w.data, p.matrix_bytes);  // straight from the mapping
        } else {
            staging.resize(p.matrix_bytes);
            pack_expert_matrix(w, p, staging.data());
            device_->copy_to_device(dst, staging.data(), p.matrix_bytes);
        }
    }
    gemm_scratch_elems_ = std::max(gemm_scratch_elems_, kc::gemm_scratch_elems(p.type, p.rows, p.cols));
    if (!p.has_bias) return;
    const size_t bias_bytes = static_cast<size_t>(p.rows) * sizeof(float);
    biases = device_->alloc(experts.size() * bias_bytes, MemoryKind::kWeights);
    for (size_t i = 0; i < experts.size(); ++i) {
        device_->copy_to_device(biases.as<uint8_t>() + i * bias_bytes, bias + experts[i] * p.rows, bias_bytes);
    }
}

CardExperts& CudaCardExperts::layer(int64_t layer_idx) {
    MOERIG_CHECK(layer_idx >= 0 && layer_idx < static_cast<int64_t>(layers_.size()), ConfigError,
                 "card '{}': layer {} of a model with {} layers", device_->name(), layer_idx, layers_.size());
    current_->layer_idx = layer_idx;
    return *current_;
}

float* CudaCardExperts::scratch(Buffer& buffer, int64_t num_floats) {
    const size_t num_bytes = static_cast<size_t>(std::max<int64_t>(num_floats, 1)) * sizeof(float);
    if (buffer.num_bytes() < num_bytes) {
        device_->synchronize();  // queued kernels may still read the old buffer
        buffer.reset();
        buffer = device_->alloc(std::max<size_t>(num_bytes + num_bytes / 2, 256), MemoryKind::kActivations);
    }
    return buffer.as<float>();
}

void CudaCardExperts::matmul(const ExpertProjectionUpload& p, const void* w, const float* x, int64_t num_rows,
                             float* y) {
    const cudaStream_t stream = device_->stream();
    const kc::MatmulPath path = kc::matmul_path(p.type, w, x, p.cols, num_rows, options_.dp4a);
    if (path == kc::MatmulPath::kGemvDp4a) {
        const int64_t q8_bytes = kc::q8_activation_bytes(num_rows, p.cols);
        void* xq = scratch(q8_, (q8_bytes + 3) / 4);
        kc::quantize_q8_activations(x, num_rows, p.cols, xq, stream);
        kc::gemv_dp4a(p.type, w, p.rows, p.cols, xq, num_rows, y, stream);
    } else if (path == kc::MatmulPath::kGemv) {
        kc::gemv(p.type, w, p.rows, p.cols, x, num_rows, y, stream);
    } else {
        if (!cublas_) {  // on first use: a decode-only card never pays for a cuBLAS handle
            cublasHandle_t handle = nullptr;
            const cublasStatus_t st = cublasCreate(&handle);
            MOERIG_CHECK(st == CUBLAS_STATUS_SUCCESS, CudaError, "cublasCreate failed with status {} on '{}'",
                         static_cast<int>(st), device_->name());
            cublas_.reset(handle);
        }
        float* tiles = p.type == DType::F32 ? nullptr : scratch(gemm_scratch_, gemm_scratch_elems_);
        kc::gemm(cublas_.get(), p.type, w, p.rows, p.cols, x, num_rows, y, tiles, stream);
    }
}

void CudaCardExperts::run_expert(int64_t layer_idx, int expert_idx, const float* x, int64_t num_rows, float* y) {
    const DeviceLayer& d = layers_.at(static_cast<size_t>(layer_idx));
    MOERIG_CHECK(d.upload != nullptr && expert_idx >= 0 && expert_idx < static_cast<int>(d.local_idx.size()) &&
                     d.local_idx[static_cast<size_t>(expert_idx)] >= 0,
                 ConfigError, "card '{}' was asked for expert {} of layer {}, which it does not hold", device_->name(),
                 expert_idx, layer_idx);
    if (num_rows <= 0) return;
    const auto local = static_cast<size_t>(d.local_idx[static_cast<size_t>(expert_idx)]);
    const CardLayerUpload& u = *d.upload;
    const int64_t n_embd = u.down.rows, n_ff = u.gate.rows;
    const cudaStream_t stream = device_->stream();
    device_->make_current();
    float* dx = scratch(x_, num_rows * n_embd);
    float* g = scratch(gate_, num_rows * n_ff);
    float* up = scratch(up_, num_rows * n_ff);
    float* dy = scratch(y_, num_rows * n_embd);
    device_->copy_to_device_async(dx, x, static_cast<size_t>(num_rows * n_embd) * sizeof(float));
    matmul(u.gate, d.gate.as<uint8_t>() + local * u.gate.matrix_bytes, dx, num_rows, g);
    matmul(u.up, d.up.as<uint8_t>() + local * u.up.matrix_bytes, dx, num_rows, up);
    if (u.gate.has_bias) kc::add_bias_rows(g, d.gate_b.as<float>() + local * n_ff, num_rows, n_ff, stream);
    if (u.up.has_bias) kc::add_bias_rows(up, d.up_b.as<float>() + local * n_ff, num_rows, n_ff, stream);
    if (model_.weights().layers.at(static_cast<size_t>(layer_idx)).swiglu_oai) {
        kc::swiglu_oai(g, up, g, num_rows * n_ff, kernels::kSwigluOaiAlpha, kernels::kSwigluOaiLimit, stream);
    } else {
        kc::swiglu(g, up, g, num_rows * n_ff, stream);
    }
    matmul(u.down, d.down.as<uint8_t>() + local * u.down.matrix_bytes, g, num_rows, dy);
    if (u.down.has_bias) kc::add_bias_rows(dy, d.down_b.as<float>() + local * n_embd, num_rows, n_embd, stream);
    device_->copy_to_host(y, dy, static_cast<size_t>(num_rows * n_embd) * sizeof(float));  // waits for the stream
}

CardExpertsFactory cuda_card_experts(const CudaCardExpertsOptions& options) {
    return [options](const CardExpertsRequest& r) -> std::unique_ptr<CardExpertsBackend> {
        const ShardCard& card = r.layout.cards.at(static_cast<size_t>(r.card_idx));
        const bool holds_experts =
            std::any_of(card.experts.begin(), card.experts.end(), [](const auto& e) { return !e.empty(); });
        if (!holds_experts) return nullptr;
        return std::make_unique<CudaCardExperts>(r.model, card, r.card_idx, options);
    };
}

}  // namespace moerig::runtime::cuda
