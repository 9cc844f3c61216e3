// KvCache storage. Memory is reserved up front for the whole capacity so rows never move while a
// sequence grows; pages are only touched as positions fill.
#include "runtime/kv_cache.h"

#include <algorithm>

#include "kernels/error.h"

namespace moerig::runtime {

KvCache::KvCache(const ModelHParams& hp, int64_t capacity, int64_t layer_begin, int64_t layer_end)
    : capacity_(capacity), layer_begin_(layer_begin) {
    if (layer_end < 0) layer_end = hp.n_layer;
    MOERIG_CHECK(capacity > 0, ConfigError, "KV cache capacity must be > 0, got {}", capacity);
    MOERIG_CHECK(0 <= layer_begin && layer_begin <= layer_end && layer_end <= hp.n_layer, ConfigError,
                 "KV cache layer range [{}, {}) is outside the model's {} layers", layer_begin, layer_end, hp.n_layer);
    if (hp.is_mla()) {
        k_row_ = hp.kv_lora_rank + hp.n_rot;  // latent first, then the roped key part
        v_row_ = 0;
    } else {
        k_row_ = hp.n_head_kv * hp.head_dim_k;
        v_row_ = hp.n_head_kv * hp.head_dim_v;
    }
    layers_.resize(static_cast<size_t>(layer_end - layer_begin));
    for (auto& l : layers_) {
        l.k.reset(new float[static_cast<size_t>(capacity * k_row_)]);
        l.v.reset(new float[static_cast<size_t>(std::max<int64_t>(capacity * v_row_, 1))]);
    }
}

size_t KvCache::idx(int64_t layer_idx) const {
    const auto i = layer_idx - layer_begin_;
    MOERIG_ASSERT(i >= 0 && i < static_cast<int64_t>(layers_.size()));
    return static_cast<size_t>(i);
}

size_t KvCache::bytes() const {
    return layers_.size() * static_cast<size_t>(capacity_ * (k_row_ + v_row_)) * sizeof(float);
}

}  // namespace moerig::runtime
