// A sharded run's expert FFNs on a GPU: each card's routed experts uploaded to a CudaDevice of its own (several on
// one GPU are virtual cards, issue #5), charged to that card's budget, and run there one expert at a time for the
// rows the dispatcher groups for it. The dispatcher and the rest of the card stay on the host; only an expert's
// rows cross to the GPU and back. Plug it in with ShardedOptions::card_experts = cuda_card_experts(...).
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/card_experts_backend.h"
#include "runtime/cuda/cuda_device.h"

namespace moerig::runtime::cuda {

struct CudaCardExpertsOptions {
    int gpu_idx = 0;
    size_t budget_bytes = 0;  ///< every card's GPU budget; 0: the card's own budget in the layout
    /// Decode-sized products (at most 8 rows) of Q8_0/Q4_0/K-quant experts quantise the rows to int8 and use the
    /// DP4A GEMV, as CudaSession does by default (the CPU engine's activation rounding for Q8_0/Q4_0).
    bool dp4a = true;
};

/// Whether the GPU multiplies expert weights of this type as stored (else they are uploaded as F32).
bool gpu_decodes(DType type);

/// One card's experts on its own CudaDevice ("<card> (GPU n)"): at construction every expert slot of the card
/// (card_expert_upload with gpu_decodes) is uploaded and charged to the device's budget as weights.
class CudaCardExperts final : public CardExpertsBackend {
  public:
    /// Throws OutOfMemoryError naming the card when its experts exceed its GPU budget (nothing is uploaded then),
    /// CudaError when the GPU is absent.
    CudaCardExperts(const Model& model, const ShardCard& card, int card_idx, const CudaCardExpertsOptions& options);
    ~CudaCardExperts() override;
    CudaCardExperts(const CudaCardExperts&) = delete;
    CudaCardExperts& operator=(const CudaCardExperts&) = delete;

    CardExperts& layer(int64_t layer_idx) override;
    size_t weight_bytes() const override { return upload_.bytes(); }

    const CudaDevice& device() const { return *device_; }
    const CardExpertUpload& upload() const { return upload_; }
    /// y (num_rows, n_embd) = expert expert_idx of MoE layer layer_idx on x (num_rows, n_embd); host pointers.
    void run_expert(int64_t layer_idx, int expert_idx, const float* x, int64_t num_rows, float* y);

  private:
    class LayerExperts;
    /// One layer's experts on the device: per projection [num_local][matrix_bytes], biases [num_local][rows].
    struct DeviceLayer {
        const CardLayerUpload* upload = nullptr;
        std::vector<int32_t> local_idx;  // [expert_idx] -> position among the card's experts, -1: not here
        Buffer gate, up, down;
        Buffer gate_b, up_b, down_b;
    };
    void upload_projection(const ExpertTensor& t, const float* bias, const ExpertProjectionUpload& p,
                           const std::vector<int32_t>& experts, Buffer& matrices, Buffer& biases);
    /// y (num_rows, p.rows) = W x for one expert's matrix w stored as p: GEMV for a few rows, cuBLAS otherwise.
    void matmul(const ExpertProjectionUpload& p, const void* w, const float* x, int64_t num_rows, float* y);
    float* scratch(Buffer& buffer, int64_t num_floats);

    const Model& model_;
    CudaCardExpertsOptions options_;
    std::unique_ptr<CudaDevice> device_;
    CardExpertUpload upload_;
    std::vector<DeviceLayer> layers_;  // [layer_idx]
    std::unique_ptr<LayerExperts> current_;
    struct CublasDestroy {
        void operator()(cublasHandle_t handle) const { cublasDestroy(handle); }
    };
    std::unique_ptr<cublasContext, CublasDestroy> cublas_;
    int64_t gemm_scratch_elems_ = 0;
    Buffer x_, gate_, up_, y_, q8_, gemm_scratch_;  // activations, grown on demand
};

/// The ShardedOptions::card_experts factory putting every card's experts on GPU options.gpu_idx, one CudaDevice
/// per card (virtual cards of that GPU). Cards without expert slots get no backend.
CardExpertsFactory cuda_card_experts(const CudaCardExpertsOptions& options);

}  // namespace moerig::runtime::cuda
