// Where a card of a sharded run keeps and computes its routed experts. By default the executor computes a card's
// expert slots on the CPU straight from the model mapping; ShardedOptions::card_experts hands each card a backend
// of the caller's choosing instead (runtime/cuda/cuda_card_experts.h uploads them to a GPU, one virtual card per
// card), so this library needs no CUDA. Also what such a backend uploads: the card's experts per MoE layer, each
// projection in its file type or converted to F32, and the bytes that costs.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/threadpool.h"
#include "runtime/dispatcher.h"
#include "runtime/model.h"
#include "runtime/sharded_layout.h"

namespace moerig::runtime {

/// One card's routed experts, wherever they live. Called on the card's own thread only.
class CardExpertsBackend {
  public:
    virtual ~CardExpertsBackend() = default;
    /// The experts this card holds of MoE layer layer_idx (only those are asked for); valid until the next call.
    virtual CardExperts& layer(int64_t layer_idx) = 0;
    /// Bytes of expert weights the backend holds on a device of its own (0: it reads the host mapping).
    virtual size_t weight_bytes() const = 0;
};

/// What a factory knows of the card it serves.
struct CardExpertsRequest {
    const Model& model;
    const ShardLayout& layout;
    int card_idx = 0;
    kernels::ThreadPool& pool;  ///< the card's own threads
};

/// Makes the expert backend of one card. Never asked for host participants (their spilled experts stay in RAM);
/// may return nullptr, and that card computes its experts on the CPU from the mapping.
using CardExpertsFactory = std::function<std::unique_ptr<CardExpertsBackend>(const CardExpertsRequest&)>;

/// One projection (gate, up or down) of a layer's experts as a device stores it.
struct ExpertProjectionUpload {
    DType type = DType::F32;  ///< the file's type, or F32 when the device cannot decode that (converted)
    int64_t rows = 0;         ///< output features per expert
    int64_t cols = 0;         ///< input features per expert
    size_t matrix_bytes = 0;  ///< one expert's matrix, rows packed
    bool converted = false;   ///< dequantised to F32 on the host before the upload
    bool has_bias = false;    ///< a per-expert F32 bias of `rows` floats (gpt-oss)
    size_t expert_bytes() const { return matrix_bytes + (has_bias ? static_cast<size_t>(rows) * sizeof(float) : 0); }
};

/// The experts a card holds of one MoE layer.
struct CardLayerUpload {
    int64_t layer_idx = 0;
    std::vector<int32_t> experts;  ///< the card's expert slots of the layer, ascending
    ExpertProjectionUpload gate, up, down;
    size_t bytes() const { return experts.size() * (gate.expert_bytes() + up.expert_bytes() + down.expert_bytes()); }
};

/// Every routed expert a card uploads to a device of its own.
struct CardExpertUpload {
    std::vector<CardLayerUpload> layers;  ///< MoE layers where the card holds experts, ascending
    size_t bytes() const;
    /// Projections stored as F32 because the device cannot decode their type, e.g. "layer 3 ffn_down_exps (Q5_0)".
    std::vector<std::string> conversions() const;
};

/// What `card` uploads of `model`: its expert slots of every MoE layer, each projection in its own type where
/// decodes(type) says the device multiplies it as stored, else as F32; biases as F32. With no conversion and F32
/// biases in the file this is exactly card_share_bytes(...).expert_weights, the bytes the CPU card charges.
CardExpertUpload card_expert_upload(const Model& model, const ShardCard& card,
                                    const std::function<bool(DType)>& decodes);

/// One expert's matrix w as `projection` stores it: rows packed into out (projection.matrix_bytes), dequantised
/// to F32 when projection.converted.
void pack_expert_matrix(const WeightView& w, const ExpertProjectionUpload& projection, void* out);

}  // namespace moerig::runtime
