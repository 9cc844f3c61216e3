// card_expert_upload and pack_expert_matrix: the CPU side of putting a card's experts on a device of its own,
// kept here so that which experts and how many bytes a card uploads is checked without a GPU.
#include "runtime/card_experts_backend.h"

#include <algorithm>
#include <cstring>

#include "kernels/error.h"
#include "kernels/quant.h"

namespace moerig::runtime {

namespace {

ExpertProjectionUpload projection_upload(const ExpertTensor& t, const float* bias,
                                         const std::function<bool(DType)>& decodes) {
    ExpertProjectionUpload p;
    p.rows = t.rows;
    p.cols = t.cols;
    p.converted = !decodes(t.type);
    p.type = p.converted ? DType::F32 : t.type;
    p.matrix_bytes = static_cast<size_t>(t.rows) * dtype_bytes(p.type, static_cast<uint64_t>(t.cols));
    p.has_bias = bias != nullptr;
    return p;
}

}  // namespace

size_t CardExpertUpload::bytes() const {
    size_t total = 0;
    for (const CardLayerUpload& l : layers) total += l.bytes();
    return total;
}

std::vector<std::string> CardExpertUpload::conversions() const {
    std::vector<std::string> out;
    for (const CardLayerUpload& l : layers) {
        const std::pair<const char*, const ExpertProjectionUpload*> projections[] = {
            {"ffn_gate_exps", &l.gate}, {"ffn_up_exps", &l.up}, {"ffn_down_exps", &l.down}};
        for (const auto& [name, p] : projections) {
            if (p->converted) out.push_back(fmt::format("layer {} {}", l.layer_idx, name));
        }
    }
    return out;
}

CardExpertUpload card_expert_upload(const Model& model, const ShardCard& card,
                                    const std::function<bool(DType)>& decodes) {
    const ModelHParams& hp = model.hparams();
    MOERIG_CHECK(static_cast<int64_t>(card.experts.size()) == hp.n_layer, ConfigError,
                 "card '{}' lists experts for {} layers, the model has {}", card.name, card.experts.size(), hp.n_layer);
    CardExpertUpload out;
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        const std::vector<int32_t>& slots = card.experts[static_cast<size_t>(l)];
        if (slots.empty()) continue;
        MOERIG_CHECK(hp.is_moe_layer(l), ConfigError, "card '{}' holds experts of layer {}, which is not a MoE layer",
                     card.name, l);
        const LayerWeights& w = model.weights().layers.at(static_cast<size_t>(l));
        CardLayerUpload layer;
        layer.layer_idx = l;
        layer.experts = slots;
        std::sort(layer.experts.begin(), layer.experts.end());
        for (int32_t e : layer.experts) {
            MOERIG_CHECK(e >= 0 && e < w.gate_exps.num_experts, ConfigError,
                         "card '{}' holds expert {} of layer {}, which has {} experts", card.name, e, l,
                         w.gate_exps.num_experts);
        }
        layer.gate = projection_upload(w.gate_exps, w.gate_exps_b, decodes);
        layer.up = projection_upload(w.up_exps, w.up_exps_b, decodes);
        layer.down = projection_upload(w.down_exps, w.down_exps_b, decodes);
        out.layers.push_back(std::move(layer));
    }
    return out;
}

void pack_expert_matrix(const WeightView& w, const ExpertProjectionUpload& projection, void* out) {
    MOERIG_CHECK(w.rows == projection.rows && w.cols == projection.cols, ConfigError,
                 "expert matrix {}x{} packed as a projection of {}x{}", w.rows, w.cols, projection.rows,
                 projection.cols);
    auto* dst = static_cast<uint8_t*>(out);
    if (projection.converted) {
        auto* f = reinterpret_cast<float*>(dst);
        for (int64_t r = 0; r < w.rows; ++r) kernels::dequantize_row(w.type, w.row(r), f + r * w.cols, w.cols);
        return;
    }
    MOERIG_CHECK(w.type == projection.type, ConfigError, "expert matrix of type {} packed as {}", dtype_name(w.type),
                 dtype_name(projection.type));
    const size_t row_bytes = dtype_bytes(w.type, static_cast<uint64_t>(w.cols));
    for (int64_t r = 0; r < w.rows; ++r) std::memcpy(dst + static_cast<size_t>(r) * row_bytes, w.row(r), row_bytes);
}

}  // namespace moerig::runtime
