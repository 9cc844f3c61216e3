// The F32 key/value cache of one sequence: per layer, K and V rows for positions [0, capacity).
// MLA layers cache the compressed latent (kv_lora_rank + rope dims) once per token instead of per-head K/V.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/hparams.h"

namespace moerig::runtime {

class KvCache {
  public:
    /// Caches up to `capacity` positions of layers [layer_begin, layer_end) (default: all layers).
    KvCache(const ModelHParams& hp, int64_t capacity, int64_t layer_begin = 0, int64_t layer_end = -1);

    int64_t capacity() const { return capacity_; }
    /// Floats per cached position of K and of V (0 for V in MLA layers: V is the head of the K row).
    int64_t k_row() const { return k_row_; }
    int64_t v_row() const { return v_row_; }

    /// K/V row of `pos` in layer layer_idx (which must be in this cache's range).
    float* k(int64_t layer_idx, int64_t pos) { return layer(layer_idx).k.get() + pos * k_row_; }
    float* v(int64_t layer_idx, int64_t pos) { return layer(layer_idx).v.get() + pos * v_row_; }
    const float* k(int64_t layer_idx, int64_t pos) const { return layers_[idx(layer_idx)].k.get() + pos * k_row_; }
    const float* v(int64_t layer_idx, int64_t pos) const { return layers_[idx(layer_idx)].v.get() + pos * v_row_; }

    size_t bytes() const;

  private:
    struct Layer {
        std::unique_ptr<float[]> k, v;  // uninitialised: pages are touched as positions fill
    };
    size_t idx(int64_t layer_idx) const;
    Layer& layer(int64_t layer_idx) { return layers_[idx(layer_idx)]; }

    int64_t capacity_ = 0, k_row_ = 0, v_row_ = 0, layer_begin_ = 0;
    std::vector<Layer> layers_;
};

}  // namespace moerig::runtime
